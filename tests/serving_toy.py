"""A tiny trained model folder for the serving tests (imported by test_serving/api/assign/exact).

48 real MovieLens titles, 2-level semantic IDs (8 x 8) plus a disambiguation level of 3 tokens,
a 1-layer T5 trained for a few seconds on item texts, simple queries and "i -> i+1" histories.
Items 0-2 share the prefix (0, 0) (a full collision group), items 3-4 share (0, 1).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import torch

from semid.generative.config import ModelConfig, TrainConfig
from semid.generative.examples import InputEncoder, build_examples
from semid.generative.model import build_model
from semid.generative.retriever import GenerativeRetriever
from semid.generative.train import train_generator
from semid.generative.vocab import SemanticVocab, train_text_tokenizer
from semid.io import write_parquet

MOVIES = Path(__file__).resolve().parents[1] / "data" / "ml-latest-small" / "movies.csv"
N_ITEMS = 48
CARDS = [8, 8, 3]
TINY = ModelConfig(
    backbone="t5-scratch",
    d_model=64,
    d_ff=128,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    d_kv=32,
    dropout=0.0,
)
_BUILT: dict[str, Path] = {}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: fastest for a tiny model, and unaffected by busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def toy_text(title: str, year: int | None, genres: list[str]) -> str:
    year_part = f" ({year})" if year is not None else ""
    return f"{title}{year_part}. Genres: {', '.join(genres)}."


def toy_items() -> pl.DataFrame:
    """The first 48 movies of the bundled MovieLens file, in the items schema."""
    raw = pl.read_csv(MOVIES)[::200].head(N_ITEMS)
    titles, years = [], []
    for full in raw["title"].to_list():
        match = re.match(r"^(.*) \((\d{4})\)\s*$", full)
        titles.append(match.group(1) if match else full)
        years.append(int(match.group(2)) if match else None)
    genres = [g.split("|") for g in raw["genres"].to_list()]
    return pl.DataFrame(
        {
            "item_idx": np.arange(N_ITEMS, dtype=np.int32),
            "item_id": raw["movieId"].cast(pl.Int64),
            "title": titles,
            "year": pl.Series(years, dtype=pl.Int32),
            "genres": genres,
            "tags": [[] for _ in range(N_ITEMS)],
            "text": [toy_text(t, y, g) for t, y, g in zip(titles, years, genres, strict=True)],
        },
        schema_overrides={"tags": pl.List(pl.String)},
    )


def toy_codes() -> np.ndarray:
    """(48, 3) codes: a full collision group (0,0,*) of 3 items, a group (0,1,*) of 2."""
    prefixes = [(0, 0)] * 3 + [(0, 1)] * 2
    rng = np.random.default_rng(0)
    rest = [(a, b) for a in range(8) for b in range(8) if (a, b) not in {(0, 0), (0, 1)}]
    picked = rng.permutation(len(rest))[: N_ITEMS - len(prefixes)]
    prefixes += [rest[i] for i in picked]
    disamb, seen = [], {}
    for p in prefixes:
        disamb.append(seen.get(p, 0))
        seen[p] = seen.get(p, 0) + 1
    return np.c_[np.asarray(prefixes), np.asarray(disamb)].astype(np.int64)


def toy_queries(items: pl.DataFrame) -> tuple[list[str], list[int]]:
    """Training inputs: item text, the title alone, and 'a <genre> movie <title words>'."""
    texts, targets = [], []
    for row, (title, text, genres) in enumerate(
        zip(items["title"], items["text"], items["genres"], strict=True)
    ):
        for q in (text, title.lower(), f"a {genres[0].lower()} movie called {title.lower()}"):
            texts.append(q)
            targets.append(row)
    return texts, targets


def build_toy_model(folder: Path, seed: int = 0) -> GenerativeRetriever:
    """Train the toy generator and write ``folder`` (a model folder with items.parquet)."""
    torch.manual_seed(seed)
    items = toy_items()
    codes = toy_codes()
    texts, targets = toy_queries(items)
    tok = train_text_tokenizer(texts, 600)
    vocab = SemanticVocab.build(tok, {"item": CARDS}, {"search": "item", "rec": "item"})
    encoder = InputEncoder(vocab, {"item": codes}, 24, 4)
    histories = [[i] for i in range(N_ITEMS - 1)] + [[i, i + 1] for i in range(N_ITEMS - 2)]
    rec_targets = [i + 1 for i in range(N_ITEMS - 1)] + [i + 2 for i in range(N_ITEMS - 2)]
    examples = build_examples(encoder, texts, targets, histories, rec_targets)
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    cfg = TrainConfig(epochs=40, batch_size=32, lr=5e-3, warmup_ratio=0.0, precision="fp32")
    with one_thread():
        train_generator(model, examples, cfg, vocab.pad_id, torch.device("cpu"), seed=seed)
    retriever = GenerativeRetriever(model.cpu(), vocab, {"item": codes}, 24, 4, precision="fp32")
    retriever.save(folder)
    write_parquet(folder / "items.parquet", items)
    return retriever


def toy_run(root: Path) -> Path:
    """A run directory ``root/run`` holding ``model/``, trained once per test session."""
    if "run" not in _BUILT or not _BUILT["run"].exists():
        run_dir = root / "run"
        build_toy_model(run_dir / "model")
        _BUILT["run"] = run_dir
    return _BUILT["run"]


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A private copy of a run directory (for tests that modify the model folder)."""
    shutil.copytree(run_dir, dest)
    return dest
