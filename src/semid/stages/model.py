"""The generator's stages: the sentence vectors of its training texts (text-t5) and the model.

The model stage reads the upstream artefacts, builds the vocabulary (word pieces + ID tokens),
the training examples and the initialised model, trains it and saves it as a
:class:`~semid.generative.retriever.GenerativeRetriever`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from transformers import PreTrainedModel

from semid import distributed
from semid.config import RunConfig
from semid.data.dataset import Splits
from semid.device import resolve_device
from semid.embeddings import load_embeddings
from semid.embeddings.build import EmbeddingArtifact
from semid.embeddings.spaces import SPACES, task_spaces
from semid.errors import ConfigError
from semid.generative.examples import Examples, InputEncoder, build_examples, rec_windows
from semid.generative.model import (
    build_model,
    count_parameters,
    init_id_rows,
    pretrained_tokenizer,
)
from semid.generative.retriever import GenerativeRetriever
from semid.generative.textmodel import text_precision
from semid.generative.train import level_masks, noise_std_for_cos, train_generator
from semid.generative.vocab import SemanticVocab, train_text_tokenizer
from semid.io import write_json, write_npy, write_parquet
from semid.quantizers import load_ids
from semid.quantizers.ids import SemanticIdSpace
from semid.runs import StageResult
from semid.stages.common import PipelineState, generator_seed, has_rec, set_threads

if TYPE_CHECKING:
    from semid.generative.textmodel import FrozenTextEncoder

log = logging.getLogger(__name__)
# Above this, the sentence-encoder backbone's encoder collapsed on the smoke catalogue (3e-3:
# every input's encoder states at cosine 1.0; 2e-4 trained: benchmarks/sentence_encoder_backbone.py)
SENTENCE_ENCODER_MAX_LR = 5e-4


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


def indexing_block(cfg: RunConfig, n_queries: int, n_items: int, variant: str) -> slice:
    """Where :func:`training_texts` puts the indexing inputs of ``variant`` (one per item, in
    item order): after the queries, in ``cfg.train.indexing_variants``' order."""
    if not cfg.train.indexing_examples or variant not in cfg.train.indexing_variants:
        raise ValueError(f"indexing variant {variant!r} is not among the training texts")
    first = n_queries + cfg.train.indexing_variants.index(variant) * n_items
    return slice(first, first + n_items)


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
    precision = text_precision(cfg.model.text_precision)
    if precision != "fp32":  # fp32 vectors keep the key they had before the knob existed
        material["precision"] = precision

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
        encoder = FrozenTextEncoder(path, precision=precision)
        vectors = encoder.encode(texts, progress=True, known=known)
        write_npy(out / "vectors.npy", vectors.astype(np.float16))  # half the disk, ~1e-3 error
        return {
            "texts": len(texts),
            "reused_item_vectors": len(known),
            "dim": int(vectors.shape[1]),
            "encoder": path,
            "precision": precision,
        }

    return state.run.stage("text_vectors", material, build, force)


def _not_in_model_key(cfg: RunConfig) -> set[str]:
    """Train options that do not change the trained model (checkpointing, threads, device);
    gradient accumulation only when off, so the keys of existing caches stay valid (the
    neighbourhood fields leave the dump by themselves while off: TrainConfig's serializer)."""
    out = {"seed", "num_threads", "device", "checkpoint_steps", "checkpoint_minutes"}
    return out | ({"grad_accum_steps"} if cfg.train.grad_accum_steps == 1 else set())


@dataclass
class GeneratorInputs:
    """What the model stage reads from the stages before it."""

    items: pl.DataFrame
    splits: Splits
    train_queries: pl.DataFrame
    spaces: dict[str, SemanticIdSpace]
    artifact: EmbeddingArtifact
    encoder_path: str | None
    text: FrozenTextEncoder | None = None  # text-t5: the sentence encoder of its inputs
    vectors: np.ndarray | None = None  # text-t5: the training texts' vectors (stage order)

    @property
    def codes(self) -> dict[str, np.ndarray]:
        return {name: s.codes for name, s in self.spaces.items()}


def read_generator_inputs(state: PipelineState, text_stage: StageResult | None) -> GeneratorInputs:
    """Items, splits, ID spaces and embeddings; with ``text_stage`` (text-t5) also the text
    encoder and the training texts' vectors."""
    splits = Splits.load(state.path("splits"))
    artifact = load_embeddings(state.path("embeddings"))
    inputs = GeneratorInputs(
        items=pl.read_parquet(state.path("data") / "items.parquet"),
        splits=splits,
        train_queries=splits.train_queries(),
        spaces=load_ids(state.path("ids")),
        artifact=artifact,
        encoder_path=artifact.encoder_path,
    )
    if text_stage is not None:
        from semid.generative.textmodel import FrozenTextEncoder

        inputs.encoder_path = text_encoder_path(state.cfg, artifact)
        # resolves the precision as stage_text_vectors did (the same machine)
        inputs.text = FrozenTextEncoder(
            inputs.encoder_path, precision=state.cfg.model.text_precision
        )
        inputs.vectors = np.load(text_stage.path / "vectors.npy").astype(np.float32)
    return inputs


def generator_vocab(cfg: RunConfig, inputs: GeneratorInputs) -> SemanticVocab:
    """Word pieces (the backbone's, else trained on the corpus) plus every ID space's tokens."""
    items = inputs.items
    if inputs.text is not None and not cfg.model.text_tokens:
        # the word pieces are unused by text-t5 (texts go through the sentence encoder)
        tokenizer: Any = train_text_tokenizer(items["title"].fill_null("").to_list(), 500)
    elif inputs.text is not None:
        tokenizer = None  # text-t5 with a lexical path: trained on the corpus below
    else:
        tokenizer = pretrained_tokenizer(cfg.model, inputs.encoder_path)
    if tokenizer is None:
        corpus = items["text"].to_list() + inputs.train_queries["query"].to_list()
        tokenizer = train_text_tokenizer(corpus, cfg.model.text_vocab_size)
    return SemanticVocab.build(
        tokenizer,
        {name: s.cardinalities for name, s in inputs.spaces.items()},
        task_spaces(list(inputs.spaces)),
    )


def training_examples(
    cfg: RunConfig, vocab: SemanticVocab, inputs: GeneratorInputs
) -> tuple[Examples, dict[str, int], np.ndarray | None]:
    """The encoded training examples (search, indexing and, unless search-only, rec), how many
    of each and (text-t5) the sentence vectors of their texts, repeated indexing inputs
    included."""
    text = inputs.text
    encoder = InputEncoder(
        vocab,
        inputs.codes,
        cfg.model.max_query_tokens,
        cfg.model.max_history_items,
        text_slots=cfg.model.text_slots if text is not None else 0,
        pooled_history=text is not None and cfg.model.history_input == "items",
        text_tokens=cfg.model.text_tokens if text is not None else 0,
    )
    n_queries = inputs.train_queries.height
    texts, targets = training_texts(inputs.items, inputs.splits, cfg)
    texts, targets, vectors = repeat_indexing(
        texts, targets, inputs.vectors, n_queries, cfg.train.indexing_repeats
    )
    # a search-only run (tasks=[search]) has no sequences: no rec examples
    sequences = inputs.splits.sequences["train"].to_list() if has_rec(cfg) else []
    histories, rec_targets = rec_windows(sequences, cfg.train.rec_windows_per_user)
    n_clean = len(texts)
    copies = cfg.train.neighbourhood_copies
    if (
        copies
        and vectors is not None
        and cfg.train.indexing_examples
        and "text" in cfg.train.indexing_variants
    ):
        block = indexing_block(cfg, n_queries, inputs.items.height, "text")
        texts = texts + texts[block] * copies
        targets = targets + targets[block] * copies
        vectors = np.concatenate([vectors] + [vectors[block]] * copies)
    examples = build_examples(encoder, texts, targets, histories, rec_targets, vectors)
    counts = {"search": n_queries, "indexing": n_clean - n_queries, "rec": len(rec_targets)}
    if len(texts) > n_clean:
        assert vectors is not None
        std = noise_std_for_cos(cfg.train.neighbourhood_cos, vectors.shape[1])
        examples = examples.with_noise(slice(n_clean, len(texts)), std)
        counts["neighbourhood"] = len(texts) - n_clean
    return examples, counts, vectors


def _init_text_skip(
    cfg: RunConfig,
    model: PreTrainedModel,
    vocab: SemanticVocab,
    artifact: EmbeddingArtifact,
    vectors: np.ndarray | None,
    seed: int,
) -> float:
    """text-t5's skip path from the sentence vector to the first ID token, set from the
    search space's embeddings and a sample of the training ``vectors``; returns its scale."""
    from semid.generative.textmodel import TextConditionedT5, init_text_skip, pca_axes

    assert isinstance(model, TextConditionedT5) and vectors is not None
    space = vocab.space_for("search")
    emb = artifact.spaces.get(space.name, artifact.spaces.get("item"))
    assert emb is not None, f"no embeddings for the {space.name} ID space"
    return init_text_skip(
        model,
        pca_axes(emb, cfg.model.d_model, seed),
        vectors[:: max(1, len(vectors) // 2000)],
        (space.offsets[0], space.cardinalities[0]),
    )


def init_generator(
    cfg: RunConfig,
    vocab: SemanticVocab,
    inputs: GeneratorInputs,
    vectors: np.ndarray | None,
    seed: int,
) -> tuple[PreTrainedModel, float | None, torch.Tensor | None]:
    """The model to train, its ID rows and text skip initialised as configured (the skip
    from the training texts' ``vectors``); returns it, the text skip's scale and the per-level
    softmax masks (None when off)."""
    text = inputs.text
    lr = cfg.train.pretrained_lr or cfg.train.lr
    if cfg.model.backbone == "sentence-encoder" and lr > SENTENCE_ENCODER_MAX_LR:
        log.warning(
            "model.backbone=sentence-encoder at lr %g: the pretrained encoder's outputs "
            "collapse to one vector at a from-scratch learning rate (every input then gets the "
            "same IDs; benchmarks/results/sentence_encoder_backbone.json); use "
            "--set train.lr=2e-4",
            lr,
        )
    model = build_model(
        cfg.model,
        len(vocab),
        vocab.pad_id,
        vocab.eos_id,
        inputs.encoder_path,
        text_dim=text.dim if text is not None else None,
    )
    is_t5 = cfg.model.backbone in ("t5-scratch", "text-t5")
    if cfg.model.id_init == "centroids" and is_t5:
        centroids = _id_vectors(inputs.spaces, inputs.artifact, cfg.model.d_model, seed)
        init_id_rows(model, vocab, centroids)
    skip_scale = None
    if text is not None and cfg.model.text_skip:
        skip_scale = _init_text_skip(cfg, model, vocab, inputs.artifact, vectors, seed)
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
    if text is not None:  # lets a copied run find the encoder where paths differ
        model.config.text_encoder_name = text_encoder_name(cfg)
        model.config.text_precision = text.precision
    return model, skip_scale, masks


def save_generator(
    out: Path,
    cfg: RunConfig,
    model: PreTrainedModel,
    vocab: SemanticVocab,
    inputs: GeneratorInputs,
    level_softmax: bool,
    facts: dict,
) -> dict:
    """Write the trained retriever, the items and ``training_log.json`` (``facts``); returns
    the stage's facts (the loss curve reduced to its final loss)."""
    retriever = GenerativeRetriever(
        model.cpu(),
        vocab,
        inputs.codes,
        cfg.model.max_query_tokens,
        cfg.model.max_history_items,
        level_softmax=level_softmax,
        text_encoder=inputs.text,
    )
    retriever.save(out)
    write_parquet(out / "items.parquet", inputs.items)
    write_json(out / "training_log.json", facts)
    return {k: v for k, v in facts.items() if k != "loss_curve"} | {
        "final_loss": facts["loss_curve"][-1]["loss"] if facts["loss_curve"] else None
    }


def stage_model(state: PipelineState, force: bool = False) -> StageResult:
    cfg = state.cfg
    text_stage = stage_text_vectors(state, force) if cfg.model.backbone == "text-t5" else None
    material = {
        "splits": state.stages["splits"].key,
        "ids": state.stages["ids"].key,
        "text_vectors": text_stage.key if text_stage else None,
        # the text precision enters as resolved on this machine, through the vectors' key
        "model": cfg.model.model_dump(mode="json", exclude={"text_precision"}),
        "train": cfg.train.model_dump(mode="json", exclude=_not_in_model_key(cfg)),
        "seed": generator_seed(cfg),
    }

    def build(out: Path) -> dict:
        set_threads(cfg.train.num_threads)
        seed = generator_seed(cfg)
        torch.manual_seed(seed)
        inputs = read_generator_inputs(state, text_stage)
        vocab = generator_vocab(cfg, inputs)
        examples, counts, vectors = training_examples(cfg, vocab, inputs)
        device = resolve_device(cfg.train.device, "train.device")
        model, skip_scale, masks = init_generator(cfg, vocab, inputs, vectors, seed)
        log.info("generator: %d parameters, %d examples", count_parameters(model), len(examples))
        facts = train_generator(model, examples, cfg.train, vocab.pad_id, device, seed, masks)
        if not distributed.is_main():
            return {}  # rank 0 alone writes the model
        facts.update(
            text_skip_scale=skip_scale,
            parameters=count_parameters(model),
            vocab_size=len(vocab),
            examples=counts,
        )
        return save_generator(out, cfg, model, vocab, inputs, masks is not None, facts)

    return state.run.stage("model", material, build, force, collective=True)
