"""What serving choices cost in quality: beam search vs exact ranking, and new-item retrieval.

1. Beam vs exact. For held-out queries and users of a trained run, rank with the
   trie-constrained beam search and with exact scoring of every item
   (:mod:`semid.generative.exact`); report Recall@K of both, the overlap of their top-K lists,
   how often beam search finds the exact top-1, and the time per input.

2. New items (copy protocol). A fraction of the catalogue is re-added as *new* items: copies
   with fresh item ids and the same metadata, assigned with ``semid ids assign`` (same encoder,
   same quantizer, so the same code prefix, and the next free disambiguation token). The
   generator never saw the copies. For every held-out query whose target was copied (and for the
   item's own text), report how often the original and the copy are in the top-K: a copy as
   findable as its original means assignment without retraining works.

    python benchmarks/serving_quality.py runs/NAME --queries 200 --k 10 --fraction 0.05

Results: a printed table and ``benchmarks/results/serving_quality.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from semid.assign import assign_from_run
from semid.generative.exact import exact_rank
from semid.io import write_json
from semid.serving import SemidModel

RESULTS = Path(__file__).parent / "results" / "serving_quality.json"


def stage_folder(run_dir: Path, stage: str) -> Path:
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    return Path(stages[stage]["path"])


def recall(ranked: np.ndarray, targets: np.ndarray) -> float:
    return float((ranked == targets[:, None]).any(axis=1).mean()) if len(targets) else float("nan")


def beam_vs_exact(model: SemidModel, task: str, inputs: list, targets: np.ndarray, k: int) -> dict:
    retriever = model.retriever
    tokens = (
        retriever.inputs.search(inputs) if task == "search" else retriever.inputs.history(inputs)
    )
    start = time.perf_counter()
    if task == "search":
        beam, beam_scores = retriever.search(inputs, k=k, batch_size=32)
    else:
        beam, beam_scores = retriever.recommend(inputs, k=k, batch_size=32)
    beam_s = time.perf_counter() - start
    start = time.perf_counter()
    exact, exact_scores = exact_rank(retriever, tokens, task, k, batch_size=4)
    exact_s = time.perf_counter() - start
    overlap = np.mean([len(set(b) & set(e)) / k for b, e in zip(beam, exact, strict=True)])
    return {
        "inputs": len(inputs),
        f"beam_recall@{k}": recall(beam, targets),
        f"exact_recall@{k}": recall(exact, targets),
        f"overlap@{k}": float(overlap),
        "beam_finds_exact_top1": float((beam == exact[:, :1]).any(axis=1).mean()),
        "mean_top1_gap": float(np.mean(exact_scores[:, 0] - beam_scores[:, 0])),
        "beam_ms_per_input": 1000 * beam_s / len(inputs),
        "exact_ms_per_input": 1000 * exact_s / len(inputs),
    }


def new_items(
    run_dir: Path, model: SemidModel, queries: pl.DataFrame, k: int, fraction: float, seed: int
) -> dict:
    rng = np.random.default_rng(seed)
    items = model.items
    n_copy = max(1, int(round(fraction * items.height)))
    rows = np.sort(rng.choice(items.height, n_copy, replace=False))
    first_id = int(items["item_id"].max()) + 1
    copies = items[rows.tolist()].select("item_id", "title", "year", "genres", "tags", "text")
    copies = copies.with_columns(pl.Series("item_id", first_id + np.arange(n_copy)))
    copy_of = dict(
        zip(copies["item_id"].to_list(), items["item_id"][rows.tolist()].to_list(), strict=True)
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = assign_from_run(run_dir, copies, out_dir=Path(tmp) / "model")
        grown = SemidModel.load(result.folder, precision=model.retriever.precision)
    assigned = set(result.assigned["item_id"].to_list())
    original_of = {c: o for c, o in copy_of.items() if c in assigned}
    copy_for = {o: c for c, o in original_of.items()}
    id_of_row = items["item_id"].to_list()
    held = queries.filter(pl.col("item_idx").is_in(items["item_idx"][rows.tolist()].to_list()))
    probes = [(q, id_of_row[i]) for q, i in zip(held["query"], held["item_idx"], strict=True)]
    probes = [(q, o) for q, o in probes if o in copy_for]
    texts = [(t, o) for t, o in zip(items["text"], id_of_row, strict=True) if o in copy_for]
    out = {
        "copied": n_copy,
        "assigned": len(assigned),
        "refused": result.rejected.height,
        "refusal_reasons": result.rejected["reason"].unique().to_list()[:3],
    }
    for label, pairs in (("test_queries", probes), ("item_texts", texts)):
        if not pairs:
            continue
        new_rows = np.arange(items.height, grown.n_items)
        for mode in ("beam", "exact", "exact_cold"):
            if mode == "beam":
                frames = grown.search_batch([q for q, _ in pairs], k=k)
            else:
                retriever = grown.retriever
                tokens = retriever.inputs.search([q for q, _ in pairs])
                cold = new_rows if mode == "exact_cold" else None
                ranked, scores = exact_rank(retriever, tokens, "search", k, cold_items=cold)
                frames = [grown._frame(r, s) for r, s in zip(ranked, scores, strict=True)]
            found_orig = [
                o in f["item_id"].to_list() for (_, o), f in zip(pairs, frames, strict=True)
            ]
            found_copy = [
                copy_for[o] in f["item_id"].to_list()
                for (_, o), f in zip(pairs, frames, strict=True)
            ]
            out[f"{label}_{mode}"] = {
                "queries": len(pairs),
                f"original_recall@{k}": float(np.mean(found_orig)),
                f"copy_recall@{k}": float(np.mean(found_copy)),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--queries", type=int, default=200, help="Held-out queries and users.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.05, help="Items copied as new.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    model = SemidModel.load(args.run_dir, precision=args.precision)
    splits = stage_folder(args.run_dir, "splits")
    queries = pl.read_parquet(splits / "queries.parquet").filter(pl.col("split") == "test")
    sample = queries[
        np.sort(
            rng.choice(queries.height, min(args.queries, queries.height), replace=False)
        ).tolist()
    ]
    sequences = pl.read_parquet(splits / "sequences.parquet")
    users = sequences[
        np.sort(
            rng.choice(sequences.height, min(args.queries, sequences.height), replace=False)
        ).tolist()
    ]
    histories = [
        t + [v] for t, v in zip(users["train"].to_list(), users["valid"].to_list(), strict=True)
    ]
    result = {
        "run_dir": str(args.run_dir),
        "items": model.n_items,
        "k": args.k,
        "precision": model.retriever.precision,
        "search": beam_vs_exact(
            model, "search", sample["query"].to_list(), sample["item_idx"].to_numpy(), args.k
        ),
        "rec": beam_vs_exact(model, "rec", histories, users["test"].to_numpy(), args.k),
        "new_items": new_items(args.run_dir, model, queries, args.k, args.fraction, args.seed),
    }
    print(json.dumps(result, indent=2))
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
