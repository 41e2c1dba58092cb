"""Time and error of bf16 autocast in the text-t5 generator's frozen sentence encoder.

    python benchmarks/text_precision.py --run-dir runs/NAME [--texts 20000]

Embeds the run's first ``--texts`` training queries and its validation template queries
with the generator's text encoder in fp32 and under bf16 autocast
(``model.text_precision``), and reports the seconds and texts/s of each, the cosine between
the two vectors of a text, and what the rounding does to retrieval: dense kNN Recall@30 of
the validation queries over the run's item embeddings and the overlap of the two top-30
lists. Prints a table and writes benchmarks/results/text_precision.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from semid.data.dataset import Splits
from semid.embeddings import load_embeddings
from semid.evaluation.evaluate import eval_inputs
from semid.evaluation.metrics import recall_at_k, target_ranks
from semid.evaluation.seen import topk_unseen
from semid.generative.model import autocast_dtype
from semid.generative.textmodel import FrozenTextEncoder
from semid.io import write_json
from semid.pipeline import load_state, set_threads
from semid.stages.model import text_encoder_name, text_encoder_path

OUT = Path(__file__).resolve().parent / "results" / "text_precision.json"
K = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=20000)
    args = parser.parse_args()
    cfg, paths = load_state(args.run_dir)
    set_threads(cfg.train.num_threads)
    splits = Splits.load(paths["splits"])
    artifact = load_embeddings(paths["embeddings"])
    texts = splits.train_queries()["query"].to_list()[: args.texts]
    inputs = eval_inputs(splits, cfg.eval, cfg.seed)
    valid = inputs.query_sets["search_valid"]
    queries, targets = inputs.queries[valid], inputs.query_targets[valid]
    encoder = FrozenTextEncoder(text_encoder_path(cfg, artifact))
    items = artifact.spaces["item"]
    out: dict = {
        "run": args.run_dir.name,
        "encoder": text_encoder_name(cfg) or encoder.path,
        "texts": len(texts),
        "validation queries": len(queries),
        "cpu threads": int(cfg.train.num_threads or os.cpu_count() or 1),
        "bf16 hardware": autocast_dtype("auto", encoder.model.device) is not None,
    }
    vectors, ranked = {}, {}
    for precision in ("fp32", "bf16"):
        encoder.precision = precision
        encoder.encode(texts[:256])  # warm-up (kernels, allocator)
        start = time.perf_counter()
        vectors[precision] = encoder.encode(texts)
        seconds = time.perf_counter() - start
        out[f"{precision} seconds"] = round(seconds, 1)
        out[f"{precision} texts/s"] = round(len(texts) / seconds, 1)
        scores = encoder.encode(queries) @ items.T  # dense kNN, as the dense baseline ranks
        ranked[precision] = topk_unseen(scores, [[]] * len(queries), K, exclude_seen=False)
        out[f"{precision} dense search_valid R@{K}"] = round(
            recall_at_k(target_ranks(ranked[precision], np.asarray(targets)), K), 4
        )
    cos = (vectors["fp32"] * vectors["bf16"]).sum(axis=1)
    out["speed-up"] = round(out["fp32 seconds"] / out["bf16 seconds"], 2)
    out["cosine fp32 vs bf16: min"] = round(float(cos.min()), 6)
    out["cosine fp32 vs bf16: mean"] = round(float(cos.mean()), 6)
    overlap = [len(set(a) & set(b)) / K for a, b in zip(*ranked.values(), strict=True)]
    out[f"dense top-{K} overlap"] = round(float(np.mean(overlap)), 4)
    write_json(OUT, out)
    with pl.Config(tbl_rows=-1):
        print(pl.DataFrame({"metric": list(out), "value": [str(v) for v in out.values()]}))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
