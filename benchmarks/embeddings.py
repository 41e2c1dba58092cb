"""Benchmark the embedding spaces on ml-latest-small: build time and their own kNN quality.

Each space is built from scratch with :func:`semid.embeddings.build_embeddings` on the default
data config (ml-latest-small, template queries, leave-last-out) and the default
``EmbeddingConfig`` (overridable with ``--set``). Then, with nothing but the embeddings:

- search: Recall@10/30 of cosine kNN from the query embedding over the item space, on a
  seeded sample of the held-out (test) template queries;
- rec: Recall@30 for each user's test item, ranking by the mean embedding of the user's last
  ``--history`` items (train + valid), over all items and over items not yet seen ("unseen");
  for collaborative spaces also by the model's own user vectors (``user_item_scores``).

Reference points on the same inputs: BM25 (search), popularity and SASRec (rec).

    nice -n 10 python benchmarks/embeddings.py                    # every space
    python benchmarks/embeddings.py --spaces content,rec-enmf --set embedding.rec_epochs=50

Prints a table and writes ``benchmarks/results/embeddings.json`` (rows measured earlier for
other spaces are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPACES = {
    "content": {"space": "content"},
    "search": {"space": "search"},
    "rec-enmf": {"space": "rec", "rec_model": "enmf"},
    "rec-als": {"space": "rec", "rec_model": "als"},
    "rec-bpr": {"space": "rec", "rec_model": "bpr"},
    "fused-concat": {"space": "fused-concat"},
    "fused-svd": {"space": "fused-svd"},
    "multitask": {"space": "multitask"},
}
DEFAULT_SPACES = "content,search,rec-enmf,rec-als,fused-concat,fused-svd,multitask"


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    return float(np.mean((ranked[:, :k] == targets[:, None]).any(axis=1)))


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rec_scores(items: np.ndarray, histories: list[list[int]], last: int) -> np.ndarray:
    normed = normalise(items.astype(np.float32))
    mean = np.stack([normed[h[-last:]].mean(axis=0) for h in histories])
    return mean @ normed.T


def rec_metrics(scores: np.ndarray, seen: list[list[int]], targets: np.ndarray, prefix: str):
    out = {f"{prefix}R@30": recall(top_k(scores, 30), targets, 30)}
    masked = scores.copy()
    for row, items in enumerate(seen):
        masked[row, items] = -np.inf
    out[f"{prefix}R@30_unseen"] = recall(top_k(masked, 30), targets, 30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", default=DEFAULT_SPACES, help=f"of {list(SPACES)}")
    parser.add_argument("--set", action="append", default=[], help="config KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=2000, help="test queries scored")
    parser.add_argument("--history", type=int, default=20, help="items in the mean history")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "embeddings.json")
    args = parser.parse_args()

    import torch

    from semid.config import load_config
    from semid.data import load_dataset, make_splits
    from semid.embeddings import build_embeddings, load_embeddings

    cfg = load_config("default", None, args.set)
    dataset = load_dataset(cfg.data)
    splits = make_splits(dataset, cfg.data, cfg.queries, args.seed)
    texts = dataset.items["text"].to_list()
    test_q = splits.test_queries()
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(test_q.height, min(args.queries, test_q.height), replace=False))
    queries = test_q[pick.tolist()]
    query_texts = queries["query"].to_list()
    query_targets = queries["item_idx"].to_numpy().astype(np.int64)
    seqs = splits.sequences
    histories = [t + [v] for t, v in zip(seqs["train"].to_list(), seqs["valid"], strict=True)]
    rec_targets = seqs["test"].to_numpy().astype(np.int64)
    user_ids = seqs["user_id"].to_numpy()
    train_seqs = seqs["train"].to_list()
    facts: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}",
        "dataset": cfg.data.dataset,
        "items": dataset.n_items,
        "users": seqs.height,
        "train_interactions": int(sum(len(s) for s in train_seqs)),
        "train_queries": splits.train_queries().height,
        "test_queries_scored": len(query_texts),
        "config_overrides": args.set,
    }

    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = {row["name"]: row for row in previous.get("spaces", [])}
    baselines = previous.get("baselines", {})

    if not args.no_baselines:
        from semid.evaluation.bm25 import BM25Search
        from semid.evaluation.reference import popularity_ranking
        from semid.evaluation.sasrec import SASRec

        start = time.perf_counter()
        ranked, _ = BM25Search().fit(texts).search(query_texts, 30)
        baselines["bm25"] = {
            "search_R@10": recall(ranked, query_targets, 10),
            "search_R@30": recall(ranked, query_targets, 30),
            "seconds": round(time.perf_counter() - start, 1),
        }
        pop = np.zeros(dataset.n_items, dtype=np.float32)
        pop[popularity_ranking(train_seqs, dataset.n_items, dataset.n_items)] = np.arange(
            dataset.n_items, 0, -1
        )
        baselines["popularity"] = rec_metrics(
            np.tile(pop, (len(histories), 1)), histories, rec_targets, "rec_"
        )
        start = time.perf_counter()
        sasrec = SASRec(max_len=cfg.data.max_history, random_state=args.seed).fit(
            train_seqs, dataset.n_items
        )
        fit_seconds = time.perf_counter() - start
        baselines["sasrec"] = rec_metrics(sasrec.scores(histories), histories, rec_targets, "rec_")
        baselines["sasrec"].update(
            seconds=round(fit_seconds, 1),
            epochs=sasrec.epochs,
            steps=sasrec.steps_,
            final_loss=sasrec.loss_curve_[-1],
        )
        print(json.dumps(baselines, indent=1), flush=True)

    for name in args.spaces.split(","):
        overrides = SPACES[name]
        space_cfg = cfg.embedding.model_copy(update=overrides)
        with tempfile.TemporaryDirectory(prefix=f"semid-bench-{name}-") as tmp:
            start = time.perf_counter()
            build_facts = build_embeddings(space_cfg, dataset, splits, Path(tmp), args.seed)
            seconds = time.perf_counter() - start
            art = load_embeddings(Path(tmp))
            row: dict[str, Any] = {
                "name": name,
                "space": space_cfg.space,
                "rec_model": space_cfg.rec_model if "rec" in art.meta["training"] else None,
                "build_seconds": round(seconds, 1),
                "build_minutes": round(seconds / 60, 2),
                "dims": build_facts["dims"],
            }
            for part, info in art.meta["training"].items():
                row[f"{part}_seconds"] = info["seconds"]
                if part == "encoder":
                    row.update(tune_steps=info["steps"], tune_epochs=info["epochs"])
                    row["tune_final_loss"] = info["loss_curve"][-1]
                else:
                    row["rec_epochs"] = info["epochs"]
                    row["items_without_train_interactions"] = info[
                        "items_without_train_interactions"
                    ]
            search_space = "item" if "item" in art.spaces else "search"
            start = time.perf_counter()
            vectors = art.encode_queries(query_texts)
            if vectors is not None:
                scores = normalise(vectors) @ normalise(art.spaces[search_space]).T
                ranked = top_k(scores, 30)
                row["search_R@10"] = recall(ranked, query_targets, 10)
                row["search_R@30"] = recall(ranked, query_targets, 30)
            rec_space = "item" if "item" in art.spaces else "rec"
            scores = rec_scores(art.spaces[rec_space], histories, args.history)
            row.update(rec_metrics(scores, histories, rec_targets, "rec_"))
            user_scores = art.user_item_scores(user_ids) if art.user_vectors is not None else None
            if user_scores is not None:
                row.update(rec_metrics(user_scores, histories, rec_targets, "user_"))
            row["eval_seconds"] = round(time.perf_counter() - start, 1)
        rows[name] = row
        print(json.dumps(row), flush=True)
        _write(args.out, facts, baselines, rows)

    _print_table(rows, baselines)
    _write(args.out, facts, baselines, rows)


def _write(path: Path, facts: dict, baselines: dict, rows: dict) -> None:
    from semid.io import write_json

    order = [n for n in SPACES if n in rows]
    write_json(path, {**facts, "baselines": baselines, "spaces": [rows[n] for n in order]})


def _print_table(rows: dict, baselines: dict) -> None:
    cols = [
        ("name", 13, "s"),
        ("build_minutes", 8, ".2f"),
        ("search_R@10", 8, ".3f"),
        ("search_R@30", 8, ".3f"),
        ("rec_R@30", 8, ".3f"),
        ("rec_R@30_unseen", 8, ".3f"),
        ("user_R@30", 8, ".3f"),
        ("user_R@30_unseen", 8, ".3f"),
    ]
    header = ["space", "minutes", "sR@10", "sR@30", "rR@30", "rR@30u", "uR@30", "uR@30u"]
    print(" ".join(h.rjust(w) for h, (_, w, _) in zip(header, cols, strict=True)))
    all_rows = [rows[n] for n in SPACES if n in rows]
    all_rows += [{"name": name, **vals} for name, vals in baselines.items()]
    for row in all_rows:
        cells = []
        for key, width, fmt in cols:
            value = row.get(key)
            if key == "build_minutes" and value is None and "seconds" in row:
                value = row["seconds"] / 60
            cells.append(("-" if value is None else format(value, fmt)).rjust(width))
        print(" ".join(cells))


if __name__ == "__main__":
    main()
