"""Semantic IDs: collision handling, the ids stage's artifacts, and loading them back.

An ID space folder (one per embedding space, e.g. ``item/`` or ``search/`` + ``rec/``) holds:

``codes.npy``          int64 (n_items, n_cols): the IDs, disambiguation column included
``space.json``         cardinality of every column, levels, codebook size, quantizer and params
``quantizer.pkl``      the fitted quantizer (``load_quantizer``) to encode new items later
``diagnostics.json``   :func:`semid.quantizers.diagnostics.diagnose` of the codes
``training_log.json``  the quantizer's ``training_log_``
``id_table.csv``       item_id, title, semantic_id (``<a_12><b_201><c_7><d_0>``)
``*.png``              code usage per level, bucket sizes, training curves
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semid.errors import DataError
from semid.io import atomic_path, read_json, write_json, write_npy
from semid.quantizers.base import Quantizer, check_embeddings, level_sizes
from semid.quantizers.config import QuantizerConfig
from semid.quantizers.diagnostics import diagnose, summary


@dataclass
class SemanticIdSpace:
    """The IDs of one space: ``codes[i]`` is item ``i``'s ID, one token per column."""

    name: str
    codes: np.ndarray
    cardinalities: list[int]
    levels: int
    disambiguation: bool


def assign_ids(
    codes: np.ndarray, disambiguation: bool, existing: np.ndarray | None = None
) -> np.ndarray:
    """Turn quantizer codes (n, levels) into IDs.

    With ``disambiguation`` one column is appended: the index of the item inside its collision
    group (items with the same code tuple), in item order, 0 for unique items (as in TIGER).
    ``existing`` (m, levels + 1) are IDs already handed out: new items then continue each group
    after its largest existing index, so old IDs never change. Without disambiguation the codes
    are returned as-is (colliding items share an ID).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise DataError(f"codes: expected a 2-D array (n_items, levels), got shape {codes.shape}")
    codes = codes.astype(np.int64, copy=False)
    if not disambiguation:
        return codes.copy()
    n, levels = codes.shape
    if existing is not None and len(existing):
        existing = np.asarray(existing, dtype=np.int64)
        if existing.ndim != 2 or existing.shape[1] != levels + 1:
            raise DataError(f"existing: expected shape (m, {levels + 1}), got {existing.shape}")
        both = np.concatenate([existing[:, :levels], codes])
    else:
        existing = np.zeros((0, levels + 1), dtype=np.int64)
        both = codes
    if both.shape[0] == 0:
        return np.zeros((0, levels + 1), dtype=np.int64)
    _, group = np.unique(both, axis=0, return_inverse=True)
    group = group.reshape(-1)
    old_group, new_group = group[: len(existing)], group[len(existing) :]
    start = np.zeros(group.max() + 1, dtype=np.int64)
    if len(existing):
        np.maximum.at(start, old_group, existing[:, levels] + 1)
    order = np.argsort(new_group, kind="stable")
    sorted_groups = new_group[order]
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return np.column_stack([codes, start[new_group] + rank])


def semantic_id_strings(ids: np.ndarray) -> list[str]:
    """Readable IDs: column ``j`` becomes ``<{letter j}_{code}>``, e.g. ``<a_12><b_201><c_0>``."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(f"<{letters[j]}_{c}>" for j, c in enumerate(row)) for row in ids.tolist()]


def build_ids(
    cfg: QuantizerConfig,
    spaces: dict[str, np.ndarray],
    out_dir: Path,
    random_state: int,
    item_titles: list[str] | None = None,
    item_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit a quantizer per embedding space, assign IDs, write artifacts; return manifest facts."""
    from semid.quantizers import make_quantizer
    from semid.quantizers.plots import write_plots

    out_dir = Path(out_dir)
    facts: dict[str, Any] = {}
    for name, X in spaces.items():
        X = check_embeddings(X, f"embedding space {name!r}")
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        quantizer = make_quantizer(cfg, random_state)
        start = time.perf_counter()
        codes = quantizer.fit_encode(X)
        fit_seconds = time.perf_counter() - start
        codes = np.asarray(codes, dtype=np.int64)
        sizes = level_sizes(quantizer)
        diag = diagnose(
            codes,
            sizes,
            X=X,
            X_hat=quantizer.decode(codes),
            training_log=quantizer.training_log_,
            random_state=random_state,
        )
        ids = assign_ids(codes, cfg.disambiguation)
        cardinalities = list(sizes)
        if cfg.disambiguation:
            cardinalities.append(int(ids[:, -1].max()) + 1)
        write_npy(folder / "codes.npy", ids)
        write_json(
            folder / "space.json",
            {
                "name": name,
                "n_items": int(ids.shape[0]),
                "levels": cfg.levels,
                "codebook_size": cfg.codebook_size,
                "level_sizes": sizes,
                "cardinalities": cardinalities,
                "disambiguation": cfg.disambiguation,
                "quantizer": cfg.name,
                "params": cfg.model_dump(mode="json"),
                "random_state": random_state,
                "fit_seconds": round(fit_seconds, 3),
            },
        )
        save_quantizer(quantizer, folder / "quantizer.pkl")
        write_json(folder / "diagnostics.json", diag)
        write_json(folder / "training_log.json", quantizer.training_log_)
        write_id_table(folder / "id_table.csv", ids, item_titles, item_ids)
        write_plots(folder, codes, sizes, quantizer.training_log_)
        facts[name] = {
            **summary(diag),
            "cardinalities": cardinalities,
            "fit_seconds": round(fit_seconds, 2),
        }
    return facts


def write_id_table(
    path: Path, ids: np.ndarray, titles: list[str] | None, item_ids: np.ndarray | None
) -> None:
    """CSV of item_id, title, semantic_id for people to read."""
    n = ids.shape[0]
    frame = pl.DataFrame(
        {
            "item_id": np.arange(n) if item_ids is None else np.asarray(item_ids),
            "title": [""] * n if titles is None else list(titles),
            "semantic_id": semantic_id_strings(ids),
        }
    )
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)


def save_quantizer(quantizer: Quantizer, path: Path) -> None:
    """Pickle a fitted quantizer atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(quantizer, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_quantizer(folder: Path) -> Quantizer:
    """The fitted quantizer of an ID space folder (to encode new items without refitting)."""
    path = Path(folder) / "quantizer.pkl"
    if not path.is_file():
        raise DataError(f"{folder}: no quantizer.pkl (not an ID space folder?)")
    with open(path, "rb") as fh:
        return pickle.load(fh)


def space_folders(folder: Path) -> list[Path]:
    """ID space folders under ``folder`` (or ``folder`` itself if it is one)."""
    folder = Path(folder)
    if (folder / "space.json").is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob("*/space.json"))


def load_ids(folder: Path) -> dict[str, SemanticIdSpace]:
    """Every ID space written by :func:`build_ids` under ``folder``, by name."""
    folders = space_folders(folder)
    if not folders:
        raise DataError(f"{folder}: no ID spaces found (expected <space>/space.json)")
    out = {}
    for sub in folders:
        meta = read_json(sub / "space.json")
        codes = np.load(sub / "codes.npy")
        out[meta["name"]] = SemanticIdSpace(
            name=meta["name"],
            codes=codes.astype(np.int64, copy=False),
            cardinalities=[int(c) for c in meta["cardinalities"]],
            levels=int(meta["levels"]),
            disambiguation=bool(meta["disambiguation"]),
        )
    return out
