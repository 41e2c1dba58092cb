"""The pipeline: data -> splits -> embeddings -> ids -> model -> evaluation -> report.

Each stage reads the artifacts of the stages before it from disk and writes its own into the
stage cache (see :mod:`semid.runs`), so any stage can be rerun, reused or resumed.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from semid import __version__, distributed
from semid.config import IDENTITY_EXCLUDE, RunConfig
from semid.data import load_dataset, load_query_file, make_splits, query_ambiguity
from semid.data.dataset import Dataset, Splits
from semid.data.movielens import resolve_path
from semid.device import resolve_device
from semid.embeddings import build_embeddings, load_embeddings
from semid.embeddings.config import EmbeddingConfig
from semid.embeddings.spaces import SPACES, task_spaces
from semid.errors import ConfigError
from semid.evaluation.evaluate import EvalInputs, eval_inputs, score, score_sets
from semid.evaluation.reference import knn
from semid.generative.examples import InputEncoder, build_examples, rec_windows
from semid.generative.model import (
    build_model,
    count_parameters,
    init_id_rows,
    pretrained_tokenizer,
)
from semid.generative.retriever import GenerativeRetriever
from semid.generative.train import level_masks, train_generator
from semid.generative.vocab import SemanticVocab, train_text_tokenizer
from semid.io import file_hash, read_json, stable_hash, write_json, write_npy, write_parquet
from semid.quantizers import build_ids, load_ids
from semid.runs import STAGES, Run, StageResult

log = logging.getLogger(__name__)


def run_name(cfg: RunConfig) -> str:
    """A readable, unique default name: space-quantizer-shape-seed-confighash."""
    q = cfg.quantizer
    digest = stable_hash(cfg.model_dump(mode="json", exclude=IDENTITY_EXCLUDE), 6)
    return f"{cfg.embedding.space}-{q.name}-{q.levels}x{q.codebook_size}-s{cfg.seed}-{digest}"


def _fingerprint(path: Path | None) -> Any:
    """Names, sizes and content hashes of the files a stage reads (cheap for small files)."""
    if path is None or not Path(path).exists():
        return None  # the stage itself reports a missing input with a clear message
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        size = f.stat().st_size
        out.append([f.name, size, file_hash(f) if size < 64 << 20 else int(f.stat().st_mtime)])
    return out


def set_threads(n: int | None) -> None:
    """Use ``n`` torch threads (default: $SEMID_NUM_THREADS, else every core we may use)."""
    if n is None and os.environ.get("SEMID_NUM_THREADS"):
        n = int(os.environ["SEMID_NUM_THREADS"])
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, n or 1))


def generator_seed(cfg: RunConfig) -> int:
    """The generator's seed: ``train.seed`` when set, else the run seed."""
    return cfg.seed if cfg.train.seed is None else cfg.train.seed


def quantizer_seed(cfg: RunConfig) -> int:
    """The quantizer's seed: ``quantizer.seed`` when set, else the run seed."""
    return cfg.seed if cfg.quantizer.seed is None else cfg.quantizer.seed


@dataclass
class PipelineState:
    """Stage results of a run, filled as the pipeline advances."""

    cfg: RunConfig
    run: Run
    stages: dict[str, StageResult]

    def path(self, stage: str) -> Path:
        return self.stages[stage].path


def stage_data(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    material = {
        "version": __version__,
        "data": cfg.data.model_dump(mode="json"),
        "files": _fingerprint(resolve_path(cfg.data.dataset, cfg.data.path)),
    }

    def build(out: Path) -> dict:
        dataset = load_dataset(cfg.data)
        dataset.save(out)
        return {
            "items": dataset.items.height,
            "interactions": dataset.interactions.height,
            "users": dataset.interactions["user_id"].n_unique(),
        }

    return state.run.stage("data", material, build, force)


def stage_splits(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    material = {
        "data": state.stages["data"].key,
        "queries": cfg.queries.model_dump(mode="json"),
        "query_file": _fingerprint(cfg.queries.file),
        "seed": cfg.seed,
    }

    def build(out: Path) -> dict:
        dataset = Dataset.load(state.path("data"))
        splits = make_splits(dataset, cfg.data, cfg.queries, cfg.seed)
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
        "embedding": emb.model_dump(mode="json"),
        # content embeddings train nothing: every seed shares them
        "seed": state.cfg.seed if SPACES.get(emb.space).seeded else None,
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
        return build_embeddings(emb, dataset, splits, out, state.cfg.seed, components)

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


def indexing_texts(items: pl.DataFrame, variant: str) -> list[str]:
    """One indexing input per item: its metadata ``text``, its ``title`` alone, or
    ``title_year`` ("Title (1995)"; the title alone when the year is unknown)."""
    if variant == "text":
        return items["text"].to_list()
    titles = items["title"].fill_null("").to_list()
    if variant == "title":
        return titles
    if variant == "title_year":
        years = items["year"].to_list() if "year" in items.columns else [None] * len(titles)
        return [f"{t} ({y})" if y else t for t, y in zip(titles, years, strict=True)]
    raise ConfigError(f"train.indexing_variants: unknown {variant!r} (text, title, title_year)")


def _id_vectors(spaces: dict, artifact, dim: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Centroid-style init vectors of every ID space's tokens (see ``id_token_vectors``)."""
    from semid.generative.textmodel import id_token_vectors

    out = {}
    for name, space in spaces.items():
        emb = artifact.spaces[name] if name in artifact.spaces else artifact.spaces["item"]
        out[name] = id_token_vectors(space.codes, emb, space.cardinalities, dim, seed)
    return out


def training_texts(items: pl.DataFrame, splits: Splits, cfg: RunConfig) -> tuple[list, list]:
    """The generator's search-type training inputs (queries, then indexing inputs per
    variant) and their target item indices."""
    train_q = splits.train_queries()
    texts = train_q["query"].to_list()
    targets = train_q["item_idx"].to_list()
    if cfg.train.indexing_examples:
        for variant in cfg.train.indexing_variants:
            texts += indexing_texts(items, variant)
            targets += list(range(items.height))
    return texts, targets


def repeat_indexing(
    texts: list[str], targets: list[int], vectors: np.ndarray | None, n_queries: int, times: int
) -> tuple[list[str], list[int], np.ndarray | None]:
    """The training texts with the indexing inputs (after the first ``n_queries``) repeated."""
    if times <= 1:
        return texts, targets, vectors
    texts = texts + texts[n_queries:] * (times - 1)
    targets = targets + targets[n_queries:] * (times - 1)
    if vectors is not None:
        vectors = np.concatenate([vectors] + [vectors[n_queries:]] * (times - 1))
    return texts, targets, vectors


def text_encoder_path(cfg: RunConfig, artifact) -> str:
    """The sentence encoder a text-t5 generator reads texts with."""
    from semid.embeddings.encoders import resolve_encoder

    if cfg.model.text_encoder:
        return resolve_encoder(cfg.model.text_encoder)
    return artifact.encoder_path or resolve_encoder("minilm")


def text_encoder_name(cfg: RunConfig) -> str | None:
    """The text-t5 encoder's name when it is a named (shipped) one, else None."""
    if cfg.model.text_encoder:
        return cfg.model.text_encoder
    text_encoder = SPACES.get(cfg.embedding.space).text_encoder
    if text_encoder == "named":
        return cfg.embedding.encoder
    return "minilm" if text_encoder == "none" else None


def stage_text_vectors(state: PipelineState, force: bool = False) -> StageResult:
    """Sentence vectors of the generator's training texts (text-t5): computed once, shared by
    every generator trained on the same texts with the same encoder (seeds, sizes, recipes)."""
    cfg = state.cfg
    no_encoder = SPACES.get(cfg.embedding.space).text_encoder == "none"
    encoder = cfg.model.text_encoder or ("minilm" if no_encoder else state.stages["embeddings"].key)
    material = {
        "data": state.stages["data"].key,
        "splits": state.stages["splits"].key,
        "encoder": encoder,
        "indexing": cfg.train.model_dump(
            mode="json", include={"indexing_examples", "indexing_variants"}
        ),
    }

    def build(out: Path) -> dict:
        from semid.generative.textmodel import FrozenTextEncoder

        set_threads(cfg.train.num_threads)
        items = pl.read_parquet(state.path("data") / "items.parquet")
        texts, _ = training_texts(items, Splits.load(state.path("splits")), cfg)
        artifact = load_embeddings(state.path("embeddings"))
        path = text_encoder_path(cfg, artifact)
        known = {}
        normalized = artifact.meta.get("config", {}).get("normalize", True)
        if cfg.embedding.space == "content" and path == artifact.encoder_path and normalized:
            # the content space is this encoder's unit vectors of the item texts: reuse them
            known = dict(zip(items["text"].to_list(), artifact.spaces["item"], strict=True))
        vectors = FrozenTextEncoder(path).encode(texts, progress=True, known=known)
        write_npy(out / "vectors.npy", vectors.astype(np.float16))  # half the disk, ~1e-3 error
        return {
            "texts": len(texts),
            "reused_item_vectors": len(known),
            "dim": int(vectors.shape[1]),
            "encoder": path,
        }

    return state.run.stage("text_vectors", material, build, force)


def _not_in_model_key(cfg: RunConfig) -> set[str]:
    """Train options that do not change the trained model (checkpointing, threads, device);
    gradient accumulation only when off, so the keys of existing caches stay valid."""
    out = {"seed", "num_threads", "device", "checkpoint_steps", "checkpoint_minutes"}
    return out | ({"grad_accum_steps"} if cfg.train.grad_accum_steps == 1 else set())


def stage_model(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    text_stage = stage_text_vectors(state, force) if cfg.model.backbone == "text-t5" else None
    material = {
        "splits": state.stages["splits"].key,
        "ids": state.stages["ids"].key,
        "text_vectors": text_stage.key if text_stage else None,
        "model": cfg.model.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json", exclude=_not_in_model_key(cfg)),
        "seed": generator_seed(cfg),
    }

    def build(out: Path) -> dict:
        set_threads(cfg.train.num_threads)
        seed = generator_seed(cfg)
        torch.manual_seed(seed)
        items = pl.read_parquet(state.path("data") / "items.parquet")
        splits = Splits.load(state.path("splits"))
        spaces = load_ids(state.path("ids"))
        codes = {name: s.codes for name, s in spaces.items()}
        train_q = splits.train_queries()
        artifact = load_embeddings(state.path("embeddings"))
        encoder_path = artifact.encoder_path
        text = vectors = None
        if text_stage is not None:
            from semid.generative.textmodel import FrozenTextEncoder

            encoder_path = text_encoder_path(cfg, artifact)
            text = FrozenTextEncoder(encoder_path)
            vectors = np.load(text_stage.path / "vectors.npy").astype(np.float32)
            # the word pieces are unused by text-t5 (texts go through the sentence encoder)
            tokenizer: Any = train_text_tokenizer(items["title"].fill_null("").to_list(), 500)
        else:
            tokenizer = pretrained_tokenizer(cfg.model, encoder_path)
        if tokenizer is None:
            corpus = items["text"].to_list() + train_q["query"].to_list()
            tokenizer = train_text_tokenizer(corpus, cfg.model.text_vocab_size)
        # a trained word-piece vocabulary can order tied tokens differently in each process:
        # under a launcher every process uses rank 0's
        tokenizer = distributed.agree(tokenizer)
        vocab = SemanticVocab.build(
            tokenizer,
            {name: s.cardinalities for name, s in spaces.items()},
            task_spaces(list(spaces)),
        )
        encoder = InputEncoder(
            vocab,
            codes,
            cfg.model.max_query_tokens,
            cfg.model.max_history_items,
            text_slots=cfg.model.text_slots if text is not None else 0,
            pooled_history=text is not None and cfg.model.history_input == "items",
        )
        texts, targets = training_texts(items, splits, cfg)
        texts, targets, vectors = repeat_indexing(
            texts, targets, vectors, train_q.height, cfg.train.indexing_repeats
        )
        histories, rec_targets = rec_windows(
            splits.sequences["train"].to_list(), cfg.train.rec_windows_per_user
        )
        examples = build_examples(encoder, texts, targets, histories, rec_targets, vectors)
        device = resolve_device(cfg.train.device, "train.device")
        model = build_model(
            cfg.model,
            len(vocab),
            vocab.pad_id,
            vocab.eos_id,
            encoder_path,
            text_dim=text.dim if text is not None else None,
        )
        is_t5 = cfg.model.backbone in ("t5-scratch", "text-t5")
        if cfg.model.id_init == "centroids" and is_t5:
            init_id_rows(model, vocab, _id_vectors(spaces, artifact, cfg.model.d_model, seed))
        skip_scale = None
        if text_stage is not None and cfg.model.text_skip:
            from semid.generative.textmodel import TextConditionedT5, init_text_skip, pca_axes

            assert isinstance(model, TextConditionedT5) and vectors is not None

            space = vocab.space_for("search")
            emb = artifact.spaces.get(space.name, artifact.spaces.get("item"))
            assert emb is not None, f"no embeddings for the {space.name} ID space"
            skip_scale = init_text_skip(
                model,
                pca_axes(emb, cfg.model.d_model, seed),
                vectors[:: max(1, len(vectors) // 2000)],
                (space.offsets[0], space.cardinalities[0]),
            )
        masks = None
        if cfg.train.level_softmax and is_t5:
            task_space = vocab.task_space
            masks = level_masks(
                len(vocab),
                [
                    (vocab.spaces[task_space[t]].offsets, vocab.spaces[task_space[t]].cardinalities)
                    for t in ("search", "rec")
                ],
            )
        if text_stage is not None:  # lets a copied run find the encoder where paths differ
            model.config.text_encoder_name = text_encoder_name(cfg)
        log.info("generator: %d parameters, %d examples", count_parameters(model), len(examples))
        facts = train_generator(model, examples, cfg.train, vocab.pad_id, device, seed, masks)
        if not distributed.is_main():
            return {}  # rank 0 alone writes the model
        retriever = GenerativeRetriever(
            model.cpu(),
            vocab,
            codes,
            cfg.model.max_query_tokens,
            cfg.model.max_history_items,
            level_softmax=masks is not None,
            text_encoder=text,
        )
        retriever.save(out)
        write_parquet(out / "items.parquet", items)
        facts.update(
            text_skip_scale=skip_scale,
            parameters=count_parameters(model),
            vocab_size=len(vocab),
            examples={
                "search": len(train_q),
                "indexing": len(texts) - len(train_q),
                "rec": len(rec_targets),
            },
        )
        write_json(out / "training_log.json", facts)
        return {k: v for k, v in facts.items() if k != "loss_curve"} | {
            "final_loss": facts["loss_curve"][-1]["loss"] if facts["loss_curve"] else None
        }

    return state.run.stage("model", material, build, force, collective=True)


BASELINE_ONLY = {"baselines", "sasrec_epochs", "sasrec_dim"}
DECODING_ONLY = {"precision", "beam_width", "batch_size"}


def real_queries_path(cfg: RunConfig) -> Path | None:
    """The real-request file of ``eval.real_queries`` for this dataset, if it exists."""
    if cfg.eval.real_queries is None:
        return None
    path = Path(str(cfg.eval.real_queries).replace("{dataset}", cfg.data.dataset))
    candidates = [path] if path.is_absolute() else [path, Path(__file__).parents[2] / path]
    return next((p for p in candidates if p.is_file()), None)


def _sample_key(cfg: RunConfig, decoding: bool = True) -> dict:
    """What decides the held-out inputs (and, with ``decoding``, how the generator decodes);
    not the baselines' own settings."""
    exclude = BASELINE_ONLY | (set() if decoding else DECODING_ONLY)
    return {
        "eval": cfg.eval.model_dump(mode="json", exclude=exclude),
        "seed": cfg.seed,
        "real_queries": _fingerprint(real_queries_path(cfg)),
    }


def load_eval_inputs(state: PipelineState) -> EvalInputs:
    """Every evaluation set of the run (see :func:`semid.evaluation.evaluate.eval_inputs`)."""
    cfg = state.cfg
    dataset = Dataset.load(state.path("data"))
    splits = Splits.load(state.path("splits"))
    path = real_queries_path(cfg)
    real = load_query_file(path, dataset, skip_unknown_items=True) if path is not None else None
    titles = dataset.items["title"].fill_null("").to_list()
    return eval_inputs(splits, cfg.eval, cfg.seed, real, titles)


def generative_predictions(
    retriever: GenerativeRetriever, inputs: EvalInputs, cfg: RunConfig, method: str = "generative"
) -> tuple[dict, list[pl.DataFrame]]:
    """Decode every held-out input with the trie-constrained beam search and score it.

    Recommendation follows ``eval.exclude_seen`` with the history banned inside the beam.
    """
    ks, k = cfg.eval.ks, cfg.eval.beam_size
    beams, batch = cfg.eval.beam_width, cfg.eval.batch_size
    retriever.precision = cfg.eval.precision
    metrics: dict[str, dict] = {}
    frames = []
    if inputs.queries:
        items, scores = retriever.search(
            inputs.queries, k=k, batch_size=batch, progress=True, beams=beams
        )
        found, parts = score_sets(method, "search", items, inputs, ks, scores)
        metrics.update(found)
        frames += parts
    if inputs.histories:
        items, scores = retriever.recommend(
            inputs.histories,
            k=k,
            batch_size=batch,
            progress=True,
            exclude_seen=cfg.eval.exclude_seen,
            beams=beams,
        )
        found, parts = score_sets(method, "rec", items, inputs, ks, scores)
        metrics.update(found)
        frames += parts
    return metrics, frames


def stage_evaluate(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    material = {"model": state.stages["model"].key, **_sample_key(cfg)}

    def build(out: Path) -> dict:
        set_threads(cfg.train.num_threads)
        inputs = load_eval_inputs(state)
        # decoding on the training device (CUDA when present with train.device=auto)
        retriever = GenerativeRetriever.load(state.path("model"), resolve_device(cfg.train.device))
        metrics, frames = generative_predictions(retriever, inputs, cfg)
        write_parquet(out / "predictions.parquet", pl.concat(frames))
        write_json(out / "metrics.json", {"generative": metrics})
        return {"generative": metrics, "search_tokens_read": retriever.query_tokens_read()}

    return state.run.stage("evaluate", material, build, force)


def _write_scores(out: Path, metrics: dict, frames: list[pl.DataFrame]) -> dict:
    """Write a scoring stage's ``metrics.json`` and ``predictions.parquet``; return the metrics."""
    if frames:
        write_parquet(out / "predictions.parquet", pl.concat(frames))
    write_json(out / "metrics.json", metrics)
    return metrics


def stage_reference(state: PipelineState, force: bool = False) -> StageResult:
    """The embedding space's own kNN retrieval, scored on the generator's held-out inputs."""
    cfg = state.cfg
    material = {
        "splits": state.stages["splits"].key,
        "embeddings": state.stages["embeddings"].key,
        "baselines": cfg.eval.model_dump(mode="json", include={"baselines"}),
        **_sample_key(cfg, decoding=False),
    }

    def build(out: Path) -> dict:
        from semid.evaluation.baselines import run_reference

        set_threads(cfg.train.num_threads)
        inputs = load_eval_inputs(state)
        artifact = load_embeddings(state.path("embeddings"))
        facts = _write_scores(out, *run_reference(artifact, inputs, cfg))
        if artifact._model is not None:
            facts["search_tokens_read"] = int(artifact._model.max_seq_length)
        return facts

    return state.run.stage("reference", material, build, force)


def stage_baselines(state: PipelineState, force: bool = False) -> StageResult:
    """Popularity, BM25 and SASRec: independent of the embeddings, shared by every grid cell."""
    cfg = state.cfg
    material = {
        "data": state.stages["data"].key,
        "splits": state.stages["splits"].key,
        "baselines": cfg.eval.model_dump(mode="json", include=BASELINE_ONLY),
        **_sample_key(cfg, decoding=False),
    }

    def build(out: Path) -> dict:
        from semid.evaluation.baselines import run_baselines

        set_threads(cfg.train.num_threads)
        dataset = Dataset.load(state.path("data"))
        splits = Splits.load(state.path("splits"))
        inputs = load_eval_inputs(state)
        return _write_scores(out, *run_baselines(dataset, splits, inputs, cfg))

    return state.run.stage("baselines", material, build, force)


STAGE_FUNCTIONS = {
    "data": stage_data,
    "splits": stage_splits,
    "embeddings": stage_embeddings,
    "ids": stage_ids,
    "model": stage_model,
    "evaluate": stage_evaluate,
    "reference": stage_reference,
    "baselines": stage_baselines,
}


def run_pipeline(
    cfg: RunConfig,
    runs_dir: Path = Path("runs"),
    cache_dir: Path | None = None,
    force: set[str] | None = None,
    until: str | None = None,
) -> Path:
    """Run (or resume) every stage of ``cfg``; returns the run directory."""
    force = force or set()
    unknown = force - set(STAGES)
    if unknown:
        raise ConfigError(f"--force: unknown stage(s) {sorted(unknown)} (stages: {STAGES})")
    name = cfg.name or run_name(cfg)
    run = Run(Path(runs_dir) / name, cache_dir)
    if distributed.is_main():
        write_json(run.run_dir / "config.json", cfg.model_dump(mode="json"))
    state = PipelineState(cfg, run, {})
    for stage in STAGES:
        log.info("stage %s", stage)
        state.stages[stage] = STAGE_FUNCTIONS[stage](state, force=stage in force)
        if stage == until:
            return run.run_dir
    if distributed.is_main():
        finalize_run(state)
    return run.run_dir


def finalize_run(state: PipelineState) -> None:
    """Gather metrics, predictions, the ID table and the model folder into the run directory."""
    from semid.reports.report import write_run_report

    run_dir = state.run.run_dir
    metrics = read_json(state.path("evaluate") / "metrics.json")
    for stage in ("reference", "baselines"):
        metrics.update(read_json(state.path(stage) / "metrics.json"))
    write_json(run_dir / "metrics.json", metrics)
    frames = [pl.read_parquet(state.path("evaluate") / "predictions.parquet")]
    for stage in ("reference", "baselines"):
        if (state.path(stage) / "predictions.parquet").exists():
            frames.append(pl.read_parquet(state.path(stage) / "predictions.parquet"))
    write_parquet(run_dir / "predictions.parquet", pl.concat(frames, how="diagonal_relaxed"))
    tables = sorted(state.path("ids").glob("*/id_table.csv"))
    if len(tables) == 1:
        shutil.copyfile(tables[0], run_dir / "id_table.csv")
    for table in tables if len(tables) > 1 else []:
        shutil.copyfile(table, run_dir / f"id_table_{table.parent.name}.csv")
    model_dir = run_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(state.path("model"), model_dir, ignore=shutil.ignore_patterns("_stage.json"))
    write_run_report(run_dir, state.cfg, state.run.manifest, metrics, state.path("ids"))


def load_state(run_dir: Path) -> tuple[RunConfig, dict[str, Path]]:
    """The config and stage folders recorded in a run directory."""
    run_dir = Path(run_dir)
    for required in ("config.json", "manifest.json"):
        if not (run_dir / required).exists():
            raise ConfigError(f"{run_dir}: not a semid run directory ({required} missing)")
    cfg = RunConfig.model_validate(read_json(run_dir / "config.json"))
    manifest = read_json(run_dir / "manifest.json")
    return cfg, {name: Path(s["path"]) for name, s in manifest["stages"].items()}


def evaluate_query_file(run_dir: Path, query_file: Path, k: int | None = None) -> dict:
    """Score a trained run on any JSONL query file, without retraining."""
    cfg, paths = load_state(run_dir)
    dataset = Dataset.load(paths["data"])
    queries = load_query_file(query_file, dataset)
    inputs = EvalInputs(
        queries=queries["query"].to_list(),
        query_targets=queries["item_idx"].to_numpy().astype(np.int64),
        user_ids=np.zeros(0, dtype=np.int64),
        histories=[],
        rec_targets=np.zeros(0, dtype=np.int64),
    )
    if k is not None:
        cfg.eval.beam_size = k
    set_threads(cfg.train.num_threads)
    retriever = GenerativeRetriever.load(Path(run_dir) / "model", resolve_device(cfg.train.device))
    metrics, frames = generative_predictions(retriever, inputs, cfg)
    artifact = load_embeddings(paths["embeddings"])
    query_vectors = artifact.encode_queries(inputs.queries)
    if query_vectors is not None:
        space = task_spaces(artifact.spaces)["search"]
        ranked = knn(artifact.spaces[space], query_vectors, cfg.eval.beam_size)
        dense, frame = score(
            "dense", "search", ranked, inputs.query_targets, cfg.eval.ks, inputs.queries
        )
        metrics = {"generative": metrics, "dense": {"search": dense}}
        frames.append(frame)
    else:
        metrics = {"generative": metrics}
    out = Path(run_dir) / f"eval-{Path(query_file).stem}"
    write_json(out / "metrics.json", metrics)
    write_parquet(out / "predictions.parquet", pl.concat(frames, how="diagonal_relaxed"))
    return metrics
