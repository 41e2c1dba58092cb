"""What bf16 autocast does to the generator's rankings, against fp32 decoding (the default).

    python benchmarks/bf16_decoding.py --run-dir runs/NAME [--inputs 300]

Decodes the same held-out template queries and user histories (test split, seen items banned)
in both precisions and reports top-1 agreement, the mean overlap of the top-K lists, Recall@K
and the time of each. Prints a table and writes benchmarks/results/bf16_decoding.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from semid.data.dataset import Splits
from semid.evaluation.evaluate import eval_inputs
from semid.evaluation.metrics import recall_at_k, target_ranks
from semid.generative.model import autocast_dtype
from semid.generative.retriever import GenerativeRetriever
from semid.io import write_json
from semid.pipeline import load_state, set_threads

OUT = Path(__file__).resolve().parent / "results" / "bf16_decoding.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--inputs", type=int, default=300)
    args = parser.parse_args()
    cfg, paths = load_state(args.run_dir)
    set_threads(cfg.train.num_threads)
    inputs = eval_inputs(Splits.load(paths["splits"]), cfg.eval, cfg.seed)
    q = inputs.query_sets["search"]
    r = inputs.rec_sets["rec"]
    queries = inputs.queries[q][: args.inputs]
    q_targets = inputs.query_targets[q][: args.inputs]
    histories = inputs.histories[r][: args.inputs]
    r_targets = inputs.rec_targets[r][: args.inputs]
    retriever = GenerativeRetriever.load(args.run_dir / "model")
    k = cfg.eval.beam_size
    out: dict = {"run": args.run_dir.name, "k": k, "inputs": args.inputs}
    out["bf16_hardware"] = autocast_dtype("auto", retriever.device) is not None
    ranked = {}
    for precision in ("fp32", "bf16"):
        retriever.precision = precision
        start = time.perf_counter()
        s, _ = retriever.search(queries, k=k)
        h, _ = retriever.recommend(histories, k=k, exclude_seen=True)
        ranked[precision] = (s, h)
        out[f"{precision} seconds"] = round(time.perf_counter() - start, 1)
    for task, idx, targets in (("search", 0, q_targets), ("rec", 1, r_targets)):
        a, b = ranked["fp32"][idx], ranked["bf16"][idx]
        overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)])
        out[task] = {
            "top1_agreement": round(float((a[:, 0] == b[:, 0]).mean()), 4),
            f"top{k}_overlap": round(float(overlap), 4),
            f"fp32 R@{k}": round(recall_at_k(target_ranks(a, targets), k), 4),
            f"bf16 R@{k}": round(recall_at_k(target_ranks(b, targets), k), 4),
        }
    write_json(OUT, out)
    for key, value in out.items():
        print(f"{key:>16}: {value}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
