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
from semid.generative.vocab import SemanticVocab, train_text_tokenizer

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


@lru_cache(maxsize=1)
def job(n_items: int = 48):
    """(model, examples, vocab, codes): one fixed fresh model (copy it before training)."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4)) + f" {i}" for i in range(n_items)]
    tok = train_text_tokenizer(sorted(set(" ".join(texts).split())) * 3, 500)
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


if __name__ == "__main__":  # torchrun tests/scale_fixture.py OUT_DIR STEPS BATCH
    from semid import distributed

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    steps, batch = int(sys.argv[2]), int(sys.argv[3])
    cfg = TrainConfig(
        epochs=1000,
        max_steps=steps,
        batch_size=batch,
        lr=1e-2,
        warmup_ratio=0.0,
        precision="fp32",
    )
    model, facts = train(cfg)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        facts["recall_at_1"] = recall_at_1(model)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "facts.json").write_text(json.dumps(facts))
    (out.parent / f"rank{distributed.rank()}.done").write_text(str(distributed.world_size()))
