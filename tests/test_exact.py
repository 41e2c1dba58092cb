import numpy as np
import pytest
import torch
from serving_toy import N_ITEMS, TINY, one_thread, toy_run

from semid.errors import DataError
from semid.generative.exact import (
    exact_rank,
    exact_recommend,
    exact_search,
    score_all,
    score_candidates,
)
from semid.generative.model import build_model
from semid.generative.retriever import GenerativeRetriever
from semid.generative.vocab import SemanticVocab, train_text_tokenizer

QUERIES = ["toy story", "a comedy movie", "a horror movie from the eighties", "romance"]
HISTORIES = [[0], [5, 6], [20, 21, 22]]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    folder = toy_run(tmp_path_factory.mktemp("toy")) / "model"
    return GenerativeRetriever.load(folder, precision="fp32")


def test_beam_scores_are_the_exact_scores_of_the_items_it_returns(retriever):
    items, scores = retriever.search(QUERIES, k=5)
    candidates, exact = score_all(retriever, retriever.inputs.search(QUERIES), "search")
    column = {int(item): col for col, item in enumerate(candidates)}
    for row in range(len(QUERIES)):
        cols = [column[int(i)] for i in items[row]]
        np.testing.assert_allclose(scores[row], exact[row, cols], atol=1e-4)


def test_exact_top1_is_at_least_as_likely_as_beam_top1(retriever):
    for beam in (1, 3):
        items, scores = retriever.search(QUERIES, k=beam)
        _, best = exact_search(retriever, QUERIES, k=1)
        assert (best[:, 0] >= scores[:, 0] - 1e-5).all()
        rec_items, rec_scores = retriever.recommend(HISTORIES, k=beam)
        _, rec_best = exact_recommend(retriever, HISTORIES, k=1)
        assert (rec_best[:, 0] >= rec_scores[:, 0] - 1e-5).all()


def test_a_beam_as_wide_as_the_catalogue_is_the_exact_ranking(retriever):
    # 48 beams cover every node of every level, so nothing is pruned.
    beam_items, beam_scores = retriever.search(QUERIES, k=N_ITEMS)
    exact_items, exact_scores = exact_search(retriever, QUERIES, k=N_ITEMS)
    assert beam_items.tolist() == exact_items.tolist()
    np.testing.assert_allclose(beam_scores, exact_scores, atol=1e-4)
    assert sorted(exact_items[0].tolist()) == list(range(N_ITEMS))


def test_exact_ranking_respects_the_allowed_items_and_pads(retriever):
    allowed = np.array([3, 9, 17, 40])
    items, scores = exact_search(retriever, QUERIES[:2], k=6, allowed_items=allowed)
    assert items.shape == (2, 6)
    for row in items:
        assert sorted(row[:4].tolist()) == allowed.tolist()
        assert row[4:].tolist() == [-1, -1]
    assert np.isneginf(scores[:, 4:]).all()
    assert (np.diff(scores[:, :4], axis=1) <= 0).all()


def test_chunking_does_not_change_scores(retriever):
    tokens = retriever.inputs.history(HISTORIES)
    _, whole = score_all(retriever, tokens, "rec", batch_size=8)
    candidates, chunked = score_all(retriever, tokens, "rec", batch_size=2)
    assert len(candidates) == N_ITEMS
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    tiny_chunks = score_candidates_in_chunks_of(retriever, tokens[:1], max_rows=5)
    np.testing.assert_allclose(whole[:1], tiny_chunks[:, candidates], atol=1e-5)


def score_candidates_in_chunks_of(retriever, tokens, max_rows):
    from semid.generative.examples import pad

    ids, _ = pad(tokens, retriever.vocab.pad_id)
    input_ids = torch.from_numpy(ids.astype(np.int64))
    space = retriever.vocab.space_for("rec")
    id_tokens = torch.from_numpy(space.tokens(retriever.id_codes["item"]))
    start = retriever.model.config.decoder_start_token_id
    mask = input_ids != retriever.vocab.pad_id
    return score_candidates(retriever.model, input_ids, mask, id_tokens, start, max_rows).numpy()


def test_items_sharing_a_full_id_are_scored_once_like_in_beam_search():
    torch.manual_seed(0)
    tok = train_text_tokenizer(["a funny movie", "space thriller"] * 20, 500)
    vocab = SemanticVocab.build(tok, {"item": [2, 2]}, {"search": "item", "rec": "item"})
    model = build_model(TINY, len(vocab), vocab.pad_id, vocab.eos_id)
    codes = np.array([[0, 1], [0, 1], [1, 0]])
    retriever = GenerativeRetriever(model, vocab, {"item": codes}, 8, 2, precision="fp32")
    candidates, scores = score_all(retriever, retriever.inputs.search(["funny"]), "search")
    assert sorted(candidates.tolist()) == [0, 2]
    items, _ = exact_rank(retriever, retriever.inputs.search(["funny"]), "search", k=3)
    assert sorted(items[0, :2].tolist()) == [0, 2] and items[0, 2] == -1


def test_cold_items_get_an_equal_share_of_their_prefix(retriever):
    # Items 0, 1, 2 share the prefix (0, 0) and use all 3 disambiguation tokens, so the share
    # of a cold item 2 is log((p0 + p1 + p2) / 3).
    tokens = retriever.inputs.search(QUERIES)
    candidates, plain = score_all(retriever, tokens, "search")
    _, cold = score_all(retriever, tokens, "search", cold_items=np.array([2]))
    column = {int(item): col for col, item in enumerate(candidates)}
    group = plain[:, [column[0], column[1], column[2]]]
    expected = np.log(np.exp(group.astype(np.float64)).sum(axis=1) / 3)
    np.testing.assert_allclose(cold[:, column[2]], expected, atol=1e-4)
    others = [c for c in range(len(candidates)) if c != column[2]]
    np.testing.assert_allclose(cold[:, others], plain[:, others], atol=1e-6)


def test_k_must_be_positive(retriever):
    with pytest.raises(DataError, match="k=0"):
        exact_search(retriever, QUERIES, k=0)
