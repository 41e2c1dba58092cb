"""A tiny generator training job shared by the checkpoint and distributed tests (also run as
a script by ``torchrun`` in the distributed test and by ``benchmarks/distributed.py``)."""

from __future__ import annotations

import copy
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from semid.generative.config import ModelConfig, TrainConfig
from semid.generative.examples import InputEncoder, build_examples
from semid.generative.model import build_model
from semid.generative.train import train_generator
from semid.generative.vocab import SemanticVocab

TINY = ModelConfig(
    backbone="t5-scratch",
    d_model=32,
    d_ff=64,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    d_kv=16,
    dropout=0.1,
)
WORDS = [
    "funny",
    "dark",
    "thriller",
    "space",
    "romance",
    "paris",
    "toys",
    "war",
    "ship",
    "love",
    "night",
    "city",
    "dog",
]


def fixed_tokenizer(words: list[str]):
    """A word-level tokenizer with a fixed vocabulary: the same in every process and run
    (a trained word-piece vocabulary may order tied tokens differently from run to run)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from semid.generative.vocab import EOS, PAD, UNK

    table = {token: i for i, token in enumerate([PAD, EOS, UNK, *words])}
    tok = Tokenizer(models.WordLevel(vocab=table, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK
    )


@lru_cache(maxsize=1)
def job(n_items: int = 48):
    """(model, examples, vocab, codes): one fixed fresh model (copy it before training)."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4)) + f" {i}" for i in range(n_items)]
    tok = fixed_tokenizer(sorted(set(" ".join(texts).split())))
    cards = [8, 8, 1]
    codes = np.stack([np.arange(n_items) % 8, np.arange(n_items) // 8 % 8, np.zeros(n_items)], 1)
    codes = codes.astype(np.int64)
    vocab = SemanticVocab.build(tok, {"item": cards}, {"search": "item", "rec": "item"})
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3)
    histories = [[i, (i + 1) % n_items] for i in range(n_items)]
    rec_targets = [(i + 2) % n_items for i in range(n_items)]
    examples = build_examples(encoder, texts, list(range(n_items)), histories, rec_targets)
    torch.manual_seed(0)
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    return model, examples, vocab, codes


def train(cfg: TrainConfig, seed: int = 0):
    """Train a copy of the fixed model; returns (model, facts)."""
    model, examples, vocab, _ = job()
    model = copy.deepcopy(model)
    facts = train_generator(model, examples, cfg, vocab.pad_id, torch.device("cpu"), seed)
    return model, facts


def recall_at_1(model) -> float:
    """Search Recall@1 of ``model`` on its own training texts (a metric to compare runs)."""
    from semid.generative.retriever import GenerativeRetriever

    _, examples, vocab, codes = job()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4)) + f" {i}" for i in range(len(codes))]
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 3, precision="fp32")
    items, _ = retriever.search(texts, k=1)
    return float(np.mean(items[:, 0] == np.arange(len(codes))))


def stage_job(cache: Path, steps: int, batch: int, checkpoint_steps: int | None = None) -> None:
    """The tiny job as the pipeline runs it under a launcher: a rank-0 stage, then the
    collective model stage; each process notes which builds it ran and what its scratch
    folder held (beside the cache, in ``cache/../ranks``)."""
    from semid import distributed
    from semid.runs import Run

    rank = distributed.rank()
    notes = cache.parent / "ranks"
    notes.mkdir(parents=True, exist_ok=True)
    run = Run(cache.parent / "run", cache)

    def prep(tmp: Path) -> dict:
        (notes / f"prep.rank{rank}").write_text("built")
        (tmp / "prep.txt").write_text("prep")
        return {}

    run.stage("prep", {"prep": 1}, prep)
    cfg = TrainConfig(
        epochs=1000,
        max_steps=steps,
        batch_size=batch,
        lr=1e-2,
        warmup_ratio=0.0,
        precision="fp32",
        checkpoint_steps=checkpoint_steps,
        checkpoint_minutes=None,
    )

    def build(tmp: Path) -> dict:
        model, facts = train(cfg)
        (notes / f"model.rank{rank}").write_text(json.dumps(sorted(p.name for p in tmp.iterdir())))
        if not distributed.is_main():
            return {}
        torch.save(model.state_dict(), tmp / "model.pt")
        facts["recall_at_1"] = recall_at_1(model)
        return facts

    run.stage("model", {"steps": steps, "batch": batch}, build, collective=True)
    (notes / f"done.rank{rank}").write_text(str(distributed.world_size()))


if __name__ == "__main__":  # [torchrun ...] tests/scale_fixture.py CACHE STEPS BATCH [CKPT]
    torch.set_num_threads(1)
    ckpt = int(sys.argv[4]) if len(sys.argv) > 4 else None
    stage_job(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), ckpt)
