"""Generator recipes side by side, on the run protocol (seen items banned, fp32 decoding,
validation for choices, test for the final numbers).

    python benchmarks/generator.py                       # every recipe below, in order
    python benchmarks/generator.py --only old-default new-default
    python benchmarks/generator.py --runs-dir /tmp/gen   # where the runs (and cache) go

Each recipe is the default preset plus a few overrides, run with ``semid.pipeline`` (stages a
recipe shares with another, e.g. data, embeddings, IDs and the training texts' vectors, are
built once). One row per recipe: validation and test Recall@30 of search (template, real
requests, title alone: top-1 rate) and recommendation, the references on the same inputs,
unique- vs shared-code recall, coverage, training examples/s and minutes, decoding inputs/s,
peak RSS. Prints a table and writes benchmarks/results/generator.json (rows of recipes
already run are kept, so recipes can be added one at a time).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from semid.config import RunConfig, load_config
from semid.io import read_json, write_json
from semid.pipeline import run_pipeline
from semid.reports.strata import shared_code_items

OUT = Path(__file__).resolve().parent / "results" / "generator.json"

# Rows measured before model.text_precision existed embedded the generator's texts in fp32:
# they pin it, so that re-running one reproduces its row.
FP32 = "model.text_precision=fp32"

# name -> (overrides of the default preset, what the recipe tests)
RECIPES: dict[str, tuple[list[str], str]] = {
    "old-default": (
        [
            FP32,
            "model.backbone=t5-scratch",
            "model.id_init=random",
            "train.level_softmax=false",
            "train.indexing_variants=[text]",
            "model.dropout=0.1",
            "train.epochs=3",
        ],
        "the recipe before this benchmark: word-piece T5 from scratch, full-vocabulary "
        "softmax, random ID rows, item text as the only indexing input, dropout 0.1",
    ),
    "text-t5": (
        [FP32, "train.epochs=3", "train.indexing_repeats=1"],
        "text-t5 with each indexing input once per epoch (the default before indexing-x3 won "
        "on validation)",
    ),
    "text-skip": (
        [FP32, "train.epochs=3", "train.indexing_repeats=1", "model.text_skip=true"],
        "text-t5 + a linear path from the text vector to the logits (PCA-initialised)",
    ),
    "new-default": (
        [FP32, "train.epochs=3"],
        "text-t5, indexing inputs 3x per epoch, 3 epochs (the default before epochs-5)",
    ),
    "neighbourhood": (
        [FP32, "train.epochs=3", "train.neighbourhood_copies=3", "train.neighbourhood_cos=0.5"],
        "new default + 3 noisy copies per epoch of each item-text indexing input (fresh "
        "Gaussian noise every step, mean cosine 0.5 to the clean vector): trains the decoder "
        "on the neighbourhood of each item, as dense retrieval scores it",
    ),
    "epochs-5": (
        [FP32],
        "5 epochs (won on validation; the default preset until bf16-text: fp32 text vectors)",
    ),
    "neighbourhood-5": (
        [FP32, "train.neighbourhood_copies=3", "train.neighbourhood_cos=0.5"],
        "neighbourhood copies (as row neighbourhood) on the 5-epoch default",
    ),
    "text-skip-5": (
        [FP32, "model.text_skip=true"],
        "the 5-epoch default + the linear path from the text vector to the logits",
    ),
    "no-centroid-init": ([FP32, "model.id_init=random"], "new default with random ID-token rows"),
    "no-level-softmax": (
        [FP32, "train.level_softmax=false"],
        "new default, full-vocabulary softmax",
    ),
    "one-slot": ([FP32, "model.text_slots=1"], "new default, the text vector fills one position"),
    # The study grid's cpu cell (grids/rq-vae-study.yaml, rq-kmeans__s0): 2 x 256 IDs as in the
    # paper, 2 epochs, indexing inputs twice per epoch. Measure it with
    # --existing cpu-cell=RESULTS/rq-kmeans__s0 (the grid trained it).
    "cpu-cell": (
        [
            FP32,
            "embedding.space=content",
            "quantizer.name=rq-kmeans",
            "quantizer.levels=2",
            "quantizer.codebook_size=256",
            "quantizer.disambiguation=true",
            "quantizer.seed=0",
            "train.seed=0",
            "train.epochs=2",
            "train.indexing_repeats=2",
            "eval.ks=[10,30]",
            "eval.beam_size=30",
        ],
        "the study grid's cpu cell: rq-kmeans 2x256 + disambiguation, 2 epochs, indexing 2x "
        "(no R@1: the grid scores K = 10, 30)",
    ),
    "bf16-text": (
        [],
        "the default preset: epochs-5 with the generator's texts embedded under bf16 autocast "
        "(model.text_precision=auto; benchmarks/text_precision.py)",
    ),
    # Decoding only: the default model (trained once, cached), beam search keeping more beams
    # than the 30 items it returns.
    "beam-60": (
        ["eval.beam_width=60"],
        "the default preset decoded with 60 beams, the top 30 returned",
    ),
    "beam-120": (
        ["eval.beam_width=120"],
        "the default preset decoded with 120 beams, the top 30 returned",
    ),
    # A lexical path: the query's word pieces beside its pooled sentence vector (run on a
    # 2-core AVX2-only CPU, where auto is fp32: compare with benchmarks/results/default_run.json,
    # the default preset on the same kind of machine).
    "text-tokens-32": (
        ["model.text_tokens=32"],
        "the default preset + the first 32 word pieces of each search text after its vector "
        "slots (4,000 word pieces trained on item texts and train queries)",
    ),
    # More indexing signal where the title lookup misses (target 3): the title-alone input
    # twice per repeat (6 times per epoch instead of 3). Same AVX2-only machine as the row above.
    "title-x2": (
        ["train.indexing_variants=[text, title, title, title_year]"],
        "the default preset with the title-alone indexing input twice as often (6 times per "
        "epoch; the item text and 'Title (year)' 3 times)",
    ),
    # A second training seed of the default and of title-x2 (the IDs stay seed 0): title-x2
    # trades ~0.01 of both validation columns for +0.04 title R@1 on one seed, about one
    # seed's std in the study grid's cells; same machine.
    "default-s1": (["train.seed=1"], "the default preset, training seed 1"),
    "title-x2-s1": (
        ["train.indexing_variants=[text, title, title, title_year]", "train.seed=1"],
        "title-x2, training seed 1",
    ),
}


def recall(metrics: dict, method: str, task: str, k: int = 30) -> float | None:
    value = metrics.get(method, {}).get(task, {}).get(f"recall@{k}")
    return None if value is None else round(float(value), 4)


def strata(run_dir: Path, task: str, k: int = 30) -> dict[str, float | None]:
    """Generator search recall on targets whose quantizer code is unique vs shared."""
    manifest = read_json(run_dir / "manifest.json")
    shared, _ = shared_code_items(Path(manifest["stages"]["ids"]["path"]))
    preds = pl.read_parquet(
        run_dir / "predictions.parquet", columns=["method", "task", "target", "rank"]
    )
    gen = preds.filter((pl.col("method") == "generative") & (pl.col("task") == task))
    hit = ((gen["rank"] >= 0) & (gen["rank"] < k)).to_numpy()
    is_shared = shared[gen["target"].to_numpy()]
    return {
        "unique": round(float(hit[~is_shared].mean()), 4) if (~is_shared).any() else None,
        "shared": round(float(hit[is_shared].mean()), 4) if is_shared.any() else None,
    }


def title_ceiling(run_dir: Path) -> float:
    """Best title-alone top-1 rate any method can reach: items sharing their exact title
    with others (Sabrina 1954 / 1995) count once per title."""
    titles = pl.read_parquet(run_dir / "model" / "items.parquet", columns=["title"])["title"]
    return round(titles.n_unique() / len(titles), 4)


def row(name: str, run_dir: Path, wall: float | None) -> dict:
    metrics = read_json(run_dir / "metrics.json")
    manifest = read_json(run_dir / "manifest.json")
    stages = manifest["stages"]
    model = stages["model"]["facts"]
    evaluate = stages["evaluate"]
    n_inputs = sum(v.get("n", 0) for v in metrics["generative"].values())
    out = {"recipe": name, "what": RECIPES[name][1], "overrides": RECIPES[name][0]}
    for task in ("search_valid", "rec_valid", "search", "search_real", "rec"):
        out[f"generative {task} R@30"] = recall(metrics, "generative", task)
    out["generative search_title R@1"] = recall(metrics, "generative", "search_title", 1)
    out["dense search_valid R@30"] = recall(metrics, "dense", "search_valid")
    out["dense search R@30"] = recall(metrics, "dense", "search")
    out["dense search_real R@30"] = recall(metrics, "dense", "search_real")
    out["dense search_title R@1"] = recall(metrics, "dense", "search_title", 1)
    out["title R@1 ceiling (identical titles)"] = title_ceiling(run_dir)
    out["bm25 search R@30"] = recall(metrics, "bm25", "search")
    out["sasrec rec_valid R@30"] = recall(metrics, "sasrec", "rec_valid")
    out["sasrec rec R@30"] = recall(metrics, "sasrec", "rec")
    out["popularity rec R@30"] = recall(metrics, "popularity", "rec")
    s = strata(run_dir, "search")
    out["generative search R@30 unique code"] = s["unique"]
    out["generative search R@30 shared code"] = s["shared"]
    out["coverage search"] = metrics["generative"].get("search", {}).get("coverage")
    out["coverage rec"] = metrics["generative"].get("rec", {}).get("coverage")
    out["parameters"] = model.get("parameters")
    out["train examples/s"] = model.get("examples_per_second")
    out["train minutes"] = round(model.get("seconds", 0) / 60, 2)
    text = stages.get("text_vectors", {})
    if text:  # a cached stage: the cost it had when it was built
        built = read_json(Path(text["path"]) / "_stage.json")
        out["text vectors minutes (when built)"] = round(built["seconds"] / 60, 2)
    out["decode inputs/s"] = (
        round(n_inputs / evaluate["seconds"], 1) if evaluate.get("seconds") else None
    )
    out["peak RSS MB"] = max((s.get("peak_rss_mb") or 0) for s in stages.values()) or None
    out["wall minutes (this call)"] = None if wall is None else round(wall / 60, 2)
    out["run_dir"] = run_dir.name
    return out


def save(rows: dict[str, dict]) -> list[dict]:
    """Write the rows (in recipe order) and return them."""
    ordered = [rows[n] for n in RECIPES if n in rows]
    write_json(
        OUT,
        {
            "protocol": "default preset: seen items excluded, fp32 decoding, valid + test",
            "seeds": "one training seed per recipe (seed 0)",
            "title ceiling": "title R@1 ceiling: distinct titles / items (items sharing an "
            "exact title count once); rows measured before the column existed carry the value "
            "of the same catalogue",
            "rows": ordered,
        },
    )
    return ordered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=list(RECIPES), help="Recipes to run.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/generator-benchmark"))
    parser.add_argument(
        "--existing",
        nargs="*",
        default=[],
        metavar="RECIPE=RUN_DIR",
        help="Measure a finished run instead of training the recipe again; its config must "
        "be the recipe's (fields added to the config since then take their defaults).",
    )
    args = parser.parse_args()
    rows = {r["recipe"]: r for r in (json.loads(OUT.read_text())["rows"] if OUT.exists() else [])}
    existing = dict(item.split("=", 1) for item in args.existing)
    for name in args.only or list(RECIPES):
        cfg = load_config("default", None, [f"name=gen-{name}", *RECIPES[name][0]])
        start = time.perf_counter()
        if name in existing:
            run_dir = Path(existing[name])
            found = RunConfig.model_validate(read_json(run_dir / "config.json"))
            mine, theirs = cfg.model_dump(exclude={"name"}), found.model_dump(exclude={"name"})
            if mine != theirs:
                diff = sorted(
                    f"{part}.{key}"
                    for part in mine
                    if isinstance(mine[part], dict)
                    for key in mine[part]
                    if mine[part][key] != theirs[part].get(key)
                )
                raise SystemExit(f"{run_dir}: config is not recipe {name}'s (differs in {diff})")
            rows[name] = row(name, run_dir, None)
            continue
        run_dir = run_pipeline(cfg, args.runs_dir)
        rows[name] = row(name, run_dir, time.perf_counter() - start)
        save(rows)
    ordered = save(rows)
    table = pl.DataFrame(
        [{k: v for k, v in r.items() if k not in ("what", "overrides")} for r in ordered]
    )
    with pl.Config(tbl_cols=-1, tbl_rows=-1, tbl_width_chars=200):
        print(table.transpose(include_header=True, column_names="recipe"))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
