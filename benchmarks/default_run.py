"""Benchmark of the main job: wall time and peak RSS per stage, training examples/s,
constrained-decoding queries/s and the metrics table.

    python benchmarks/default_run.py                 # runs `semid run` (default preset) first
    python benchmarks/default_run.py --run-dir runs/NAME   # measure an existing run
    python benchmarks/default_run.py --out benchmarks/results/OTHER.json  # another machine

Prints a table and writes benchmarks/results/default_run.json (or the ``--out`` path).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from semid.config import load_config
from semid.generative.model import cpu_has_fast_bf16
from semid.generative.retriever import GenerativeRetriever
from semid.io import write_json
from semid.pipeline import load_state, run_pipeline, set_threads

OUT = Path(__file__).resolve().parent / "results" / "default_run.json"


def decode_rate(run_dir: Path, n: int, beam: int, width: int | None = None) -> dict:
    """Queries/s of trie-constrained beam search (``width`` beams, the top ``beam`` items
    returned) on held-out queries and user histories."""
    cfg, paths = load_state(run_dir)
    set_threads(cfg.train.num_threads)
    retriever = GenerativeRetriever.load(run_dir / "model")
    queries = pl.read_parquet(paths["splits"] / "queries.parquet").filter(pl.col("split") == "test")
    texts = queries["query"].to_list()[:n]
    seqs = pl.read_parquet(paths["splits"] / "sequences.parquet")["train"].to_list()[:n]
    out = {}
    for task, inputs, fn in (
        ("search", texts, retriever.search),
        ("rec", seqs, retriever.recommend),
    ):
        start = time.perf_counter()
        items, _ = fn(inputs, k=beam, batch_size=cfg.eval.batch_size, beams=width)
        seconds = time.perf_counter() - start
        assert (items >= 0).all()
        out[task] = {
            "inputs": len(inputs),
            "seconds": round(seconds, 2),
            "per_second": round(len(inputs) / seconds, 1),
        }
    return out


def machine(manifest: dict) -> dict:
    """The CPU the run was measured on and the precision its text vectors were embedded in."""
    import os
    import platform

    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = manifest["stages"].get("text_vectors", {}).get("facts", {})
    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "fast_bf16": cpu_has_fast_bf16(),
        "text_vectors_precision": text.get("precision"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, help="Existing run directory to measure.")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--decode-inputs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=OUT, help="JSON to write.")
    args = parser.parse_args()
    run_dir = args.run_dir
    total = None
    if run_dir is None:
        start = time.perf_counter()
        run_dir = run_pipeline(load_config(args.preset), Path("runs"))
        total = time.perf_counter() - start
    manifest = json.loads((run_dir / "manifest.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg, _ = load_state(run_dir)
    stages = {}
    for name, s in manifest["stages"].items():
        # a cached stage reports the cost it had when it was built (recorded in its folder)
        built = json.loads((Path(s["path"]) / "_stage.json").read_text())
        stages[name] = {
            "seconds": built["seconds"],
            "peak_rss_mb": built["peak_rss_mb"],
            "cached": s["cached"],
        }
    model = manifest["stages"]["model"]["facts"]
    result = {
        "run_dir": str(run_dir),
        "wall_seconds": total,
        "stages": stages,
        "train_examples_per_second": model.get("examples_per_second"),
        "decode": decode_rate(run_dir, args.decode_inputs, cfg.eval.beam_size, cfg.eval.beam_width),
        "metrics": metrics,
        "machine": machine(manifest),
    }
    print(f"{'stage':<12}{'seconds':>10}{'peak RSS MB':>14}{'cached':>8}")
    for name, s in stages.items():
        print(
            f"{name:<12}{s['seconds']:>10.1f}{(s['peak_rss_mb'] or float('nan')):>14.0f}"
            f"{str(s['cached']):>8}"
        )
    print(f"training examples/s: {result['train_examples_per_second']}")
    for task, d in result["decode"].items():
        width = cfg.eval.beam_width or cfg.eval.beam_size
        print(
            f"constrained {width}-beam decoding (top {cfg.eval.beam_size}), {task}: "
            f"{d['per_second']} inputs/s"
        )
    k = max(cfg.eval.ks)
    print(f"\n{'method':<20}{'search R@' + str(k):>14}{'rec R@' + str(k):>12}")
    for method, tasks in metrics.items():
        cells = [tasks.get(t, {}).get(f"recall@{k}") for t in ("search", "rec")]
        print(f"{method:<20}" + "".join(f"{'—' if c is None else f'{c:.4f}':>13}" for c in cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
