"""Why does the sentence-encoder backbone (all-MiniLM-L6-v2 encoder + a fresh BERT decoder)
collapse? A bug hunt on a catalogue small enough to memorise.

    python benchmarks/sentence_encoder_backbone.py                # every variant below
    python benchmarks/sentence_encoder_backbone.py --only lr-3e-3 pretrained-lr-5e-5

Each variant is the smoke preset (600 items, 500 steps of 64 examples) plus a few overrides,
run with ``semid.pipeline`` (data, splits, embeddings, IDs shared). The text-t5 row is the
reference: the default backbone memorises these titles. Per variant: title-alone R@1 and
R@10 on the training titles (memorisation), template search R@10, rec R@10, distinct items
across the search top-10 lists, the final training loss, and how collapsed the encoder's
output is: the mean cosine between the mean-pooled encoder states of 200 different title
queries (pretrained MiniLM before training: the JSON's ``untrained encoder output
cosine``). Prints a table and writes
benchmarks/results/sentence_encoder_backbone.json. One training seed per variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from semid.config import load_config
from semid.generative.examples import pad
from semid.generative.retriever import GenerativeRetriever
from semid.io import read_json, write_json
from semid.pipeline import run_pipeline

OUT = Path(__file__).resolve().parent / "results" / "sentence_encoder_backbone.json"
BASE = ["eval.ks=[1,10]", "train.num_threads=2"]
SE = "model.backbone=sentence-encoder"

VARIANTS: dict[str, tuple[list[str], str]] = {
    "text-t5": ([], "the default backbone on the smoke preset (reference)"),
    "lr-3e-3": ([SE], "sentence-encoder at the smoke preset's lr 3e-3 (the default's 2e-3 scale)"),
    "lr-2e-4": ([SE, "train.lr=2e-4"], "sentence-encoder, every parameter at lr 2e-4"),
    "pretrained-lr-5e-5": (
        [SE, "train.pretrained_lr=5e-5"],
        "sentence-encoder: encoder at 5e-5 (the search space's fine-tuning lr), decoder 3e-3",
    ),
    "pretrained-lr-5e-5-decoder-1e-3": (
        [SE, "train.pretrained_lr=5e-5", "train.lr=1e-3"],
        "sentence-encoder: encoder at 5e-5, decoder at 1e-3",
    ),
}


def mean_pairwise_cosine(states: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean cosine between the mean-pooled (over ``mask``) states of every pair of inputs."""
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    unit = torch.nn.functional.normalize(pooled.float(), dim=-1)
    n = len(unit)
    return round(float(((unit @ unit.T).sum() - n) / (n * (n - 1))), 4)


def encoder_cosine(folder: Path, texts: list[str]) -> float:
    """Mean pairwise cosine of the mean-pooled encoder states of ``texts`` (1 = every input
    looks the same to the decoder)."""
    retriever = GenerativeRetriever.load(folder)
    matrix, _ = pad(retriever.inputs.search(texts), retriever.vocab.pad_id)
    input_ids = torch.from_numpy(matrix.astype(np.int64))
    mask = input_ids != retriever.vocab.pad_id
    with torch.no_grad():
        states = retriever.model.get_encoder()(input_ids=input_ids, attention_mask=mask)
    return mean_pairwise_cosine(states.last_hidden_state, mask)


def untrained_cosine(texts: list[str]) -> float:
    """The same measure for the pretrained MiniLM, through its own tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    from semid.embeddings.encoders import resolve_encoder

    path = resolve_encoder("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    return mean_pairwise_cosine(states, batch["attention_mask"])


def metric(metrics: dict, task: str, name: str) -> float | None:
    value = metrics.get("generative", {}).get(task, {}).get(name)
    return None if value is None else round(float(value), 4)


def row(name: str, run_dir: Path, wall: float, titles: list[str]) -> dict:
    metrics = read_json(run_dir / "metrics.json")
    facts = read_json(run_dir / "manifest.json")["stages"]["model"]["facts"]
    out = {"variant": name, "what": VARIANTS[name][1], "overrides": VARIANTS[name][0]}
    out["title R@1"] = metric(metrics, "search_title", "recall@1")
    out["title R@10"] = metric(metrics, "search_title", "recall@10")
    out["search R@10"] = metric(metrics, "search", "recall@10")
    out["rec R@10"] = metric(metrics, "rec", "recall@10")
    out["coverage search"] = metrics["generative"].get("search", {}).get("coverage")
    loss = facts.get("final_loss")
    out["final loss"] = None if loss is None else round(float(loss), 4)
    is_se = any(o == SE for o in VARIANTS[name][0])
    out["encoder output cosine"] = encoder_cosine(run_dir / "model", titles) if is_se else None
    out["train minutes"] = round(facts.get("seconds", 0) / 60, 2)
    out["wall minutes"] = round(wall / 60, 2)
    out["run_dir"] = run_dir.name
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="Variants to run.")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sentence-encoder"))
    args = parser.parse_args()
    saved = json.loads(OUT.read_text()) if OUT.exists() else {}
    rows = {r["variant"]: r for r in saved.get("rows", [])}
    titles: list[str] | None = None
    for name in args.only or list(VARIANTS):
        cfg = load_config("smoke", None, [f"name=se-{name}", *BASE, *VARIANTS[name][0]])
        start = time.perf_counter()
        run_dir = run_pipeline(cfg, args.runs_dir)
        if titles is None:
            import polars as pl

            items = pl.read_parquet(run_dir / "model" / "items.parquet", columns=["title"])
            rng = np.random.default_rng(0)
            picked = rng.choice(items.height, size=min(200, items.height), replace=False)
            titles = [items["title"][int(i)] for i in picked]
        rows[name] = row(name, run_dir, time.perf_counter() - start, titles)
        ordered = [rows[n] for n in VARIANTS if n in rows]
        write_json(
            OUT,
            {
                "protocol": "smoke preset (600 items, 500 steps), seen items excluded, fp32 "
                "decoding; one training seed per variant",
                "untrained encoder output cosine": untrained_cosine(titles),
                "rows": ordered,
            },
        )
    data = json.loads(OUT.read_text())
    keys = [k for k in data["rows"][0] if k not in ("what", "overrides", "run_dir")]
    print(" | ".join(keys))
    for r in data["rows"]:
        print(" | ".join(str(r.get(k)) for k in keys))
    print("untrained encoder output cosine:", data["untrained encoder output cosine"])


if __name__ == "__main__":
    main()
