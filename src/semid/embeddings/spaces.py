"""The embedding-space registry: ``embedding.space`` -> how its item matrices are built.

An :class:`EmbeddingSpace` is a ``build(inputs) -> {id_space: matrix}`` function plus what the
pipeline must know before building it: which other spaces it is assembled from (built first as
stages of their own, so a grid that also has those cells trains them once) and where its query
encoder comes from. :func:`semid.embeddings.build.build_embeddings` does the rest (validation,
normalisation, ``meta.json``).

Add a space in-tree: a builder function and one ``SPACES.register`` line below; outside the
package: ``register_embedding_space`` in a plugin module or an entry point in the
``semid.embedding_spaces`` group (``examples/custom_embedding_space.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from semid.errors import DataError
from semid.registry import Registry

if TYPE_CHECKING:
    from semid.data.dataset import Dataset, Splits
    from semid.embeddings.config import EmbeddingConfig
    from semid.embeddings.search import PairSet


@dataclass
class SpaceInputs:
    """What a space builder reads, and the records it fills in.

    ``texts`` are the item texts, ``sequences`` the training histories (item indices);
    ``components`` maps the names in :attr:`EmbeddingSpace.components` to their built folders.
    A builder may add to ``meta`` (``encoder_path``, ``training``) and ``facts``, set
    ``query`` (how queries are encoded: ``encoder`` and ``transform``) and ``users`` (a fitted
    collaborative model whose user vectors score the ID space it names).
    """

    cfg: EmbeddingConfig
    dataset: Dataset
    splits: Splits
    texts: list[str]
    sequences: list[list[int]]
    out_dir: Path
    seed: int
    components: dict[str, Path]
    meta: dict[str, Any]
    facts: dict[str, Any]
    query: dict[str, Any] = field(
        default_factory=lambda: {"encoder": None, "transform": "identity"}
    )
    users: tuple[Any, str] | None = None


SpaceBuilder = Callable[[SpaceInputs], dict[str, np.ndarray]]


@dataclass(frozen=True)
class EmbeddingSpace:
    """A registered embedding space.

    ``components``: spaces built first (as stages ``embeddings/<name>``) and handed to
    ``build`` in :attr:`SpaceInputs.components`. ``text_encoder``: ``named`` (queries go
    through ``embedding.encoder`` as shipped), ``tuned`` (a fine-tuned encoder saved with the
    space) or ``none`` (no text encoder: text models read with minilm). ``seeded``: whether the
    run seed changes the space (False: every seed shares one stage folder).
    ``needs_interactions``: whether it is learnt from the training histories (a search-only
    run, ``tasks=[search]``, has none and refuses such a space).
    """

    build: SpaceBuilder
    components: tuple[str, ...] = ()
    text_encoder: Literal["named", "tuned", "none"] = "tuned"
    seeded: bool = True
    needs_interactions: bool = False


SPACES: Registry[EmbeddingSpace] = Registry(
    "embedding space", "embedding.space", "semid.embedding_spaces"
)
register_embedding_space = SPACES.register


# --- the parts the in-tree spaces are made of -----------------------------------------------


def tune_encoder(inputs: SpaceInputs, pair_sets: list[PairSet]) -> np.ndarray:
    """Fine-tune the sentence encoder on ``pair_sets``, save it; the items' vectors."""
    from semid.embeddings.build import ENCODER_DIR
    from semid.embeddings.search import ContrastiveTuner

    cfg = inputs.cfg
    tuner = ContrastiveTuner(
        encoder=cfg.encoder,
        epochs=cfg.tune_epochs,
        max_steps=cfg.tune_max_steps,
        batch_size=cfg.tune_batch_size,
        lr=cfg.tune_lr,
        warmup_ratio=cfg.tune_warmup_ratio,
        max_seq_length=cfg.tune_max_seq_length,
        scale=cfg.tune_scale,
        device=cfg.device,
        random_state=inputs.seed,
    ).fit(pair_sets)
    vectors = tuner.transform(inputs.texts, cfg.batch_size, normalize=cfg.normalize)
    tuner.save(inputs.out_dir / ENCODER_DIR)
    inputs.meta["encoder_path"] = tuner.encoder_path_
    inputs.query["encoder"] = {"kind": "saved", "path": ENCODER_DIR}
    inputs.meta["training"]["encoder"] = {
        "pairs": {p.name: p.info for p in pair_sets},
        "steps": tuner.steps_,
        "epochs": tuner.epochs_,
        "seconds": round(tuner.seconds_, 2),
        "loss_curve": tuner.loss_curve_,
    }
    inputs.facts.update(
        tune_steps=tuner.steps_,
        tune_epochs=tuner.epochs_,
        tune_final_loss={k: v for k, v in tuner.loss_curve_[-1].items() if k != "step"},
    )
    return vectors


def search_vectors(inputs: SpaceInputs) -> np.ndarray:
    """The query-tuned encoder's item vectors: from the ``search`` component, else trained."""
    from semid.embeddings.build import reuse_search
    from semid.embeddings.search import search_pairs

    if "search" in inputs.components:
        inputs.facts["reused_search"] = str(inputs.components["search"])
        return reuse_search(inputs.components["search"], inputs.out_dir, inputs.meta, inputs.query)
    return tune_encoder(inputs, [search_pairs(inputs.splits, inputs.texts)])


def rec_model(inputs: SpaceInputs) -> Any:
    """The collaborative model: from the ``rec`` component, else fitted on the histories."""
    from semid.embeddings.build import ReusedRec, rec_estimator

    cfg = inputs.cfg
    if "rec" in inputs.components:
        rec = ReusedRec(inputs.components["rec"])
        inputs.facts["reused_rec"] = str(inputs.components["rec"])
    else:
        rec = rec_estimator(cfg, inputs.seed).fit(inputs.sequences, len(inputs.texts))
    inputs.meta["training"]["rec"] = {
        "model": cfg.rec_model,
        "epochs": rec.epochs_,
        "seconds": round(rec.seconds_, 2),
        "items_without_train_interactions": rec.n_items_without_interactions_,
        "loss_curve": rec.loss_curve_,
    }
    inputs.facts.update(
        rec_model=cfg.rec_model,
        rec_epochs=rec.epochs_,
        rec_final_loss=rec.loss_curve_[-1] if rec.loss_curve_ else None,
        items_without_train_interactions=rec.n_items_without_interactions_,
    )
    return rec


# --- the in-tree spaces ---------------------------------------------------------------------


def _content(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    from semid.embeddings.content import ContentEmbedder

    cfg = inputs.cfg
    embedder = ContentEmbedder(cfg.encoder, cfg.batch_size, cfg.normalize, cfg.device)
    embedder.fit(inputs.texts)
    inputs.meta["encoder_path"] = embedder.encoder_path_
    inputs.query["encoder"] = {"kind": "base", "name": cfg.encoder}
    return {"item": embedder.embeddings_}


def _search(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    return {"item": search_vectors(inputs)}


def _multitask(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    from semid.embeddings.multitask import cooccurrence_pairs, item_pair_set
    from semid.embeddings.search import search_pairs

    pairs = cooccurrence_pairs(inputs.sequences, inputs.cfg.cooc_window)
    if len(pairs) == 0:
        raise DataError("multitask: the training histories hold no co-occurring items")
    pair_sets = [
        search_pairs(inputs.splits, inputs.texts),
        item_pair_set(pairs, inputs.texts, inputs.cfg.rec_loss_weight),
    ]
    return {"item": tune_encoder(inputs, pair_sets)}


def _rec(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    rec = rec_model(inputs)
    inputs.users = (rec, "item")
    return {"item": rec.item_embeddings_}


def _separate(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    search = search_vectors(inputs)
    rec = rec_model(inputs)
    inputs.users = (rec, "rec")
    return {"search": search, "rec": rec.item_embeddings_}


def _fused_concat(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    from semid.embeddings.fused import fuse_concat

    search = search_vectors(inputs)
    items = rec_model(inputs).item_embeddings_
    inputs.query["transform"] = {"kind": "concat", "rec_dim": int(items.shape[1])}
    return {"item": fuse_concat(search, items)}


def _fused_svd(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    from semid.embeddings.fused import FusedSVD
    from semid.io import write_npy

    search = search_vectors(inputs)
    fused = FusedSVD(random_state=inputs.seed).fit(search, rec_model(inputs).item_embeddings_)
    projection = fused.query_projection_
    if projection is not None:
        write_npy(inputs.out_dir / "query_projection.npy", projection)
    inputs.query["transform"] = {
        "kind": "svd",
        "reduced": fused.reduced_,
        "projection": "query_projection.npy" if projection is not None else None,
    }
    return {"item": fused.embeddings_}


_PARTS = ("search", "rec")
SPACES.register(
    "content",
    EmbeddingSpace(_content, text_encoder="named", seeded=False),
    "frozen sentence encoder on item text",
)
SPACES.register(
    "search",
    EmbeddingSpace(_search),
    "encoder fine-tuned on (training query, item text) pairs",
)
SPACES.register(
    "rec",
    EmbeddingSpace(_rec, text_encoder="none", needs_interactions=True),
    "collaborative embeddings (ENMF, or implicit's ALS / BPR) from training histories",
)
SPACES.register(
    "separate",
    EmbeddingSpace(_separate, _PARTS, needs_interactions=True),
    "search + rec, two ID spaces (search.npy, rec.npy)",
)
SPACES.register(
    "fused-concat",
    EmbeddingSpace(_fused_concat, _PARTS, needs_interactions=True),
    "[l2(search), l2(rec)] concatenated",
)
SPACES.register(
    "fused-svd",
    EmbeddingSpace(_fused_svd, _PARTS, needs_interactions=True),
    "l2(search) and l2(rec), the wider reduced by truncated SVD, added",
)
SPACES.register(
    "multitask",
    EmbeddingSpace(_multitask, needs_interactions=True),
    "one encoder tuned on query-item and co-occurring item-item pairs",
)


def task_spaces(space_names: list[str] | dict[str, Any]) -> dict[str, str]:
    """Which ID space serves each task: ``item`` for both, or ``search`` and ``rec``."""
    from semid.errors import ConfigError

    if "item" in space_names:
        return {"search": "item", "rec": "item"}
    if {"search", "rec"} <= set(space_names):
        return {"search": "search", "rec": "rec"}
    raise ConfigError(f"ids: cannot map tasks to ID spaces {list(space_names)}")
