"""Seen-item exclusion: one rule for every non-generative method (hand-computed cases)."""

from types import SimpleNamespace

import numpy as np
import pytest

from semid.config import RunConfig
from semid.embeddings.enmf import ENMF
from semid.evaluation.baselines import run_baselines, run_reference
from semid.evaluation.evaluate import EvalInputs
from semid.evaluation.reference import knn, popularity_recommend
from semid.evaluation.sasrec import SASRec
from semid.evaluation.seen import fetch_size, filter_seen, mask_seen, topk_unseen


def test_mask_and_topk_skip_history_and_keep_k():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    histories = [[0, 2], [4, 3, 4]]
    masked = mask_seen(scores, histories)
    assert np.isneginf(masked[0, [0, 2]]).all() and np.isneginf(masked[1, [3, 4]]).all()
    assert scores[0, 0] == pytest.approx(0.9)  # the input is untouched
    assert topk_unseen(scores, histories, 3).tolist() == [[1, 3, 4], [2, 1, 0]]
    assert topk_unseen(scores, histories, 3, exclude_seen=False).tolist() == [
        [0, 1, 2],
        [4, 3, 2],
    ]
    # 5 items, 2 seen: only 3 unseen exist, the rest is padding, never a seen item
    assert topk_unseen(scores, histories, 5)[0].tolist() == [1, 3, 4, -1, -1]


def test_filter_seen_keeps_order_and_fetch_size_covers_the_longest_history():
    cand = np.array([[3, 1, 4, 0, 2], [2, 0, -1, 1, 3]])
    assert filter_seen(cand, [[1, 4], []], 2).tolist() == [[3, 0], [2, 0]]
    assert filter_seen(cand, [[3, 1, 4, 0], [2, 0, 1]], 2).tolist() == [[2, -1], [3, -1]]
    assert filter_seen(cand, [[3], [2]], 2, exclude_seen=False).tolist() == [[3, 1], [2, 0]]
    assert fetch_size([[1, 1, 2], [5]], k=3, n_items=10, exclude_seen=True) == 5
    assert fetch_size([[1, 2]], k=9, n_items=10, exclude_seen=True) == 10
    assert fetch_size([[1, 2]], k=3, n_items=10, exclude_seen=False) == 3


def test_popularity_returns_a_full_unseen_top_k():
    train = [[0, 0, 1], [0, 2], [1]]  # counts 0:3, 1:2, 2:1, 3:0
    top = popularity_recommend(train, [[0], [1, 2], [0, 1, 2]], n_items=4, k=2)
    assert top.tolist() == [[1, 2], [0, 3], [3, -1]]
    top = popularity_recommend(train, [[0]], n_items=4, k=2, exclude_seen=False)
    assert top.tolist() == [[0, 1]]


def test_knn_over_fetches_then_drops_the_history():
    # cosine to the query (1, 0): item 0 > 1 > 2 > 3
    items = np.array([[1, 0], [1, 0.2], [1, 1], [0, 1]], dtype=np.float32)
    query = np.array([[1, 0], [1, 0]], dtype=np.float32)
    assert knn(items, query, 2).tolist() == [[0, 1], [0, 1]]
    assert knn(items, query, 2, histories=[[0, 1], [1]]).tolist() == [[2, 3], [0, 2]]


def test_sasrec_and_enmf_use_the_same_rule():
    sequences = [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]] * 3
    sas = SASRec(max_len=4, dim=8, epochs=1, progress=False).fit(sequences, 6)
    histories = [[0, 1, 2], [5, 4, 3, 2, 1]]
    expected = topk_unseen(sas.scores(histories), histories, 3)
    got = sas.recommend(histories, 3, exclude_seen=True)
    np.testing.assert_array_equal(got, expected)
    assert not set(got[0]) & {0, 1, 2} and got[1].tolist() == [0, -1, -1]

    mf = ENMF(dim=4, epochs=2, progress=False).fit(sequences[:3], 6)
    ranked = mf.recommend([0, 1], 4, histories=[[0, 1, 2, 3], []])
    np.testing.assert_array_equal(ranked[1], np.argsort(-mf.score([1])[0], kind="stable")[:4])
    assert sorted(ranked[0, :2]) == [4, 5] and ranked[0, 2:].tolist() == [-1, -1]


class _Artifact:
    """An embedding artifact stand-in: item space and user-vector scores (hand-made)."""

    def __init__(self) -> None:
        self.spaces = {"item": np.eye(4, dtype=np.float32) + 0.1}

    def encode_queries(self, texts):
        return None

    def user_item_scores(self, user_ids):
        return np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def _inputs() -> EvalInputs:
    return EvalInputs(
        queries=[],
        query_targets=np.zeros(0, np.int64),
        user_ids=np.array([10, 11]),
        histories=[[0, 1], [3]],
        rec_targets=np.array([2, 2]),
    )


@pytest.mark.parametrize("exclude", [True, False])
def test_reference_methods_follow_the_setting(exclude):
    cfg = RunConfig.model_validate({"eval": {"exclude_seen": exclude, "beam_size": 2}})
    metrics, frames = run_reference(_Artifact(), _inputs(), cfg)
    predicted = {(f["method"][0]): f["predicted"].to_list() for f in frames}
    if exclude:
        assert predicted["dense-user"] == [[2, 3], [2, 1]]
        assert predicted["dense"][1][0] != 3 and predicted["dense"][0][0] not in (0, 1)
        assert metrics["dense-user"]["rec"]["recall@10"] == 1.0
    else:
        assert predicted["dense-user"] == [[0, 1], [3, 2]]
        assert predicted["dense"][1][0] == 3


def test_baselines_report_one_popularity_row_under_the_rule():
    cfg = RunConfig.model_validate({"eval": {"beam_size": 2, "baselines": ["popularity"]}})
    assert cfg.eval.exclude_seen  # on by default
    dataset = SimpleNamespace(n_items=4)
    train = [[0, 0, 1], [0, 2], [1]]
    splits = SimpleNamespace(sequences={"train": SimpleNamespace(to_list=lambda: train)})
    metrics, frames = run_baselines(dataset, splits, _inputs(), cfg)
    assert list(metrics) == ["popularity"]
    assert frames[0]["predicted"].to_list() == [[2, 3], [0, 1]]


def test_als_recommend_uses_the_same_rule():
    pytest.importorskip("implicit")
    from semid.embeddings.als import ImplicitMF

    sequences = [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    mf = ImplicitMF(dim=3, epochs=2, progress=False).fit(sequences, 6)
    histories = [[0, 1, 2, 3], [1]]
    np.testing.assert_array_equal(
        mf.recommend([0, 1], 3, histories), topk_unseen(mf.score([0, 1]), histories, 3)
    )
    assert mf.recommend([0], 3, [[0, 1, 2, 3]])[0, 2] == -1
