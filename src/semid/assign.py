"""New items without retraining: ``semid ids assign RUN_DIR NEW_ITEMS.csv``.

Each new item is embedded with the run's sentence encoder, encoded by the run's fitted quantizer
into a code prefix, and given the next free disambiguation token of its collision group. The
model folder is rewritten (codes, item table, ID table) in one atomic swap; the new items are in
the prefix trie as soon as the folder is loaded again, so constrained decoding can produce them
although the generator never saw them in training.

An item cannot be assigned when its collision group already holds as many items as the
disambiguation level has tokens (a larger index would need a token the model's vocabulary does
not have), or, in ID spaces without a disambiguation level, when its code is already taken.
Such items are listed with the reason and left out; the others are assigned.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semid.errors import ConfigError, DataError
from semid.io import atomic_dir, atomic_path, read_json, write_json, write_npy, write_parquet

ASSIGN_LOG = "assigned_items.json"
ID_TABLE = "id_table.csv"

# Embeds item texts for each ID space: {space: (n, dim) float32}.
Embedder = Callable[[list[str]], Mapping[str, np.ndarray]]


# --------------------------------------------------------------------------- reading new items


def _split_list(value: str | None) -> list[str]:
    if value is None:
        return []
    return [part.strip() for part in str(value).split("|") if part.strip()]


def read_new_items(path: str | Path, max_tags: int | None = None) -> pl.DataFrame:
    """Read a new-items CSV into the items schema (without ``item_idx``).

    Columns, as in the documented items table: ``item_id`` (int, required; ``movieId`` is
    accepted), ``title`` (required), optional ``year`` (int), ``genres`` and ``tags``
    (``|``-separated), ``category``, ``description`` and ``text``. The text the encoder embeds
    is ``text`` when given, else composed like the data loader composes it
    (``"Title (year). Genres: a, b. Tags: x, y"``); tags are lower-cased and the first
    ``max_tags`` kept, as in the loader.
    """
    from semid.data.importer import compose_text

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw = pl.read_csv(path, infer_schema_length=0)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({type(exc).__name__})") from None
    if "item_id" not in raw.columns and "movieId" in raw.columns:
        raw = raw.rename({"movieId": "item_id"})
    missing = [c for c in ("item_id", "title") if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (have {raw.columns})")
    if raw.height == 0:
        raise DataError(f"{path}: no rows")
    item_ids = raw["item_id"].str.strip_chars().cast(pl.Int64, strict=False)
    bad = raw.filter(item_ids.is_null())["item_id"].to_list()
    if bad:
        raise DataError(f"{path}: item_id must be an integer, got {bad[:5]}")
    dupes = item_ids.filter(item_ids.is_duplicated()).unique().sort().to_list()
    if dupes:
        raise DataError(f"{path}: duplicate item_id(s) {dupes[:10]}")
    titles = raw["title"].fill_null("").str.strip_chars()
    empty = item_ids.filter(titles == "").to_list()
    if empty:
        raise DataError(f"{path}: empty title for item_id(s) {empty[:10]}")
    years = pl.Series("year", [None] * raw.height, dtype=pl.Int32)
    if "year" in raw.columns:
        text_years = raw["year"].str.strip_chars().replace("", None)
        years = text_years.cast(pl.Int32, strict=False).alias("year")
        bad = item_ids.filter(text_years.is_not_null() & years.is_null()).to_list()
        if bad:
            raise DataError(f"{path}: year must be an integer (item_id(s) {bad[:5]})")

    def lists(name: str, lower: bool = False) -> list[list[str]]:
        if name not in raw.columns:
            return [[] for _ in range(raw.height)]
        out = []
        for value in raw[name]:
            parts = _split_list(value.lower() if lower and value else value)
            out.append(list(dict.fromkeys(parts)))
        return out

    def text(name: str) -> pl.Series:
        if name not in raw.columns:
            return pl.Series(name, [None] * raw.height, dtype=pl.String)
        return raw[name].str.strip_chars().replace("", None).alias(name)

    tags = lists("tags", lower=True)
    if max_tags is not None:
        tags = [t[:max_tags] for t in tags]
    frame = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": titles,
            "year": years,
            "genres": lists("genres"),
            "tags": tags,
            "category": text("category"),
            "description": text("description"),
            "text": text("text"),
        },
        schema_overrides={"genres": pl.List(pl.String), "tags": pl.List(pl.String)},
    )
    frame = frame.with_columns(pl.coalesce(pl.col("text"), compose_text()).alias("text"))
    return frame.select("item_id", "title", "year", "genres", "tags", "text")


# --------------------------------------------------------------------------- codes


@dataclass
class SpaceAssignment:
    """New codes of one ID space: ``codes`` rows are valid where ``ok`` is True."""

    codes: np.ndarray
    ok: np.ndarray
    reasons: list[str | None]


def assign_codes(
    existing: np.ndarray, prefixes: np.ndarray, cardinalities: Sequence[int]
) -> SpaceAssignment:
    """Full codes for new items from their quantizer codes.

    Parameters
    ----------
    existing : ndarray of shape (n_items, n_cols)
        Codes of the catalogue's items in this ID space.
    prefixes : ndarray of shape (n_new, n_levels)
        Quantizer codes of the new items: ``n_levels == n_cols - 1`` when the space has a
        disambiguation level (the last column), ``n_levels == n_cols`` when it has none.
    cardinalities : sequence of int
        Tokens per column in the model's vocabulary.

    Returns
    -------
    SpaceAssignment
        With a disambiguation level, each new item continues its collision group after the
        group's largest index (:func:`semid.quantizers.assign_ids`, so existing IDs never
        change); it is refused when that index has no token in the vocabulary (the level has as
        many tokens as the largest group had at training time). Without one, an item whose code
        is already taken is refused (it would be unreachable).
    """
    from semid.quantizers import assign_ids

    existing = np.asarray(existing, dtype=np.int64)
    prefixes = np.asarray(prefixes, dtype=np.int64)
    n_cols = existing.shape[1]
    cards = np.asarray(cardinalities, dtype=np.int64)
    if len(cards) != n_cols:
        raise ConfigError(f"assign: {len(cards)} cardinalities for {n_cols} code columns")
    if prefixes.ndim != 2 or prefixes.shape[1] not in (n_cols - 1, n_cols):
        raise ConfigError(
            f"assign: the quantizer emits {prefixes.shape[-1]} codes per item but the model's "
            f"IDs have {n_cols} columns"
        )
    disambiguate = prefixes.shape[1] == n_cols - 1
    width = prefixes.shape[1]
    in_vocab = np.asarray(((prefixes >= 0) & (prefixes < cards[:width])).all(axis=1))
    if disambiguate:
        codes = assign_ids(prefixes, True, existing)
        ok = in_vocab & (codes[:, -1] < cards[-1])
    else:
        codes = prefixes.copy()
        taken = {tuple(row) for row in existing.tolist()}
        ok = in_vocab.copy()
        for i, row in enumerate(codes.tolist()):
            if ok[i] and tuple(row) in taken:
                ok[i] = False
            taken.add(tuple(row))
    reasons: list[str | None] = []
    for i in range(len(codes)):
        if ok[i]:
            reasons.append(None)
        elif not in_vocab[i]:
            reasons.append("a code is outside the model's vocabulary")
        elif disambiguate:
            reasons.append(
                f"collision group full: its prefix already has {int(cards[-1])} items and the "
                f"disambiguation level has {int(cards[-1])} tokens (refit the IDs to grow it)"
            )
        else:
            reasons.append("its code is already taken and the ID space has no disambiguation level")
    return SpaceAssignment(codes, ok, reasons)


# --------------------------------------------------------------------------- the model folder


@dataclass
class Assignment:
    """What :func:`assign_items` did."""

    assigned: pl.DataFrame  # item_id, title, one ID string per space
    rejected: pl.DataFrame  # item_id, title, reason
    folder: Path


def _model_folder(path: str | Path) -> Path:
    folder = Path(path)
    if (folder / "model").is_dir():
        folder = folder / "model"
    if not (folder / "items.parquet").exists():
        raise ConfigError(f"{path}: no trained model folder (model/items.parquet missing)")
    return folder


def assign_items(
    model_dir: str | Path,
    new_items: pl.DataFrame,
    embed: Embedder,
    quantizers: Mapping[str, Any],
    out_dir: str | Path | None = None,
) -> Assignment:
    """Give IDs to ``new_items`` and write the updated model folder.

    Parameters
    ----------
    model_dir : path
        A run directory or its ``model/`` folder.
    new_items : polars.DataFrame
        Rows as returned by :func:`read_new_items` (``item_id``, ``title``, ``text``, ...).
    embed : callable
        ``embed(texts) -> {space: (n, dim) array}`` for every ID space of the model.
    quantizers : mapping of str to quantizer
        The fitted quantizer of each ID space (``.encode(X) -> (n, n_levels)`` codes).
    out_dir : path, optional
        Where to write the updated model folder (default: replace ``model_dir`` in place).

    Returns
    -------
    Assignment
        Assigned items with their IDs, rejected items with the reason, the written folder.
    """
    from semid.generative.vocab import SemanticVocab

    folder = _model_folder(model_dir)
    items = pl.read_parquet(folder / "items.parquet")
    spaces = list(read_json(folder / "input_encoder.json")["spaces"])
    vocab = SemanticVocab.load(folder)
    codes = {name: np.load(folder / f"codes_{name}.npy") for name in spaces}
    _check_new_items(items, new_items, spaces, quantizers)

    vectors = embed(new_items["text"].to_list())
    per_space: dict[str, SpaceAssignment] = {}
    for name in spaces:
        if name not in vectors:
            raise ConfigError(f"assign: the embedder returned no vectors for space {name!r}")
        prefixes = np.asarray(quantizers[name].encode(np.asarray(vectors[name])))
        per_space[name] = assign_codes(codes[name], prefixes, vocab.spaces[name].cardinalities)
    ok = np.logical_and.reduce([a.ok for a in per_space.values()])
    accepted = new_items.filter(pl.Series(ok))
    start = items.height
    additions = accepted.with_columns(
        pl.Series("item_idx", np.arange(start, start + accepted.height), dtype=pl.Int32)
    )
    merged = pl.concat([items, additions], how="diagonal_relaxed").select(items.columns)
    merged = merged.cast(items.schema)
    new_codes = {name: np.vstack([codes[name], a.codes[ok]]) for name, a in per_space.items()}
    target = Path(out_dir) if out_dir is not None else folder
    rejected_ids = new_items.filter(~pl.Series(ok))["item_id"].to_list()
    table = id_table(merged, new_codes)
    _write_model(
        folder, target, merged, new_codes, table, accepted["item_id"].to_list(), rejected_ids
    )
    run_table = folder.parent / ID_TABLE
    if out_dir is None and folder.name == "model" and run_table.exists():
        _write_csv(run_table, table)  # keep the run's ID table in step with its model
    assigned = pl.DataFrame(
        {"item_id": accepted["item_id"], "title": accepted["title"]}
        | {
            name: [vocab.id_string(name, row.tolist()) for row in per_space[name].codes[ok]]
            for name in spaces
        }
    )
    return Assignment(assigned, _rejected(new_items, per_space, ok), target)


def _check_new_items(
    items: pl.DataFrame, new_items: pl.DataFrame, spaces: list[str], quantizers: Mapping[str, Any]
) -> None:
    """Raise unless the new items have the columns, new ids, and every space a quantizer."""
    absent = [c for c in ("item_id", "title", "text") if c not in new_items.columns]
    if absent:
        raise DataError(f"new items: missing column(s) {absent}")
    known = set(items["item_id"].to_list())
    clash = sorted(i for i in new_items["item_id"].to_list() if i in known)
    if clash:
        raise DataError(f"new items: item_id(s) already in the catalogue: {clash[:10]}")
    missing = [s for s in spaces if s not in quantizers]
    if missing:
        raise ConfigError(f"assign: no fitted quantizer for ID space(s) {missing}")


def _write_model(
    folder: Path,
    target: Path,
    merged: pl.DataFrame,
    codes: Mapping[str, np.ndarray],
    table: pl.DataFrame,
    assigned: list[int],
    rejected: list[int],
) -> None:
    """The updated model folder at ``target``: a copy of ``folder`` with the new items."""
    history = read_json(folder / ASSIGN_LOG) if (folder / ASSIGN_LOG).exists() else []
    with atomic_dir(target) as tmp:
        for path in folder.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        for name, space_codes in codes.items():
            write_npy(tmp / f"codes_{name}.npy", space_codes)
        write_parquet(tmp / "items.parquet", merged)
        _write_csv(tmp / ID_TABLE, table)
        history.append(
            {
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "assigned": assigned,
                "rejected": rejected,
            }
        )
        write_json(tmp / ASSIGN_LOG, history)


def _rejected(
    new_items: pl.DataFrame, per_space: Mapping[str, SpaceAssignment], ok: np.ndarray
) -> pl.DataFrame:
    """``item_id``, ``title`` and the reasons (per space) of the items given no ID."""
    reasons = [
        "; ".join(f"{name}: {a.reasons[i]}" for name, a in per_space.items() if a.reasons[i])
        for i in range(new_items.height)
    ]
    return pl.DataFrame(
        {
            "item_id": new_items["item_id"].filter(~pl.Series(ok)),
            "title": new_items["title"].filter(~pl.Series(ok)),
            "reason": [r for r, good in zip(reasons, ok, strict=True) if not good],
        },
        schema={"item_id": pl.Int64, "title": pl.String, "reason": pl.String},
    )


def id_table(items: pl.DataFrame, codes: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """item_id, title and the readable ID (``semantic_id``, or ``semantic_id_<space>``)."""
    from semid.quantizers import semantic_id_strings

    columns: dict[str, Any] = {"item_id": items["item_id"], "title": items["title"]}
    for name, space_codes in codes.items():
        column = "semantic_id" if len(codes) == 1 else f"semantic_id_{name}"
        columns[column] = semantic_id_strings(space_codes)
    return pl.DataFrame(columns)


def _write_csv(path: Path, frame: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)


# --------------------------------------------------------------------------- from a run


def run_embedder(embeddings_dir: Path, spaces: Sequence[str]) -> Embedder:
    """Embed item texts with the run's sentence encoder, for every ID space of the model.

    Only spaces built from text can embed new items: a space learnt from interactions (``rec``)
    has no vector for an item nobody has interacted with.
    """
    from semid.embeddings import load_embeddings

    artifact = load_embeddings(embeddings_dir)
    for name in spaces:
        if name == "rec":
            raise ConfigError(
                "assign: the 'rec' ID space is learnt from interactions, so items without "
                "interactions cannot be embedded in it; new items need a text-based space "
                "(embedding.space=content, search, fused-* or multitask)"
            )

    def embed(texts: list[str]) -> dict[str, np.ndarray]:
        encode = getattr(artifact, "encode_items", None) or artifact.encode_queries
        vectors = encode(texts)
        if vectors is None:
            raise ConfigError(
                "assign: this run's embedding space has no text encoder (rec-only), so new "
                "items cannot be embedded; use a run with a text-based space"
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        out = {}
        for name in spaces:
            dim = np.asarray(artifact.spaces[name]).shape[1]
            if vectors.shape[1] != dim:
                raise ConfigError(
                    f"assign: the encoder gives {vectors.shape[1]}-d vectors but ID space "
                    f"{name!r} is {dim}-d (it mixes in interaction features), so new items "
                    "cannot be embedded in it"
                )
            out[name] = vectors
        return out

    return embed


def assign_from_run(
    run_dir: str | Path, new_items: str | Path | pl.DataFrame, out_dir: str | Path | None = None
) -> Assignment:
    """:func:`assign_items` with the encoder and quantizers recorded in a run directory."""
    from semid.pipeline import load_state
    from semid.quantizers import load_quantizer

    cfg, stages = load_state(Path(run_dir))
    for stage in ("embeddings", "ids"):
        if stage not in stages or not Path(stages[stage]).is_dir():
            raise ConfigError(f"{run_dir}: the {stage} stage folder is missing (rerun `semid run`)")
    folder = _model_folder(run_dir)
    spaces = list(read_json(folder / "input_encoder.json")["spaces"])
    if isinstance(new_items, pl.DataFrame):
        frame = new_items
    else:
        frame = read_new_items(new_items, cfg.data.max_tags)
    embed = run_embedder(Path(stages["embeddings"]), spaces)
    quantizers = {name: load_quantizer(Path(stages["ids"]) / name) for name in spaces}
    return assign_items(folder, frame, embed, quantizers, out_dir)
