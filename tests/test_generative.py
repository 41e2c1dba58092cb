import numpy as np
import pytest
import torch

from semid.errors import ConfigError
from semid.generative.config import ModelConfig, TrainConfig
from semid.generative.examples import InputEncoder, build_examples, rec_windows
from semid.generative.model import build_model
from semid.generative.retriever import GenerativeRetriever
from semid.generative.train import train_generator
from semid.generative.trie import PrefixTrie
from semid.generative.vocab import SemanticVocab, train_text_tokenizer

TINY = ModelConfig(
    backbone="t5-scratch",
    d_model=32,
    d_ff=64,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    d_kv=16,
    dropout=0.0,
)


def tiny_vocab(cards, task_space=None):
    texts = ["a funny movie about toys", "a dark thriller in space", "romance in paris"] * 20
    tok = train_text_tokenizer(texts, 500)
    if task_space is None:
        task_space = {"search": "item", "rec": "item"}
    return SemanticVocab.build(tok, cards, task_space)


_VOCAB_IN_A_FRESH_PROCESS = """
import json, sys
import polars as pl
from semid.generative.vocab import train_text_tokenizer
titles = pl.read_csv(sys.argv[1])["title"].to_list()
tok = train_text_tokenizer(titles, 3000)
print(json.dumps(sorted(tok.get_vocab().items())))
"""


def test_word_piece_vocabulary_is_the_same_in_every_process():
    # tokenizers' trainer alone numbered ##-pieces in hash-map order: 3 fresh processes on these
    # titles gave 3 different vocabularies (huggingface/tokenizers#1794)
    import subprocess
    import sys
    from pathlib import Path

    movies = Path(__file__).resolve().parents[1] / "data" / "ml-latest-small" / "movies.csv"
    runs = [
        subprocess.run(
            [sys.executable, "-c", _VOCAB_IN_A_FRESH_PROCESS, str(movies)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    tok = train_text_tokenizer(["toy story", "a toy"], 50)
    assert [tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2]
    assert set(tok.all_special_tokens) == {"<pad>", "</s>", "<unk>"}
    assert tok.convert_ids_to_tokens(tok("Toy  STORY a")["input_ids"]) == ["toy", "story", "a"]


def test_trie_masks_and_steps():
    codes = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0], [2, 3, 0]])
    trie = PrefixTrie(codes, [4, 4, 2])
    assert trie.allowed_mask(torch.tensor([0]), 0).tolist() == [[True, False, True, False]]
    nodes = trie.step(torch.tensor([0, 0]), torch.tensor([0, 2]), 0)
    assert trie.allowed_mask(nodes, 1).tolist() == [
        [False, True, False, False],
        [True, False, False, True],
    ]
    assert trie.contains(np.array([[0, 1, 1], [1, 1, 1], [2, 3, 1]])).tolist() == [
        True,
        False,
        False,
    ]


def test_trie_rejects_out_of_range_codes():
    with pytest.raises(ConfigError, match="cardinality"):
        PrefixTrie(np.array([[0, 5]]), [4, 4])


def test_trie_without_disambiguation_counts_unreachable_items():
    trie = PrefixTrie(np.array([[0, 1], [0, 1], [1, 0]]), [2, 2])
    assert trie.n_unreachable == 1
    assert sorted(trie.leaf_item.tolist()) == [0, 2]


def random_codes(n, cards, seed=0):
    rng = np.random.default_rng(seed)
    high = np.asarray(cards[:-1])
    base = np.unique(rng.integers(0, high, (n * 3, len(high))), axis=0)
    base = base[rng.permutation(len(base))[:n]]
    return np.c_[base, np.zeros(len(base), dtype=np.int64)]


@pytest.mark.parametrize("beam", [1, 7, 40])
def test_constrained_decoding_only_emits_valid_ids(beam):
    torch.manual_seed(0)
    cards = [8, 8, 1]
    codes = random_codes(30, cards)
    vocab = tiny_vocab({"item": cards})
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 5, precision="fp32")
    items, scores = retriever.search(["a funny movie", "space thriller", "x"], k=beam)
    rec_items, _ = retriever.recommend([[0, 1, 2], [5]], k=beam)
    for out in (items, rec_items):
        assert out.shape[1] == beam
        valid = out[out >= 0]
        assert ((valid >= 0) & (valid < len(codes))).all()
        for row in out:  # no duplicates among returned items
            got = row[row >= 0]
            assert len(set(got.tolist())) == len(got)
            assert len(got) == min(beam, len(codes))
    finite = scores[np.isfinite(scores)]
    assert (np.diff(scores[0][np.isfinite(scores[0])]) <= 1e-6).all()
    assert (finite <= 0).all()


def test_allowed_items_filter_is_applied_inside_the_trie():
    torch.manual_seed(0)
    cards = [8, 8, 1]
    codes = random_codes(30, cards)
    vocab = tiny_vocab({"item": cards})
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 5, precision="fp32")
    allowed = np.array([3, 7, 11, 19])
    items, _ = retriever.search(["a funny movie"], k=10, allowed_items=allowed)
    got = items[0][items[0] >= 0]
    assert sorted(got.tolist()) == allowed.tolist()


def test_separate_spaces_never_cross():
    torch.manual_seed(0)
    search_codes = random_codes(20, [4, 8, 1], seed=1)
    rec_codes = random_codes(20, [8, 4, 1], seed=2)
    vocab = tiny_vocab({"search": [4, 8, 1], "rec": [8, 4, 1]}, {"search": "search", "rec": "rec"})
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    retriever = GenerativeRetriever(
        model, vocab, {"search": search_codes, "rec": rec_codes}, 16, 5, precision="fp32"
    )
    search_space, rec_space = vocab.spaces["search"], vocab.spaces["rec"]
    assert set(range(search_space.offsets[0], search_space.offsets[-1] + 1)).isdisjoint(
        range(rec_space.offsets[0], rec_space.offsets[-1] + 1)
    )
    items, _ = retriever.search(["a funny movie"], k=20)
    assert sorted(items[0].tolist()) == list(range(20))


def test_rec_windows_use_only_the_prefix():
    histories, targets = rec_windows([[1, 2, 3, 4]], max_per_user=None)
    assert histories == [[1], [1, 2], [1, 2, 3]]
    assert targets == [2, 3, 4]
    histories, targets = rec_windows([[1, 2, 3, 4]], max_per_user=1)
    assert histories == [[1, 2, 3]] and targets == [4]


def test_tiny_model_learns_to_retrieve_its_training_items():
    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = random_codes(12, cards)
    vocab = tiny_vocab({"item": cards})
    encoder = InputEncoder(vocab, {"item": codes}, 16, 3)
    texts = ["a funny movie about toys", "a dark thriller in space", "romance in paris"]
    examples = build_examples(encoder, texts, [0, 5, 9], [[0], [5]], [5, 9])
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    cfg = TrainConfig(epochs=200, batch_size=8, lr=1e-2, warmup_ratio=0.0, precision="fp32")
    facts = train_generator(model, examples, cfg, vocab.pad_id, torch.device("cpu"), seed=0)
    assert facts["loss_curve"][-1]["loss"] < facts["loss_curve"][0]["loss"]
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 3, precision="fp32")
    items, _ = retriever.search(texts, k=1)
    assert items[:, 0].tolist() == [0, 5, 9]
    rec, _ = retriever.recommend([[0], [5]], k=1)
    assert rec[:, 0].tolist() == [5, 9]


def test_retriever_round_trips_through_disk(tmp_path):
    torch.manual_seed(0)
    cards = [4, 4, 1]
    codes = random_codes(10, cards)
    vocab = tiny_vocab({"item": cards})
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 16, 3, precision="fp32")
    before, scores = retriever.search(["a funny movie"], k=5)
    retriever.save(tmp_path / "m")
    loaded = GenerativeRetriever.load(tmp_path / "m", precision="fp32")
    after, scores2 = loaded.search(["a funny movie"], k=5)
    assert before.tolist() == after.tolist()
    np.testing.assert_allclose(scores, scores2, rtol=1e-5)
    assert loaded.vocab.id_string("item", codes[0]).startswith("<a_")


def test_parameter_groups_put_pretrained_weights_at_their_own_lr():
    """train.pretrained_lr moves the parameters under the model's pretrained prefix only;
    weight decay stays on weight matrices; without the knob (or the prefix) one lr for all."""
    from semid.generative.config import TrainConfig
    from semid.generative.train import parameter_groups

    model = torch.nn.Module()
    model.encoder = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    model.decoder = torch.nn.Linear(3, 2)

    def summary(cfg):
        names = {id(p): n for n, p in model.named_parameters()}
        return sorted(
            (g["lr"], g["weight_decay"], tuple(sorted(names[id(p)] for p in g["params"])))
            for g in parameter_groups(model, cfg)
        )

    plain = TrainConfig(lr=1e-3, weight_decay=0.1)
    assert summary(plain) == [
        (1e-3, 0.0, ("decoder.bias", "encoder.0.bias", "encoder.1.bias", "encoder.1.weight")),
        (1e-3, 0.1, ("decoder.weight", "encoder.0.weight")),
    ]
    split = TrainConfig(lr=1e-3, weight_decay=0.1, pretrained_lr=5e-5)
    assert summary(split) == summary(plain)  # no pretrained prefix: nothing is pretrained
    model.pretrained_prefix = "encoder."
    assert summary(split) == [
        (5e-5, 0.0, ("encoder.0.bias", "encoder.1.bias", "encoder.1.weight")),
        (5e-5, 0.1, ("encoder.0.weight",)),
        (1e-3, 0.0, ("decoder.bias",)),
        (1e-3, 0.1, ("decoder.weight",)),
    ]
    assert "pretrained_lr" not in plain.model_dump()  # unset: keys as before the knob
    assert split.model_dump()["pretrained_lr"] == 5e-5
