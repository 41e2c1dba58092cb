"""Import speed and memory on a synthetic catalogue (default 1M items, 20M interactions).

Generates a catalogue in the generic schema (``docs/data-format.md``) as Parquet, then times:
reading + validating + normalising it (``import_catalogue``), saving the internal dataset,
loading it back through ``load_dataset(data.dataset=custom)`` and the leave-last-out split.
Prints a table and writes ``benchmarks/results/synthetic_import.json``.

    nice -n 10 python benchmarks/synthetic_catalogue.py --items 100000 --interactions 2000000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from semid.data import DataConfig, import_catalogue, leave_last_out, load_dataset
from semid.io import read_json, write_json
from semid.runs import peak_rss_mb, reset_peak_rss

RESULTS = Path(__file__).parent / "results" / "synthetic_import.json"
WORDS = np.array([
    "amber", "river", "night", "city", "ghost", "garden", "silent", "storm", "paper", "crown",
    "winter", "echo", "glass", "iron", "summer", "shadow", "north", "dream", "stone", "velvet",
])  # fmt: skip
GENRES = np.array([
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
])  # fmt: skip
TAGS = np.array([f"tag{i}" for i in range(500)])


def _lists(rng: np.random.Generator, n: int, vocab: np.ndarray, low: int, high: int) -> pl.Series:
    """``n`` lists of ``low..high`` words from ``vocab``, built without a Python loop."""
    lengths = rng.integers(low, high + 1, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = pa.array(vocab[rng.integers(0, len(vocab), size=int(offsets[-1]))])
    return pl.Series(pa.LargeListArray.from_arrays(pa.array(offsets), values))


def make_catalogue(
    n_items: int, n_interactions: int, n_users: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A synthetic catalogue: Zipf-like item popularity, random users and timestamps."""
    rng = np.random.default_rng(seed)
    item_ids = rng.permutation(n_items).astype(np.int64) * 7 + 1000
    word = pl.Series(WORDS)
    year = rng.integers(1920, 2024, size=n_items).astype(np.float64)
    year[rng.random(n_items) < 0.05] = np.nan
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": word.gather(rng.integers(0, len(WORDS), n_items))
            + " "
            + word.gather(rng.integers(0, len(WORDS), n_items))
            + " "
            + pl.Series(np.arange(n_items)).cast(pl.String),
            "year": pl.Series(year).cast(pl.Int32, strict=False),
            "genres": _lists(rng, n_items, GENRES, 1, 3),
            "tags": _lists(rng, n_items, TAGS, 0, 4),
        }
    )
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity /= popularity.sum()
    chosen = rng.choice(n_items, size=n_interactions, p=popularity)
    interactions = pl.DataFrame(
        {
            "user_id": rng.integers(0, n_users, size=n_interactions, dtype=np.int64),
            "item_id": item_ids[chosen],
            "timestamp": rng.integers(946_684_800, 1_700_000_000, size=n_interactions),
            "rating": (rng.integers(1, 11, size=n_interactions) / 2).astype(np.float32),
        }
    )
    return items, interactions


def write_tables(items: pl.DataFrame, interactions: pl.DataFrame, folder: Path) -> None:
    items.write_parquet(folder / "items.parquet")
    interactions.write_parquet(folder / "interactions.parquet")


def write_movielens_csv(items: pl.DataFrame, interactions: pl.DataFrame, folder: Path) -> None:
    """The same catalogue in the ml-25m CSV layout (movies.csv, ratings.csv, tags.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    items.select(
        pl.col("item_id").alias("movieId"),
        pl.format("{} ({})", "title", pl.col("year").fill_null(2000)).alias("title"),
        pl.col("genres").list.join("|").alias("genres"),
    ).write_csv(folder / "movies.csv")
    interactions.select(
        pl.col("user_id").alias("userId"), pl.col("item_id").alias("movieId"), "rating",
        "timestamp",
    ).write_csv(folder / "ratings.csv")  # fmt: skip
    items.select(pl.col("item_id").alias("movieId"), "tags").explode("tags").drop_nulls().select(
        pl.lit(1).alias("userId"),
        "movieId",
        pl.col("tags").alias("tag"),
        pl.lit(0).alias("timestamp"),
    ).write_csv(folder / "tags.csv")


def timed(label: str, fn: Callable[[], Any], rows: list[dict[str, Any]]) -> Any:
    reset_peak_rss()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    rows.append({"step": label, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb())})
    print(f"  {label:<38} {seconds:8.2f} s {rows[-1]['peak_rss_mb']:>8} MB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=None, help="default: interactions / 40")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--movielens-csv",
        action="store_true",
        help="also write the catalogue in the ml-25m CSV layout and time load_dataset on it",
    )
    args = parser.parse_args()
    n_users = args.users or max(2, args.interactions // 40)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="semid-synthetic-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    print(f"{args.items:,} items, {args.interactions:,} interactions, {n_users:,} users in {work}")
    try:
        items, inter = timed(
            "generate",
            lambda: make_catalogue(args.items, args.interactions, n_users, args.seed),
            rows,
        )
        timed("write parquet", partial(write_tables, items, inter, work), rows)
        if args.movielens_csv:
            timed(
                "write MovieLens CSV", partial(write_movielens_csv, items, inter, work / "ml"), rows
            )
        del items, inter
        if args.movielens_csv:
            ml_cfg = DataConfig(dataset="ml-25m", path=work / "ml")
            timed("load_dataset (MovieLens CSV layout)", lambda: load_dataset(ml_cfg), rows)
        dataset = timed(
            "import_catalogue (read+validate+norm.)",
            lambda: import_catalogue(work / "items.parquet", work / "interactions.parquet"),
            rows,
        )
        timed("Dataset.save", lambda: dataset.save(work / "internal"), rows)
        del dataset
        cfg = DataConfig(dataset="custom", path=work / "internal")
        dataset = timed("load_dataset (saved folder)", lambda: load_dataset(cfg), rows)
        sequences = timed(
            "leave_last_out",
            lambda: leave_last_out(dataset.interactions, 3, drop_short_users=True),
            rows,
        )
        result = {
            "items": args.items,
            "interactions": args.interactions,
            "movielens_csv": args.movielens_csv,
            "users": n_users,
            "users_kept": sequences.height,
            "seed": args.seed,
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "polars": pl.__version__,
                "cpus": os.cpu_count(),
                "load_average_at_start": load_at_start,
            },
            "steps": rows,
        }
        previous = read_json(args.out) if args.out.exists() else {"runs": []}
        runs = [
            r
            for r in previous.get("runs", [])
            if (r["items"], r["interactions"], r.get("movielens_csv", False))
            != (args.items, args.interactions, args.movielens_csv)
        ]
        write_json(
            args.out,
            {"runs": sorted([*runs, result], key=lambda r: (r["items"], r["interactions"]))},
        )
        print(f"wrote {args.out}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
