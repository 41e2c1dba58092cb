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
from semid.embeddings.config import EmbeddingConfig
from semid.embeddings.content import ContentEmbedder
from semid.embeddings.encoders import (
    encode_texts,
    load_sentence_encoder,
    resolve_device,
    resolve_encoder,
)
from semid.embeddings.fused import FusedSVD, fuse_concat, l2_normalize, pad_search, project_search
from semid.embeddings.multitask import cooccurrence_pairs, item_pair_set
from semid.embeddings.search import ContrastiveTuner, search_pairs
from semid.errors import ConfigError, DataError
from semid.io import read_json, write_json, write_npy

log = logging.getLogger(__name__)

TEXT_SPACES = ("content", "search", "separate", "fused-concat", "fused-svd", "multitask")
TUNED_SPACES = ("search", "separate", "fused-concat", "fused-svd")
REC_SPACES = ("rec", "separate", "fused-concat", "fused-svd")
USER_SPACES = {"rec": "item", "separate": "rec"}  # spaces whose user vectors score an ID space
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


def _tuner(cfg: EmbeddingConfig, seed: int) -> ContrastiveTuner:
    return ContrastiveTuner(
        encoder=cfg.encoder,
        epochs=cfg.tune_epochs,
        max_steps=cfg.tune_max_steps,
        batch_size=cfg.tune_batch_size,
        lr=cfg.tune_lr,
        warmup_ratio=cfg.tune_warmup_ratio,
        max_seq_length=cfg.tune_max_seq_length,
        scale=cfg.tune_scale,
        device=cfg.device,
        random_state=seed,
    )


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
            device=str(resolve_device(cfg.device)),
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
    meta: dict[str, Any] = {
        "space": space,
        "encoder": cfg.encoder if space != "rec" else None,
        "seed": seed,
        "data_hash": data_hash(texts, splits, sequences),
        "n_items": n_items,
        "config": cfg.model_dump(mode="json"),
        "training": {},
    }
    facts: dict[str, Any] = {"space": space}
    spaces: dict[str, np.ndarray] = {}
    query: dict[str, Any] = {"encoder": None, "transform": "identity"}

    if space == "content":
        embedder = ContentEmbedder(cfg.encoder, cfg.batch_size, cfg.normalize, cfg.device).fit(
            texts
        )
        spaces["item"] = embedder.embeddings_
        meta["encoder_path"] = embedder.encoder_path_
        query["encoder"] = {"kind": "base", "name": cfg.encoder}

    components = components or {}
    if components:
        meta["components"] = {part: str(folder) for part, folder in components.items()}
    search_vectors = None
    if space in TUNED_SPACES and "search" in components:
        search_vectors = _reuse_search(components["search"], out_dir, meta, query)
        facts["reused_search"] = str(components["search"])
    elif space in TUNED_SPACES or space == "multitask":
        pair_sets = [search_pairs(splits, texts)]
        if space == "multitask":
            pairs = cooccurrence_pairs(sequences, cfg.cooc_window)
            if len(pairs) == 0:
                raise DataError("multitask: the training histories hold no co-occurring items")
            pair_sets.append(item_pair_set(pairs, texts, cfg.rec_loss_weight))
        tuner = _tuner(cfg, seed).fit(pair_sets)
        search_vectors = tuner.transform(texts, cfg.batch_size, normalize=cfg.normalize)
        tuner.save(out_dir / ENCODER_DIR)
        meta["encoder_path"] = tuner.encoder_path_
        query["encoder"] = {"kind": "saved", "path": ENCODER_DIR}
        last = tuner.loss_curve_[-1]
        meta["training"]["encoder"] = {
            "pairs": {p.name: p.info for p in pair_sets},
            "steps": tuner.steps_,
            "epochs": tuner.epochs_,
            "seconds": round(tuner.seconds_, 2),
            "loss_curve": tuner.loss_curve_,
        }
        facts.update(
            tune_steps=tuner.steps_,
            tune_epochs=tuner.epochs_,
            tune_final_loss={k: v for k, v in last.items() if k != "step"},
        )

    rec = None
    if space in REC_SPACES and space != "rec" and "rec" in components:
        rec = _ReusedRec(components["rec"])
        facts["reused_rec"] = str(components["rec"])
    elif space in REC_SPACES:
        rec = rec_estimator(cfg, seed).fit(sequences, n_items)
    if rec is not None:
        meta["training"]["rec"] = {
            "model": cfg.rec_model,
            "epochs": rec.epochs_,
            "seconds": round(rec.seconds_, 2),
            "items_without_train_interactions": rec.n_items_without_interactions_,
            "loss_curve": rec.loss_curve_,
        }
        facts.update(
            rec_model=cfg.rec_model,
            rec_epochs=rec.epochs_,
            rec_final_loss=rec.loss_curve_[-1] if rec.loss_curve_ else None,
            items_without_train_interactions=rec.n_items_without_interactions_,
        )

    if space in ("search", "multitask"):
        spaces["item"] = search_vectors
    elif space == "rec":
        spaces["item"] = rec.item_embeddings_
    elif space == "separate":
        spaces["search"] = search_vectors
        spaces["rec"] = rec.item_embeddings_
    elif space == "fused-concat":
        spaces["item"] = fuse_concat(search_vectors, rec.item_embeddings_)
        query["transform"] = {"kind": "concat", "rec_dim": int(rec.item_embeddings_.shape[1])}
    elif space == "fused-svd":
        fused = FusedSVD(random_state=seed).fit(search_vectors, rec.item_embeddings_)
        spaces["item"] = fused.embeddings_
        projection = fused.query_projection_
        if projection is not None:
            write_npy(out_dir / "query_projection.npy", projection)
        query["transform"] = {
            "kind": "svd",
            "reduced": fused.reduced_,
            "projection": "query_projection.npy" if projection is not None else None,
        }
    if not spaces:
        raise ConfigError(f"embedding.space={space}: unknown space")

    for name, matrix in spaces.items():
        matrix = l2_normalize(matrix) if cfg.normalize else np.asarray(matrix, np.float32)
        spaces[name] = matrix
        write_npy(out_dir / f"{name}.npy", matrix)
    if space in USER_SPACES:
        write_npy(out_dir / "users.npy", rec.user_embeddings_.astype(np.float32))
        write_npy(out_dir / "rec_items_raw.npy", rec.item_embeddings_.astype(np.float32))
        write_json(out_dir / "users.json", [int(u) for u in splits.sequences["user_id"]])
        meta["users"] = {
            "vectors": "users.npy",
            "ids": "users.json",
            "scores_space": USER_SPACES[space],
            "raw_items": "rec_items_raw.npy",
        }
    meta["query"] = query
    meta["spaces"] = {name: list(matrix.shape) for name, matrix in spaces.items()}
    meta["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out_dir / META_FILE, meta)
    facts.update(dims=meta["spaces"], seconds=meta["seconds"], data_hash=meta["data_hash"])
    return facts


def _reuse_search(folder: Path, out_dir: Path, meta: dict, query: dict) -> np.ndarray:
    """The item vectors and fine-tuned encoder of a built ``search`` space folder."""
    component = read_json(Path(folder) / META_FILE)
    if component.get("space") != "search":
        raise ConfigError(f"{folder}: not a search embedding folder")
    shutil.copytree(Path(folder) / ENCODER_DIR, out_dir / ENCODER_DIR)
    meta["encoder_path"] = component.get("encoder_path")
    meta["training"]["encoder"] = component["training"]["encoder"]
    query["encoder"] = {"kind": "saved", "path": ENCODER_DIR}
    return np.load(Path(folder) / "item.npy")


class _ReusedRec:
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
            device = resolve_device(self.meta.get("config", {}).get("device", "cpu"))
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
        if self.user_vectors is None or self._raw_items is None:
            return None
        index = {int(u): row for row, u in enumerate(self.user_ids)}
        rows = [index.get(int(u)) for u in user_ids]
        if any(r is None for r in rows):
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
