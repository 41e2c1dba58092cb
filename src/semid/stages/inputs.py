"""The stages before the generator: data, splits, embeddings and semantic IDs."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from semid import __version__
from semid.data import load_dataset, make_splits, query_ambiguity
from semid.data.dataset import Dataset, Splits
from semid.data.movielens import resolve_path
from semid.embeddings import build_embeddings, load_embeddings
from semid.embeddings.config import EmbeddingConfig
from semid.embeddings.spaces import SPACES
from semid.quantizers import build_ids
from semid.runs import StageResult
from semid.stages.common import (
    PipelineState,
    embedding_seed,
    fingerprint,
    has_rec,
    quantizer_seed,
    tasks_material,
)


def stage_data(state: PipelineState, force: bool = False) -> StageResult:
    """The catalogue and its interactions; a search-only run also reads an item table alone
    (zero interactions). Not keyed on ``tasks``: a folder both kinds of run read gives one
    dataset."""
    cfg = state.cfg
    material = {
        "version": __version__,
        "data": cfg.data.model_dump(mode="json"),
        "files": fingerprint(resolve_path(cfg.data.dataset, cfg.data.path)),
    }

    def build(out: Path) -> dict:
        dataset = load_dataset(cfg.data, items_only=not has_rec(cfg))
        dataset.save(out)
        return {
            "items": dataset.items.height,
            "interactions": dataset.interactions.height,
            "users": dataset.interactions["user_id"].n_unique(),
        }

    return state.run.stage("data", material, build, force)


def stage_splits(state: PipelineState, force: bool = False) -> StageResult:
    """User sequences and query splits; a search-only run makes the query splits alone. Its
    key holds ``tasks`` (when not the default), so every stage after it is keyed on them."""
    cfg = state.cfg
    material = {
        "data": state.stages["data"].key,
        "queries": cfg.queries.model_dump(mode="json"),
        "query_file": fingerprint(cfg.queries.file),
        "seed": cfg.seed,
        **tasks_material(cfg),
    }

    def build(out: Path) -> dict:
        dataset = Dataset.load(state.path("data"))
        splits = make_splits(dataset, cfg.data, cfg.queries, cfg.seed, sequences=has_rec(cfg))
        splits.save(out)
        counts = splits.queries.group_by("split").len().to_dicts()
        return {
            "users": splits.sequences.height,
            "queries": {row["split"]: row["len"] for row in counts},
            "ties": splits.tie_stats,
            "query_ambiguity": query_ambiguity(splits.queries, "test", cfg.eval.ks),
        }

    return state.run.stage("splits", material, build, force)


def _embedding_material(state: PipelineState, emb: EmbeddingConfig) -> dict:
    return {
        "splits": state.stages["splits"].key,
        "embedding": emb.model_dump(mode="json", exclude={"seed"}),
        # content embeddings train nothing: every seed shares them
        "seed": embedding_seed(state.cfg) if SPACES.get(emb.space).seeded else None,
    }


def _embedding_stage(
    state: PipelineState,
    name: str,
    emb: EmbeddingConfig,
    force: bool,
    components: dict[str, Path] | None = None,
) -> StageResult:
    def build(out: Path) -> dict:
        dataset = Dataset.load(state.path("data"))
        splits = Splits.load(state.path("splits"))
        return build_embeddings(emb, dataset, splits, out, embedding_seed(state.cfg), components)

    return state.run.stage(name, _embedding_material(state, emb), build, force)


def stage_embeddings(state: PipelineState, force: bool = False) -> StageResult:
    """The run's embedding space; a composite one builds (or reuses) its component spaces
    first, each as a stage of its own (``embeddings/search``, ``embeddings/rec``), so a grid
    that also has the search or rec cell trains them once."""
    emb = state.cfg.embedding
    components: dict[str, Path] = {}
    if force or not state.run.is_cached("embeddings", _embedding_material(state, emb)):
        for part in SPACES.get(emb.space).components:
            part_cfg = emb.model_copy(update={"space": part})
            name = f"embeddings/{part}"
            components[part] = _embedding_stage(state, name, part_cfg, force).path
    return _embedding_stage(state, "embeddings", emb, force, components)


def stage_ids(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    seed = quantizer_seed(cfg)
    material = {
        "embeddings": state.stages["embeddings"].key,
        "quantizer": cfg.quantizer.model_dump(mode="json", exclude={"seed"}),
        "seed": seed,
    }

    def build(out: Path) -> dict:
        items = pl.read_parquet(state.path("data") / "items.parquet")
        artifact = load_embeddings(state.path("embeddings"))
        return build_ids(
            cfg.quantizer,
            artifact.spaces,
            out,
            seed,
            item_titles=items["title"].to_list(),
            item_ids=items["item_id"].to_numpy(),
        )

    return state.run.stage("ids", material, build, force)
