"""Build every item-embedding space of the study, and read a built one back.

A built folder holds one float32 matrix per ID space (``item.npy``, or ``search.npy`` and
``rec.npy`` for ``separate``), ``meta.json`` (what trained it), the fine-tuned query encoder
in ``encoder/`` where there is one, and, for collaborative spaces, the user vectors
(``users.npy`` + ``users.json``) with the raw item vectors they score against
(``rec_items_raw.npy``). ``meta.json`` is written last: a folder without it is unfinished.

Only training data is used to fit anything: training queries (``split == "train"``) and the
``train`` lists of the sequences (never the valid / test items).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semid.data.dataset import Dataset, Splits
from semid.device import resolve_device
from semid.embeddings.config import EmbeddingConfig
from semid.embeddings.encoders import (
    encode_texts,
    load_sentence_encoder,
    resolve_encoder,
)
from semid.embeddings.fused import l2_normalize, pad_search, project_search
from semid.embeddings.spaces import SPACES, SpaceInputs
from semid.errors import ConfigError, DataError
from semid.io import read_json, write_json, write_npy

log = logging.getLogger(__name__)

META_FILE = "meta.json"
ENCODER_DIR = "encoder"


def item_texts(dataset: Dataset) -> list[str]:
    """The ``text`` column of the items, validated."""
    if "text" not in dataset.items.columns:
        raise DataError("items: missing column 'text' (what encoders embed)")
    texts = dataset.items["text"]
    if texts.null_count():
        raise DataError(f"items: {texts.null_count()} item(s) have no text")
    return texts.to_list()


def train_sequences(splits: Splits, n_items: int) -> list[list[int]]:
    """The chronological ``train`` list of every user (the only interactions used to fit)."""
    if "train" not in splits.sequences.columns:
        raise DataError("sequences: missing column 'train'")
    sequences = [list(s or []) for s in splits.sequences["train"].to_list()]
    flat = [i for s in sequences for i in s]
    if flat and (min(flat) < 0 or max(flat) >= n_items):
        raise DataError(f"sequences: train item index outside 0..{n_items - 1}")
    return sequences


def data_hash(texts: list[str], splits: Splits, sequences: list[list[int]]) -> str:
    """Hash of everything the embeddings are fitted on: item texts, train queries, histories."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\x00")
    train_q = splits.train_queries() if splits.queries.height else splits.queries
    if train_q.height:
        for query, item in zip(
            train_q["query"].to_list(), train_q["item_idx"].to_list(), strict=True
        ):
            digest.update(f"{query}\x01{item}\x00".encode())
    for seq in sequences:
        digest.update(np.asarray(seq, dtype=np.int64).tobytes() + b"\x02")
    return digest.hexdigest()[:16]


def rec_estimator(cfg: EmbeddingConfig, seed: int):
    """The collaborative model named by ``cfg.rec_model``, unfitted."""
    if cfg.rec_model == "enmf":
        from semid.embeddings.enmf import ENMF

        return ENMF(
            dim=cfg.rec_dim,
            epochs=cfg.rec_epochs,
            neg_weight=cfg.rec_neg_weight,
            lr=cfg.rec_lr,
            batch_size=cfg.rec_batch_size,
            dropout=cfg.rec_dropout,
            device=str(resolve_device(cfg.device, "embedding.device")),
            random_state=seed,
        )
    from semid.embeddings.als import ImplicitMF

    return ImplicitMF(
        model=cfg.rec_model,
        dim=cfg.rec_dim,
        epochs=cfg.rec_epochs,
        regularization=cfg.rec_regularization,
        alpha=cfg.rec_alpha,
        lr=cfg.rec_lr,
        random_state=seed,
    )


def build_embeddings(
    cfg: EmbeddingConfig,
    dataset: Dataset,
    splits: Splits,
    out_dir: Path,
    seed: int,
    components: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Build the item-embedding space ``cfg.space`` into ``out_dir``; returns a few facts.

    Parameters
    ----------
    cfg : EmbeddingConfig
        Space, encoder and training budgets.
    dataset : Dataset
        Items (their ``text`` is embedded).
    splits : Splits
        Training queries and training histories (the only data anything is fitted on).
    out_dir : Path
        Folder to write (created if needed).
    seed : int
        Seeds every random choice.
    components : dict, optional
        Already built ``search`` and/or ``rec`` space folders (same config, seed and data) that
        ``separate`` / ``fused-*`` reuse instead of training those parts again.

    Returns
    -------
    dict
        Dimensions, seconds, steps / epochs and final losses (loss curves are in meta.json).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = item_texts(dataset)
    n_items = len(texts)
    sequences = train_sequences(splits, n_items)
    space = cfg.space
    spec = SPACES.get(space)
    meta: dict[str, Any] = {
        "space": space,
        "encoder": cfg.encoder if spec.text_encoder != "none" else None,
        "seed": seed,
        "data_hash": data_hash(texts, splits, sequences),
        "n_items": n_items,
        "config": cfg.model_dump(mode="json"),
        "training": {},
    }
    components = components or {}
    if components:
        meta["components"] = {part: str(folder) for part, folder in components.items()}
    inputs = SpaceInputs(
        cfg, dataset, splits, texts, sequences, out_dir, seed, components, meta, {"space": space}
    )
    spaces = spec.build(inputs)
    if not spaces:
        raise ConfigError(f"embedding.space={space}: the space built no item matrix")
    facts, query = inputs.facts, inputs.query
    for name, matrix in spaces.items():
        if np.ndim(matrix) != 2 or len(matrix) != n_items:
            raise DataError(f"embedding.space={space}: {name!r} is not an ({n_items}, d) matrix")
        matrix = l2_normalize(matrix) if cfg.normalize else np.asarray(matrix, np.float32)
        spaces[name] = matrix
        write_npy(out_dir / f"{name}.npy", matrix)
    if inputs.users is not None:
        meta["users"] = _write_users(inputs.users, splits, out_dir)
    meta["query"] = query
    meta["spaces"] = {name: list(matrix.shape) for name, matrix in spaces.items()}
    meta["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out_dir / META_FILE, meta)
    facts.update(dims=meta["spaces"], seconds=meta["seconds"], data_hash=meta["data_hash"])
    return facts


def _write_users(users: tuple[Any, str], splits: Splits, out_dir: Path) -> dict[str, str]:
    """Write a rec model's user vectors, their user ids and its raw item vectors into the
    space's folder; returns their ``meta["users"]`` entry (``users``: the model and the ID
    space its user vectors score)."""
    rec, scores_space = users
    write_npy(out_dir / "users.npy", rec.user_embeddings_.astype(np.float32))
    write_npy(out_dir / "rec_items_raw.npy", rec.item_embeddings_.astype(np.float32))
    write_json(out_dir / "users.json", [int(u) for u in splits.sequences["user_id"]])
    return {
        "vectors": "users.npy",
        "ids": "users.json",
        "scores_space": scores_space,
        "raw_items": "rec_items_raw.npy",
    }


def reuse_search(folder: Path, out_dir: Path, meta: dict, query: dict) -> np.ndarray:
    """The item vectors and fine-tuned encoder of a built ``search`` space folder."""
    component = read_json(Path(folder) / META_FILE)
    if component.get("space") != "search":
        raise ConfigError(f"{folder}: not a search embedding folder")
    shutil.copytree(Path(folder) / ENCODER_DIR, out_dir / ENCODER_DIR)
    meta["encoder_path"] = component.get("encoder_path")
    meta["training"]["encoder"] = component["training"]["encoder"]
    query["encoder"] = {"kind": "saved", "path": ENCODER_DIR}
    return np.load(Path(folder) / "item.npy")


class ReusedRec:
    """The fitted-estimator attributes ``build_embeddings`` reads, from a built ``rec`` folder."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        component = read_json(folder / META_FILE)
        if component.get("space") != "rec":
            raise ConfigError(f"{folder}: not a rec embedding folder")
        info = component["training"]["rec"]
        self.item_embeddings_ = np.load(folder / "rec_items_raw.npy")
        self.user_embeddings_ = np.load(folder / "users.npy")
        self.epochs_ = info["epochs"]
        self.seconds_ = info["seconds"]
        self.n_items_without_interactions_ = info["items_without_train_interactions"]
        self.loss_curve_ = info["loss_curve"]


@dataclass
class EmbeddingArtifact:
    """A built embedding folder, read back.

    ``spaces`` maps ID-space names to item matrices: ``{"item": X}`` or, for ``separate``,
    ``{"search": Xs, "rec": Xr}``. ``encoder_path`` is the sentence-transformers folder that
    embeds queries (None for rec-only spaces). ``user_vectors`` / ``user_ids``: a
    collaborative model's user vectors (rows follow ``user_ids``), or None.
    """

    spaces: dict[str, np.ndarray]
    encoder_path: str | None
    user_vectors: np.ndarray | None
    user_ids: np.ndarray | None
    meta: dict
    folder: Path | None = None
    _model: Any = field(default=None, repr=False)
    _raw_items: np.ndarray | None = field(default=None, repr=False)

    def encode_queries(self, texts: list[str], batch_size: int = 128) -> np.ndarray | None:
        """Query vectors in the item space that serves search (None without a text encoder).

        For fused spaces the query goes through the same normalisation / SVD projection as
        the items' search half, with a zero rec half.
        """
        if self.encoder_path is None:
            return None
        if self._model is None:
            device = self.meta.get("config", {}).get("device", "cpu")
            device = resolve_device(device, "embedding.device")
            self._model = load_sentence_encoder(self.encoder_path, str(device))
        vectors = encode_texts(self._model, texts, batch_size, normalize=True, progress=False)
        transform = self.meta.get("query", {}).get("transform", "identity")
        if isinstance(transform, dict) and transform["kind"] == "concat":
            vectors = pad_search(vectors, int(transform["rec_dim"]))
        elif isinstance(transform, dict) and transform["kind"] == "svd":
            projection = None
            if transform.get("projection"):
                projection = np.load(self.folder / transform["projection"])
            vectors = project_search(vectors, projection)
        return l2_normalize(vectors) if self.meta["config"]["normalize"] else vectors

    def user_item_scores(self, user_ids: np.ndarray) -> np.ndarray | None:
        """The collaborative model's own scores (n_users, n_items) for ``user_ids``.

        Uses the raw (unnormalised) item vectors, so the ranking is exactly the model's, even
        when ``spaces`` holds L2-normalised ones. None when the space has no user vectors or
        a user is unknown.
        """
        if self.user_vectors is None or self._raw_items is None or self.user_ids is None:
            return None
        index = {int(u): row for row, u in enumerate(self.user_ids)}
        found = [index.get(int(u)) for u in user_ids]
        rows = [r for r in found if r is not None]
        if len(rows) < len(found):
            return None
        return self.user_vectors[rows] @ self._raw_items.T


def load_embeddings(folder: Path) -> EmbeddingArtifact:
    """Read a folder written by :func:`build_embeddings`."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise DataError(f"{folder}: not a finished embedding folder ({META_FILE} missing)")
    meta = read_json(folder / META_FILE)
    spaces = {name: np.load(folder / f"{name}.npy") for name in meta["spaces"]}
    encoder_path = None
    encoder = meta.get("query", {}).get("encoder")
    if encoder and encoder["kind"] == "saved":
        encoder_path = str(folder / encoder["path"])
    elif encoder and encoder["kind"] == "base":
        try:
            encoder_path = resolve_encoder(encoder["name"])
        except ConfigError:
            recorded = meta.get("encoder_path")
            if not recorded or not Path(recorded).is_dir():
                raise
            encoder_path = recorded
    users = meta.get("users")
    user_vectors = user_ids = raw = None
    if users:
        user_vectors = np.load(folder / users["vectors"])
        user_ids = np.asarray(read_json(folder / users["ids"]), dtype=np.int64)
        raw = np.load(folder / users["raw_items"])
    return EmbeddingArtifact(
        spaces=spaces,
        encoder_path=encoder_path,
        user_vectors=user_vectors,
        user_ids=user_ids,
        meta=meta,
        folder=folder,
        _raw_items=raw,
    )


def describe(folder: Path) -> pl.DataFrame:
    """One row per ID space of a built folder: name, items, dimension, mean norm."""
    artifact = load_embeddings(folder)
    rows = [
        {
            "space": name,
            "items": matrix.shape[0],
            "dim": matrix.shape[1],
            "mean_norm": float(np.linalg.norm(matrix, axis=1).mean()),
        }
        for name, matrix in artifact.spaces.items()
    ]
    return pl.DataFrame(rows)
