"""Diagnostics that explain a set of semantic IDs: pure functions on codes and embeddings.

Every function returns plain dicts/lists of floats and ints (JSON-ready):

- :func:`level_usage` -- per level: codes used / K, perplexity ``exp(H)`` of the code usage
  (1 = collapsed onto one code, K = uniform), Gini coefficient of the usage counts over all K
  codes (0 = uniform, ``(K-1)/K`` = collapsed).
- :func:`prefix_collisions` -- at each prefix depth: distinct prefixes, share of items whose
  prefix is shared with another item, largest bucket, items unreachable without a
  disambiguation token (``n - distinct``, i.e. the sum over buckets of size - 1).
- :func:`explained_variance` -- ``1 - ||X - X_hat||^2 / ||X - mean(X)||^2``.
- :func:`semantic_coherence` -- share of items whose nearest neighbour (cosine, FAISS) has the
  same first code (first two codes...), against the random rate ``sum_b share_b^2``.
- :func:`diagnose` -- all of the above in one dict; :func:`format_diagnostics` renders it as a
  Markdown table for reports.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def _counts_stats(counts: np.ndarray) -> dict[str, float]:
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.size
    total = counts.sum()
    used = int((counts > 0).sum())
    share = counts[counts > 0] / total
    entropy = float(-(share * np.log(share)).sum())
    return {
        "codebook_size": int(k),
        "codes_used": used,
        "usage": used / k,
        "perplexity": float(np.exp(entropy)),
        "gini": gini(counts),
    }


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, (k-1)/k = one holds all)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    k, total = x.size, x.sum()
    if k == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, k + 1)
    return float(2.0 * (ranks * x).sum() / (k * total) - (k + 1) / k)


def level_usage(codes: np.ndarray, level_sizes: list[int]) -> list[dict[str, Any]]:
    """Code usage of every level: codes used, usage share, perplexity and Gini."""
    out = []
    for level, size in enumerate(level_sizes):
        counts = np.bincount(codes[:, level], minlength=size)
        out.append({"level": level + 1, **_counts_stats(counts)})
    return out


def bucket_sizes(codes: np.ndarray) -> np.ndarray:
    """Number of items sharing each distinct row of ``codes``."""
    if codes.shape[1] == 0:
        return np.array([codes.shape[0]])
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return counts


def prefix_collisions(codes: np.ndarray) -> list[dict[str, Any]]:
    """Collisions at every prefix depth 1..n_levels (the last one = the full ID)."""
    n = codes.shape[0]
    out = []
    for depth in range(1, codes.shape[1] + 1):
        sizes = bucket_sizes(codes[:, :depth])
        out.append(
            {
                "depth": depth,
                "distinct": int(sizes.size),
                "shared_share": float(sizes[sizes > 1].sum() / n),
                "largest_bucket": int(sizes.max()),
                "unreachable": int(n - sizes.size),
            }
        )
    return out


def explained_variance(X: np.ndarray, X_hat: np.ndarray) -> float:
    """``1 - ||X - X_hat||^2 / ||X - mean(X)||^2`` (1 = perfect, 0 = as good as the mean)."""
    X = np.asarray(X, dtype=np.float64)
    err = np.sum((X - np.asarray(X_hat, dtype=np.float64)) ** 2)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    return float(1.0 - err / total) if total > 0 else 0.0


def nearest_neighbours(X: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query row's nearest other row of ``X`` by cosine similarity (FAISS)."""
    Xn = np.ascontiguousarray(X, dtype=np.float32).copy()
    faiss.normalize_L2(Xn)
    index = faiss.IndexFlatIP(Xn.shape[1])
    index.add(Xn)
    _, found = index.search(Xn[queries], 2)
    return np.where(found[:, 0] == queries, found[:, 1], found[:, 0])


def semantic_coherence(
    X: np.ndarray,
    codes: np.ndarray,
    max_depth: int = 2,
    max_queries: int = 10_000,
    random_state: int = 0,
) -> dict[str, float]:
    """Share of items whose cosine nearest neighbour shares their first 1..max_depth codes.

    Catalogues larger than ``max_queries`` are scored on a seeded sample of query items
    (neighbours are still searched among all items). ``random_depth_d`` is the rate a random
    partner would reach: the sum of squared bucket shares at that depth.
    """
    n = X.shape[0]
    if n < 2:
        return {}
    if n > max_queries:
        rng = np.random.default_rng(random_state)
        queries = np.sort(rng.choice(n, size=max_queries, replace=False))
    else:
        queries = np.arange(n)
    neighbours = nearest_neighbours(X, queries)
    out: dict[str, float] = {"queries": int(queries.size)}
    for depth in range(1, min(max_depth, codes.shape[1]) + 1):
        same = np.all(codes[queries, :depth] == codes[neighbours, :depth], axis=1)
        share = bucket_sizes(codes[:, :depth]) / n
        out[f"nn_same_depth_{depth}"] = float(same.mean())
        out[f"random_depth_{depth}"] = float((share**2).sum())
    return out


def training_summary(training_log: list[dict]) -> dict[str, Any]:
    """The last entry of a learned quantizer's training log (loss, per-level perplexity...)."""
    if not training_log:
        return {}
    if "epoch" not in training_log[-1]:  # per-level logs of rq-kmeans / dictionary
        return {"residual_mse": [r.get("residual_mse") for r in training_log]}
    last = training_log[-1]
    keep = ("epoch", "step", "loss", "recon_loss", "quantizer_loss", "perplexity", "dead_codes")
    return {k: last[k] for k in keep if k in last}


def diagnose(
    codes: np.ndarray,
    level_sizes: list[int] | None = None,
    X: np.ndarray | None = None,
    X_hat: np.ndarray | None = None,
    training_log: list[dict] | None = None,
    random_state: int = 0,
) -> dict[str, Any]:
    """All diagnostics of ``codes`` (n, levels) -- before any disambiguation column.

    ``X`` adds semantic coherence, ``X`` and ``X_hat`` the explained variance,
    ``training_log`` the final training state.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    if level_sizes is None:
        level_sizes = [int(codes[:, j].max()) + 1 for j in range(levels)]
    prefix = prefix_collisions(codes)
    full = prefix[-1]
    out: dict[str, Any] = {
        "n_items": int(n),
        "levels": int(levels),
        "level_sizes": [int(s) for s in level_sizes],
        "per_level": level_usage(codes, level_sizes),
        "prefix": prefix,
        "collisions": {
            "distinct_ids": full["distinct"],
            "unique_share": full["distinct"] / n,
            "colliding_items_share": full["shared_share"],
            "largest_bucket": full["largest_bucket"],
            "unreachable_without_disambiguation": full["unreachable"],
        },
    }
    if X is not None and X_hat is not None:
        out["reconstruction"] = {"explained_variance": explained_variance(X, X_hat)}
    if X is not None:
        out["coherence"] = semantic_coherence(X, codes, random_state=random_state)
    if training_log:
        out["training"] = training_summary(training_log)
    return out


def summary(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """A few headline numbers of :func:`diagnose`'s output (for manifests and tables)."""
    d = diagnostics
    out = {
        "n_items": d["n_items"],
        "distinct_ids": d["collisions"]["distinct_ids"],
        "colliding_items_share": round(d["collisions"]["colliding_items_share"], 4),
        "largest_bucket": d["collisions"]["largest_bucket"],
        "codes_used": [lv["codes_used"] for lv in d["per_level"]],
        "perplexity": [round(lv["perplexity"], 2) for lv in d["per_level"]],
    }
    if "reconstruction" in d:
        out["explained_variance"] = round(d["reconstruction"]["explained_variance"], 4)
    coh = d.get("coherence", {})
    if "nn_same_depth_1" in coh:
        out["nn_same_first_code"] = round(coh["nn_same_depth_1"], 4)
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_diagnostics(d: dict[str, Any]) -> str:
    """Markdown tables of a :func:`diagnose` dict (levels, prefixes, headline numbers)."""
    lines = [
        "| level | K | codes used | usage | perplexity | Gini |",
        "|---|---|---|---|---|---|",
    ]
    for lv in d.get("per_level", []):
        lines.append(
            f"| {lv['level']} | {lv['codebook_size']} | {lv['codes_used']} | "
            f"{_fmt(lv['usage'])} | {_fmt(lv['perplexity'], 1)} | {_fmt(lv['gini'])} |"
        )
    lines += [
        "",
        "| prefix depth | distinct | items sharing | largest bucket | unreachable |",
        "|---|---|---|---|---|",
    ]
    for p in d.get("prefix", []):
        lines.append(
            f"| {p['depth']} | {p['distinct']} | {_fmt(p['shared_share'])} | "
            f"{p['largest_bucket']} | {p['unreachable']} |"
        )
    facts = [("items", d.get("n_items"))]
    if "reconstruction" in d:
        facts.append(("explained variance", d["reconstruction"]["explained_variance"]))
    coh = d.get("coherence", {})
    for depth in (1, 2):
        if f"nn_same_depth_{depth}" in coh:
            facts.append(
                (
                    f"NN shares first {depth} code(s) (random rate)",
                    f"{coh[f'nn_same_depth_{depth}']:.3f} ({coh[f'random_depth_{depth}']:.3f})",
                )
            )
    train = d.get("training", {})
    if train:
        if "loss" in train:
            facts.append(("final training loss", train["loss"]))
        if "residual_mse" in train:
            mse = ", ".join(f"{v:.4f}" for v in train["residual_mse"] if v is not None)
            facts.append(("residual MSE after each level", mse))
        if "perplexity" in train:
            facts.append(("final training perplexity", ", ".join(map(str, train["perplexity"]))))
        if "dead_codes" in train:
            facts.append(("dead codes in last epoch", ", ".join(map(str, train["dead_codes"]))))
    lines += ["", "| fact | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value, 4)} |" for name, value in facts]
    return "\n".join(lines)
