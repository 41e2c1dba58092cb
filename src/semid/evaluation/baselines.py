"""Reference points scored on exactly the inputs the generator is scored on.

``eval.baselines`` names methods of the :data:`BASELINES` registry; add one with
:func:`register_baseline` (or an entry point in the ``semid.baselines`` group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from semid.evaluation.evaluate import EvalInputs, score_sets
from semid.evaluation.seen import topk_unseen
from semid.registry import Registry

if TYPE_CHECKING:
    from semid.config import RunConfig
    from semid.data.dataset import Dataset, Splits


class Scores:
    """Collects per-method metrics and per-example prediction frames."""

    def __init__(self, ks: list[int], inputs: EvalInputs) -> None:
        self.ks = ks
        self.inputs = inputs
        self.metrics: dict[str, dict] = {}
        self.frames: list[pl.DataFrame] = []

    def add(self, method: str, kind: str, ranked: np.ndarray) -> None:
        """Score ``ranked`` (every stacked input of ``kind``) per evaluation set."""
        metrics, frames = score_sets(method, kind, ranked, self.inputs, self.ks)
        self.metrics.setdefault(method, {}).update(metrics)
        self.frames.extend(frames)


@dataclass
class BaselineInputs:
    """What a baseline reads: the run's data, its config and (reference stage) its embeddings."""

    dataset: Dataset | None  # None in the reference stage (its methods read embeddings)
    splits: Splits | None
    inputs: EvalInputs
    cfg: RunConfig
    artifact: Any = None

    def data(self) -> tuple[Dataset, Splits]:
        """The dataset and splits (baselines stage only)."""
        if self.dataset is None or self.splits is None:
            raise ValueError("this method needs the dataset and splits (a baselines-stage method)")
        return self.dataset, self.splits


@dataclass(frozen=True)
class Baseline:
    """A registered reference method: ``run(inputs, scores)`` adds its rankings to ``scores``.

    ``stage``: ``reference`` for methods that use the run's embedding space (scored once per
    embedding), ``baselines`` for those that do not (shared by every cell of a grid).
    """

    run: Callable[[BaselineInputs, Scores], None]
    stage: Literal["reference", "baselines"] = "baselines"


BASELINES: Registry[Baseline] = Registry("baseline", "eval.baselines", "semid.baselines")
register_baseline = BASELINES.register


def _run_stage(stage: str, ctx: BaselineInputs) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    for name in ctx.cfg.eval.baselines:
        BASELINES.check(name)
    out = Scores(ctx.cfg.eval.ks, ctx.inputs)
    for name in ctx.cfg.eval.baselines:
        baseline = BASELINES.get(name)
        if baseline.stage == stage:
            baseline.run(ctx, out)
    return out.metrics, out.frames


def run_reference(
    artifact, inputs: EvalInputs, cfg: RunConfig
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """The methods that use the run's embedding space (``dense``, ``dense-user``)."""
    return _run_stage("reference", BaselineInputs(None, None, inputs, cfg, artifact))


def run_baselines(
    dataset: Dataset,
    splits: Splits,
    inputs: EvalInputs,
    cfg: RunConfig,
) -> tuple[dict[str, dict], list[pl.DataFrame]]:
    """Score the embedding-independent baselines (popularity, BM25, SASRec) named in the config.

    Popularity and SASRec follow ``eval.exclude_seen`` (one ``popularity`` row under that rule).
    """
    return _run_stage("baselines", BaselineInputs(dataset, splits, inputs, cfg))


def _dense(ctx: BaselineInputs, out: Scores) -> None:
    """The embedding's own kNN retrieval ("dense", "dense-user").

    Recommendation rankings follow ``eval.exclude_seen`` (:mod:`semid.evaluation.seen`).
    """
    from semid.embeddings.spaces import task_spaces
    from semid.evaluation.reference import knn, mean_history_embeddings

    cfg, inputs, artifact = ctx.cfg, ctx.inputs, ctx.artifact
    k = cfg.eval.beam_size
    spaces = artifact.spaces
    serves = task_spaces(spaces)
    search_space, rec_space = serves["search"], serves["rec"]
    if inputs.queries:
        vectors = artifact.encode_queries(inputs.queries)
        if vectors is not None:
            ranked = knn(spaces[search_space], vectors, k)
            out.add("dense", "search", ranked)
    if inputs.histories:
        mean = mean_history_embeddings(
            spaces[rec_space], inputs.histories, cfg.model.max_history_items
        )
        seen = inputs.histories if cfg.eval.exclude_seen else None
        ranked = knn(spaces[rec_space], mean, k, histories=seen)
        out.add("dense", "rec", ranked)
        scores = artifact.user_item_scores(inputs.user_ids)
        if scores is not None:
            ranked = topk_unseen(scores, inputs.histories, k, cfg.eval.exclude_seen)
            out.add("dense-user", "rec", ranked)


def _popularity(ctx: BaselineInputs, out: Scores) -> None:
    from semid.evaluation.reference import popularity_recommend

    if ctx.inputs.histories:
        dataset, splits = ctx.data()
        ranked = popularity_recommend(
            splits.sequences["train"].to_list(),
            ctx.inputs.histories,
            dataset.n_items,
            ctx.cfg.eval.beam_size,
            ctx.cfg.eval.exclude_seen,
        )
        out.add("popularity", "rec", ranked)


def _bm25(ctx: BaselineInputs, out: Scores) -> None:
    from semid.evaluation.bm25 import BM25Search

    if ctx.inputs.queries:
        bm25 = BM25Search().fit(ctx.data()[0].items["text"].to_list())
        ranked, _ = bm25.search(ctx.inputs.queries, ctx.cfg.eval.beam_size)
        out.add("bm25", "search", ranked)


def _sasrec(ctx: BaselineInputs, out: Scores) -> None:
    from semid.device import resolve_device
    from semid.evaluation.sasrec import SASRec

    cfg = ctx.cfg
    if ctx.inputs.histories:
        model = SASRec(
            max_len=cfg.data.max_history,
            dim=cfg.eval.sasrec_dim,
            epochs=cfg.eval.sasrec_epochs,
            random_state=cfg.seed,
            device=str(resolve_device(cfg.train.device, "train.device")),  # CUDA if present
        )
        dataset, splits = ctx.data()
        model.fit(splits.sequences["train"].to_list(), dataset.n_items)
        ranked = model.recommend(
            ctx.inputs.histories, cfg.eval.beam_size, exclude_seen=cfg.eval.exclude_seen
        )
        out.add("sasrec", "rec", ranked)


BASELINES.register("popularity", Baseline(_popularity), "most-interacted unseen items (rec)")
BASELINES.register("dense", Baseline(_dense, "reference"), "kNN in the run's embeddings")
BASELINES.register("bm25", Baseline(_bm25), "BM25 over the item texts (search)")
BASELINES.register("sasrec", Baseline(_sasrec), "SASRec trained on the histories (rec)")
