"""The text-t5 backbone, in-beam ban lists, the level-restricted softmax and centroid init."""

import numpy as np
import pytest
import torch

from semid.generative.config import ModelConfig, TrainConfig
from semid.generative.decode import constrained_beam_search
from semid.generative.examples import InputEncoder, build_examples
from semid.generative.model import build_model, init_id_rows
from semid.generative.retriever import GenerativeRetriever
from semid.generative.textmodel import id_token_vectors
from semid.generative.train import level_masks, seq2seq_loss, train_generator
from semid.generative.trie import PrefixTrie
from semid.generative.vocab import SemanticVocab, train_text_tokenizer

TEXT_TINY = ModelConfig(
    backbone="text-t5",
    d_model=32,
    d_ff=64,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    d_kv=16,
    dropout=0.0,
    text_slots=2,
)
SCRATCH_TINY = TEXT_TINY.model_copy(update={"backbone": "t5-scratch"})


class HashTextEncoder:
    """A stand-in sentence encoder: a fixed random unit vector per distinct text."""

    dim = 8
    max_tokens = 128

    def encode(self, texts, progress=False):
        out = []
        for text in texts:
            rng = np.random.default_rng(abs(hash(text)) % 2**32)
            v = rng.standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def vocab_for(cards):
    tok = train_text_tokenizer(["a funny movie", "space thriller", "romance"] * 20, 500)
    return SemanticVocab.build(tok, {"item": cards}, {"search": "item", "rec": "item"})


def codes_for(n, cards, seed=0):
    rng = np.random.default_rng(seed)
    base = np.unique(rng.integers(0, cards[:-1], (n * 4, len(cards) - 1)), axis=0)
    base = base[rng.permutation(len(base))[:n]]
    return np.c_[base, np.zeros(len(base), dtype=np.int64)]


def memorise(model, examples, vocab, level_softmax=False):
    """Train ``model`` on ``examples`` long enough to memorise a tiny catalogue (150 fp32
    epochs, lr 1e-2); ``level_softmax``: over each level's codes of a 2-level item space."""
    masks = None
    if level_softmax:
        space = vocab.spaces["item"]
        masks = level_masks(len(vocab), [(space.offsets, space.cardinalities)] * 2)
    cfg = TrainConfig(epochs=150, batch_size=8, lr=1e-2, warmup_ratio=0.0, precision="fp32")
    train_generator(model, examples, cfg, vocab.pad_id, torch.device("cpu"), 0, masks)


def node_at(trie, code_row, depth):
    """Trie node reached by the first ``depth`` codes of ``code_row``."""
    node = torch.zeros(1, dtype=torch.long)
    for col in range(depth):
        node = trie.step(node, torch.tensor([int(code_row[col])]), col)
    return int(node[0])


def naive_forbidden(trie, codes, banned):
    """(depth, parent node, code) of every prefix whose items are all banned."""
    out = set()
    for depth in range(codes.shape[1]):
        for row in codes:
            under = [i for i, c in enumerate(codes) if (c[: depth + 1] == row[: depth + 1]).all()]
            if all(i in banned for i in under):
                out.add((depth, node_at(trie, row, depth), int(row[depth])))
    return out


def test_banned_transitions_match_a_naive_trie_walk():
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])
    trie = PrefixTrie(codes, [2, 2, 2])
    banned = [np.array([0, 1]), np.array([3, 4, 5]), np.array([], dtype=np.int64), np.array([2])]
    forbidden = trie.banned_transitions(banned)
    for row, items in enumerate(banned):
        got = {
            (depth, int(p), int(c))
            for depth, (rows, parents, code) in enumerate(forbidden)
            for r, p, c in zip(rows, parents, code, strict=True)
            if r == row
        }
        assert got == naive_forbidden(trie, codes, set(items.tolist())), row


@pytest.mark.parametrize("beam", [3, 12])
def test_banned_items_never_take_a_beam_and_lists_stay_full(beam):
    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(14, cards)
    vocab = vocab_for(cards)
    model = build_model(SCRATCH_TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 20)
    free, _ = retriever.recommend([[0, 1, 2, 3, 4, 5]], k=beam)
    histories = [[0, 1, 2, 3, 4, 5], list(free[0][:2])]
    items, scores = retriever.recommend(histories, k=beam, exclude_seen=True)
    for row, hist in zip(items, histories, strict=True):
        got = row[row >= 0].tolist()
        assert not set(got) & set(hist)
        assert len(got) == min(beam, len(codes) - len(set(hist)))
    # with an exhaustive beam, the banned list = the full ranking with the banned items taken out
    full = retriever.recommend([histories[1]], k=len(codes))[0][0]
    rest = [i for i in full if i not in histories[1]][:beam]
    exact, _ = retriever.recommend(histories[1:], k=beam, exclude_seen=True, beams=len(codes))
    assert exact[0].tolist() == rest
    assert np.isfinite(scores[0][: min(beam, 8)]).all()


def test_ban_cuts_a_whole_subtree_at_the_first_level():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    trie = PrefixTrie(codes, [2, 2])
    forbidden = trie.banned_transitions([np.array([0, 1])])
    rows, parents, code = forbidden[0]
    assert rows.tolist() == [0] and parents.tolist() == [0] and code.tolist() == [0]


def test_level_softmax_loss_is_a_softmax_over_the_level_codes():
    torch.manual_seed(0)
    cards = [4, 3, 1]
    vocab = vocab_for(cards)
    codes = codes_for(5, cards)
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3)
    ex = build_examples(encoder, ["a funny movie"], [2], [], [])
    model = build_model(SCRATCH_TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    space = vocab.spaces["item"]
    masks = level_masks(len(vocab), [(space.offsets, space.cardinalities)] * 2)
    assert masks[0, 1].sum() == 3 and masks[0, 1, space.offsets[1] : space.offsets[1] + 3].all()
    ids = torch.from_numpy(ex.inputs.astype(np.int64))
    labels = torch.from_numpy(ex.targets)
    loss = seq2seq_loss(
        model, ids, ids != vocab.pad_id, labels, None, torch.zeros(1, dtype=torch.long), masks
    )
    logits = model(input_ids=ids, attention_mask=ids != vocab.pad_id, labels=labels).logits[0]
    expected = 0.0
    for col, (off, card) in enumerate(zip(space.offsets, space.cardinalities, strict=True)):
        level = torch.log_softmax(logits[col, off : off + card], -1)
        expected -= float(level[labels[0, col] - off].detach())
    assert float(loss.detach()) == pytest.approx(expected / 3, rel=1e-5)


def test_id_token_vectors_follow_the_codes_mean_residual():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    cols = id_token_vectors(codes, x, [2, 2], dim=2, seed=0)
    assert cols[0].shape == (2, 2) and cols[1].shape == (2, 2)
    # level 1: code means (2, 0) and (0, 3) minus the global mean (1, 1.5), in PCA axes:
    # opposite vectors; level 2: residuals inside each group (-1, 0)/(0, -1) vs (1, 0)/(0, 1)
    np.testing.assert_allclose(cols[0][0], -cols[0][1], atol=1e-6)
    np.testing.assert_allclose(cols[1][0], -cols[1][1], atol=1e-6)
    assert np.isclose(cols[0].std(), 1.0)


@pytest.mark.parametrize(("cfg", "scale"), [(SCRATCH_TINY, 32**-0.5), (TEXT_TINY, 1.0)])
def test_centroid_init_keeps_the_tied_tables_scale(cfg, scale):
    cards = [4, 4, 1]
    vocab = vocab_for(cards)
    model = build_model(cfg, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    # transformers ties T5's tables; text-t5 scales decoder outputs (unit-variance rows)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    vectors = {"item": [np.full((c, 32), float(i + 1), np.float32) for i, c in enumerate(cards)]}
    init_id_rows(model, vocab, vectors)
    off = vocab.spaces["item"].offsets[1]
    assert torch.allclose(model.get_input_embeddings().weight[off], torch.full((32,), 2.0 * scale))


def test_text_t5_learns_text_to_id_and_round_trips(tmp_path):
    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(10, cards)
    vocab = vocab_for(cards)
    text = HashTextEncoder()
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3, text_slots=2, pooled_history=True)
    texts = [f"movie number {i}" for i in range(10)]
    examples = build_examples(
        encoder, texts, list(range(10)), [[0], [1]], [1, 2], text.encode(texts)
    )
    model = build_model(TEXT_TINY, len(vocab), vocab.pad_id, vocab.eos_id, "fake", text.dim)
    memorise(model, examples, vocab, level_softmax=True)
    retriever = GenerativeRetriever(
        model, vocab, {"item": codes}, 16, 3, level_softmax=True, text_encoder=text
    )
    items, _ = retriever.search(texts, k=1)
    assert items[:, 0].tolist() == list(range(10))
    rec, _ = retriever.recommend([[0], [1]], k=1)
    assert rec[:, 0].tolist() == [1, 2]
    retriever.save(tmp_path / "m")
    from semid.generative.model import load_model

    loaded = load_model(tmp_path / "m")
    assert loaded.config.text_slots == 2
    again = GenerativeRetriever(
        loaded, vocab, {"item": codes}, 16, 3, level_softmax=True, text_encoder=text
    )
    assert again.search(texts, k=1)[0][:, 0].tolist() == list(range(10))


def test_wider_beam_returns_the_requested_count_in_score_order():
    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(12, cards)
    vocab = vocab_for(cards)
    model = build_model(SCRATCH_TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    trie = PrefixTrie(codes, cards)
    ids = torch.tensor([[vocab.task_token("rec"), vocab.eos_id]])
    space = vocab.spaces["item"]
    exact, exact_scores = constrained_beam_search(model, ids, ids > 0, trie, space, 12, 0)
    wide, wide_scores = constrained_beam_search(model, ids, ids > 0, trie, space, 12, 0, top_k=3)
    assert wide.shape == (1, 3)
    assert wide[0].tolist() == exact[0, :3].tolist()
    assert torch.allclose(wide_scores, exact_scores[:, :3])


@pytest.mark.parametrize("text_skip", [False, True])
def test_exact_scores_agree_with_an_exhaustive_beam_for_text_t5(text_skip):
    from semid.generative.exact import exact_search

    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(12, cards)
    vocab = vocab_for(cards)
    cfg = TEXT_TINY.model_copy(update={"text_skip": text_skip})
    model = build_model(cfg, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    if text_skip:  # a non-zero prior: beam and exact scoring must both add it
        torch.nn.init.normal_(model.text_skip.weight)
    retriever = GenerativeRetriever(
        model, vocab, {"item": codes}, 16, 3, level_softmax=True, text_encoder=HashTextEncoder()
    )
    beam_items, beam_scores = retriever.search(["a query", "another"], k=12)
    exact_items, exact_scores = exact_search(retriever, ["a query", "another"], k=12)
    assert beam_items.tolist() == exact_items.tolist()
    np.testing.assert_allclose(beam_scores, exact_scores, rtol=1e-4, atol=1e-4)


def test_pooled_history_puts_one_summed_vector_per_item():
    cards = [4, 4, 1]
    codes = codes_for(10, cards)
    vocab = vocab_for(cards)
    model = build_model(TEXT_TINY, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3, text_slots=2, pooled_history=True)
    histories = [[1, 2, 3, 4], [5]]
    tokens = encoder.history(histories)
    assert [len(t) for t in tokens] == [5, 3]  # task + 3 most recent items (+ 1) + eos
    items = encoder.history_items(histories)
    assert items.shape == (2, 3, 3) and (items[1, 1:] == vocab.pad_id).all()
    ids = torch.tensor([tokens[0], tokens[1] + [vocab.pad_id] * 2])
    embeds = model.embed_inputs(ids, item_tokens=torch.from_numpy(items), item_rows=torch.arange(2))
    table = model.shared.weight
    expected = table[torch.from_numpy(vocab.spaces["item"].tokens(codes[[4]]))].sum(1)[0]
    assert torch.allclose(embeds[0, 3], expected)  # third position = item 4 (most recent)
    assert torch.allclose(embeds[1, 2], table[vocab.eos_id])  # eos stays after a short history


def test_pooled_history_model_learns_and_scores_exactly():
    from semid.generative.exact import exact_recommend

    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(10, cards)
    vocab = vocab_for(cards)
    text = HashTextEncoder()
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3, text_slots=2, pooled_history=True)
    texts = ["one", "two"]
    examples = build_examples(
        encoder, texts, [0, 1], [[0], [1], [0, 1]], [1, 2, 3], text.encode(texts)
    )
    model = build_model(TEXT_TINY, len(vocab), vocab.pad_id, vocab.eos_id, "fake", text.dim)
    memorise(model, examples, vocab)
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 3, text_encoder=text)
    rec, scores = retriever.recommend([[0], [1], [0, 1]], k=10)
    assert rec[:, 0].tolist() == [1, 2, 3]
    exact, exact_scores = exact_recommend(retriever, [[0], [1], [0, 1]], k=10)
    assert exact.tolist() == rec.tolist()
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-4)


def test_text_noise_keeps_unit_norm_and_is_seeded():
    from semid.generative.train import noisy

    clean = torch.randn(500, 384, generator=torch.Generator().manual_seed(7))
    v = torch.nn.functional.normalize(clean, dim=-1)
    a = noisy(v, 0.03, torch.Generator().manual_seed(0))
    b = noisy(v, 0.03, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=-1), torch.ones(500), atol=1e-5)
    cos = (a * v).sum(-1).mean().item()
    assert 0.83 < cos < 0.89  # 1 / sqrt(1 + 384 * 0.03**2) = 0.86


@pytest.mark.parametrize("cos", [0.35, 0.5, 0.8])
def test_neighbourhood_noise_lands_at_the_requested_cosine(cos):
    from semid.generative.train import noise_std_for_cos, noisy

    # a generator of its own: the noise below draws from seed 0, which an earlier test may
    # have left the global generator at (same draws = noise parallel to the vectors)
    points = torch.randn(2000, 384, generator=torch.Generator().manual_seed(1))
    v = torch.nn.functional.normalize(points, dim=-1)
    std = noise_std_for_cos(cos, 384)
    moved = noisy(v, std, torch.Generator().manual_seed(0))
    assert (moved * v).sum(-1).mean().item() == pytest.approx(cos, abs=0.01)


def test_per_row_noise_leaves_rows_without_noise_unchanged():
    from semid.generative.examples import Examples
    from semid.generative.train import collate, noisy

    v = torch.nn.functional.normalize(
        torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    std = torch.tensor([0.0, 0.3, 0.0, 0.3, 0.0, 0.0])
    moved = noisy(v, std, torch.Generator().manual_seed(0))
    assert torch.allclose(moved[std == 0], v[std == 0], atol=1e-6)
    assert ((moved[std > 0] * v[std > 0]).sum(-1) < 0.99).all()
    # collate hands each text row of a batch its own std, in batch order
    examples = Examples(
        inputs=np.ones((4, 3), np.int32),
        lengths=np.full(4, 3, np.int32),
        targets=np.zeros((4, 2), np.int64),
        task=np.zeros(4, np.int8),
        text_vectors=v.numpy()[:4],
        text_index=np.array([0, 1, -1, 3], np.int32),
    ).with_noise(slice(3, 4), 0.25)
    *_, extra = collate(examples, np.array([3, 2, 0]), 0, torch.device("cpu"))
    assert extra["text_rows"].tolist() == [0, 2]
    assert extra["noise_std"].tolist() == [0.25, 0.0]


def test_text_skip_prior_starts_as_nearest_centroid():
    from semid.generative.textmodel import init_text_skip, pca_axes

    rng = np.random.default_rng(0)
    centers = np.eye(8)[:4] * 3.0
    cluster = np.repeat(np.arange(4), 6)
    x = centers[cluster] + 0.1 * rng.standard_normal((24, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes = np.c_[cluster, np.tile(np.arange(6), 4), np.zeros(24, dtype=np.int64)]
    cards = [4, 6, 1]
    vocab = vocab_for(cards)
    cfg = TEXT_TINY.model_copy(update={"text_skip": True})
    model = build_model(cfg, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    init_id_rows(model, vocab, {"item": id_token_vectors(codes, x, cards, 32, 0)})
    space = vocab.spaces["item"]
    level = (space.offsets[0], space.cardinalities[0])
    scale = init_text_skip(model, pca_axes(x, 32, 0), x, level)
    assert scale > 0
    prior = model.logit_prior(torch.from_numpy(x.astype(np.float32)))
    first = prior[:, level[0] : level[0] + level[1]]
    assert first.argmax(1).tolist() == cluster.tolist()
    assert first.std(1).mean().item() == pytest.approx(1.0, rel=1e-4)


def test_a_copied_run_finds_its_text_encoder_by_name():
    from types import SimpleNamespace

    from semid.embeddings.encoders import resolve_encoder
    from semid.generative.retriever import text_encoder_location

    here = SimpleNamespace(
        config=SimpleNamespace(text_encoder_path=".", text_encoder_name="minilm")
    )
    assert text_encoder_location(here) == "."  # the trained-with folder exists: used as is
    moved = SimpleNamespace(
        config=SimpleNamespace(text_encoder_path="/nowhere/minilm", text_encoder_name="minilm")
    )
    assert text_encoder_location(moved) == resolve_encoder("minilm")
    unnamed = SimpleNamespace(config=SimpleNamespace(text_encoder_path="/nowhere/tuned"))
    assert text_encoder_location(unnamed) == "/nowhere/tuned"  # fails loudly when loaded


def test_text_precision_resolves_auto_by_the_cpu(monkeypatch):
    import semid.generative.model as model_module
    from semid.generative.textmodel import text_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert (text_precision("fp32"), text_precision("bf16")) == ("fp32", "bf16")
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: False)
    assert text_precision("auto") == "fp32"  # emulated bf16 would be slower, not faster
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: True)
    assert text_precision("auto") == "bf16"
    with pytest.raises(ValueError, match="text precision 'fp16': expected auto, fp32 or bf16"):
        text_precision("fp16")


def test_bf16_text_vectors_round_but_keep_their_direction():
    from semid.embeddings.encoders import resolve_encoder
    from semid.generative.textmodel import FrozenTextEncoder

    texts = ["a heartwarming animated movie about toys", "Heat (1995)", "space war drama"]
    fp32 = FrozenTextEncoder(resolve_encoder("minilm"), precision="fp32")
    exact = fp32.encode(texts)
    fp32.precision = "bf16"  # the same weights, under bf16 autocast
    rounded = fp32.encode(texts)
    assert not np.array_equal(exact, rounded)  # autocast did run in bf16
    assert np.allclose(np.linalg.norm(rounded, axis=1), 1.0, atol=1e-5)
    assert (exact * rounded).sum(1).min() > 0.999


def test_retriever_embeds_queries_at_the_precision_of_training(monkeypatch):
    import semid.generative.retriever as retriever_module

    made = []

    class Recorder:
        dim = 8

        def __init__(self, path, batch_size=256, precision="fp32"):
            made.append(precision)

    monkeypatch.setattr(retriever_module, "FrozenTextEncoder", Recorder)
    cards = [4, 4, 1]
    vocab = vocab_for(cards)
    model = build_model(TEXT_TINY, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    codes = {"item": codes_for(10, cards)}
    GenerativeRetriever(model, vocab, codes, 16, 3)  # trained before the knob: fp32
    model.config.text_precision = "bf16"
    GenerativeRetriever(model, vocab, codes, 16, 3)
    assert made == ["fp32", "bf16"]


def test_indexing_block_is_where_training_texts_put_each_variant():
    """indexing_block names the slice of training_texts holding one variant's inputs, for any
    order of indexing_variants (the neighbourhood copies read the item-text block from it)."""
    import polars as pl

    from semid.config import load_config
    from semid.stages.model import indexing_block, indexing_texts, training_texts

    items = pl.DataFrame(
        {"text": ["a. Drama", "b. Comedy", "c. Horror"], "title": ["A", "B", "C"],
         "year": [1990, None, 2001]}
    )  # fmt: skip

    class Splits:
        def train_queries(self):
            return pl.DataFrame({"query": ["q1", "q2"], "item_idx": [2, 0]})

    for order in (["text", "title", "title_year"], ["title_year", "text"]):
        cfg = load_config("smoke", overrides=[f"train.indexing_variants=[{','.join(order)}]"])
        texts, targets = training_texts(items, Splits(), cfg)
        assert texts[:2] == ["q1", "q2"] and targets[:2] == [2, 0]
        for variant in order:
            block = indexing_block(cfg, 2, items.height, variant)
            assert texts[block] == indexing_texts(items, variant)
            assert targets[block] == [0, 1, 2]
    assert texts[indexing_block(cfg, 2, 3, "title_year")] == ["A (1990)", "B", "C (2001)"]
    with pytest.raises(ValueError, match="'title' is not among the training texts"):
        indexing_block(cfg, 2, 3, "title")


class DigitBlindTextEncoder(HashTextEncoder):
    """A stand-in sentence encoder that cannot see digits: "space 2" and "space 4" get one
    vector (as a pooled sentence vector nearly does for "Rocky II" and "Rocky IV")."""

    def encode(self, texts, progress=False):
        return super().encode(["".join(c for c in t if not c.isdigit()) for t in texts])


def lexical_vocab(cards, texts):
    tok = train_text_tokenizer(list(texts) * 20, 500)
    return SemanticVocab.build(tok, {"item": cards}, {"search": "item", "rec": "item"})


def test_lexical_path_puts_the_first_word_pieces_after_the_vector_slots():
    cards = [4, 4, 1]
    codes = codes_for(6, cards)
    texts = ["space thriller 2", "romance"]
    vocab = lexical_vocab(cards, texts)
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3, text_slots=2, text_tokens=2)
    pieces = [vocab.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len(pieces[0]) > 2  # truncated below
    head, unk, eos = vocab.task_token("search"), vocab.unk_id, vocab.eos_id
    rows = encoder.search(texts)
    assert rows == [[head, unk, unk, *pieces[0][:2], eos], [head, unk, unk, *pieces[1], eos]]
    assert (
        InputEncoder(vocab, {"item": codes}, 16, 3, text_slots=2).search(texts)
        == [[head, unk, unk, eos]] * 2
    )
    cfg = TEXT_TINY.model_copy(update={"text_tokens": 2})
    model = build_model(cfg, len(vocab), vocab.pad_id, vocab.eos_id, "fake", 8)
    ids = torch.tensor([rows[0]])
    vectors = torch.from_numpy(HashTextEncoder().encode(texts[:1]))
    embeds = model.embed_inputs(ids, text_vectors=vectors, text_rows=torch.arange(1))
    table = model.shared.weight
    assert torch.allclose(embeds[0, 3:5], table[torch.tensor(pieces[0][:2])])
    assert not torch.allclose(embeds[0, 1], table[unk])  # slots hold the projected vector


def test_config_keys_stay_without_a_lexical_path():
    assert "text_tokens" not in ModelConfig().model_dump()
    assert ModelConfig(text_tokens=8).model_dump()["text_tokens"] == 8


@pytest.mark.parametrize("text_tokens", [0, 4])
def test_lexical_path_tells_apart_texts_with_one_vector(tmp_path, text_tokens):
    """Six texts, three vectors: only word pieces can tell "space 1" from "space 2"."""
    from semid.generative.model import load_model

    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = codes_for(6, cards)
    texts = [f"{word} {n}" for word in ("space", "romance") for n in (1, 2, 3)]
    vocab = lexical_vocab(cards, texts)
    text = DigitBlindTextEncoder()
    encoder = InputEncoder(
        vocab, {"item": codes}, 16, 3, text_slots=2, pooled_history=True, text_tokens=text_tokens
    )
    examples = build_examples(encoder, texts, list(range(6)), [], [], text.encode(texts))
    cfg = TEXT_TINY.model_copy(update={"text_tokens": text_tokens})
    model = build_model(cfg, len(vocab), vocab.pad_id, vocab.eos_id, "fake", text.dim)
    memorise(model, examples, vocab, level_softmax=True)
    retriever = GenerativeRetriever(
        model, vocab, {"item": codes}, 16, 3, level_softmax=True, text_encoder=text
    )
    retriever.save(tmp_path / "m")
    loaded = GenerativeRetriever(
        load_model(tmp_path / "m"),
        vocab,
        {"item": codes},
        16,
        3,
        level_softmax=True,
        text_encoder=text,
    )
    hits = int((loaded.search(texts, k=1)[0][:, 0] == np.arange(6)).sum())
    # the vector alone: one item per vector at best; with the word pieces: all six
    assert hits == 6 if text_tokens else hits <= 2
