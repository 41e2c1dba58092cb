"""Ambiguity of the template queries, generic vs specific, and the generation time.

Generates the template queries of ml-latest-small (``queries.per_item``, ``test_per_item``,
seed as in the default run), splits them as the pipeline does and measures, on the test
queries, :func:`semid.data.ambiguity.query_ambiguity`: the share whose text is also a query of
another item, the share that is verbatim a training query of another item, items per text and
the oracle ceiling on Recall@K. ``generic`` is ``queries.specific=false`` (the queries of
earlier versions), ``specific`` the default. No model is trained.

    python benchmarks/query_ambiguity.py            # prints a table, writes the JSON

Writes ``benchmarks/results/query_ambiguity.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import polars as pl

from semid.data import DataConfig, QueryConfig, load_dataset, split_queries
from semid.data.ambiguity import query_ambiguity
from semid.data.queries import generate_queries, title_share
from semid.io import write_json

RESULTS = Path(__file__).parent / "results" / "query_ambiguity.json"
KS = (1, 5, 10, 30)


def measure(items: pl.DataFrame, cfg: QueryConfig, seed: int) -> dict[str, Any]:
    """Generate, split and measure one query configuration."""
    start = time.perf_counter()
    raw = generate_queries(items, cfg, seed)
    seconds = time.perf_counter() - start
    queries = split_queries(raw, cfg.test_per_item, seed)
    test = queries.filter(pl.col("split") == "test")

    def share(frame: pl.DataFrame) -> float:
        titles = items["title"].gather(frame["item_idx"]).to_list()
        return round(title_share(frame["query"].to_list(), titles), 4)

    return {
        "specific": cfg.specific,
        "max_items_per_query": cfg.max_items_per_query if cfg.specific else None,
        "generation_seconds": round(seconds, 2),
        "queries": queries.height,
        "test_queries": test.height,
        "title_share": share(queries),
        "test_title_share": share(test),
        "test": query_ambiguity(queries, "test", KS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-item", type=int, default=10)
    parser.add_argument("--test-per-item", type=int, default=2)
    parser.add_argument("--max-items-per-query", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_at_start = [round(x, 1) for x in os.getloadavg()]
    items = load_dataset(DataConfig()).items
    rows = {}
    for name, specific in (("generic", False), ("specific", True)):
        cfg = QueryConfig(
            per_item=args.per_item,
            test_per_item=args.test_per_item,
            specific=specific,
            max_items_per_query=args.max_items_per_query,
        )
        rows[name] = measure(items, cfg, args.seed)

    header = ["queries", "shared", "shared w/ train", "items/text med", "mean", "title share"]
    header += [f"ceiling R@{k}" for k in KS] + ["gen s"]
    print(f"{'':<9}" + "".join(f"{h:>16}" for h in header))
    for name, row in rows.items():
        test = row["test"]
        cells = [test["queries"], f"{test['shared']:.3f}", f"{test['shared_with_train']:.3f}",
                 f"{test['items_per_text_median']:.0f}", f"{test['items_per_text_mean']:.1f}",
                 f"{row['title_share']:.3f}"]  # fmt: skip
        cells += [f"{v:.3f}" for v in test["ceiling"].values()] + [row["generation_seconds"]]
        print(f"{name:<9}" + "".join(f"{c:>16}" for c in cells))

    write_json(
        args.out,
        {
            "dataset": "ml-latest-small",
            "items": items.height,
            "per_item": args.per_item,
            "test_per_item": args.test_per_item,
            "seed": args.seed,
            "ks": list(KS),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "polars": pl.__version__,
                "cpus": os.cpu_count(),
                "load_average_at_start": load_at_start,
            },
            "runs": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
