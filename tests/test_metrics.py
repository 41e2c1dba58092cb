import math

import numpy as np
import pytest

from semid.evaluation.metrics import metric_table, ndcg_at_k, recall_at_k, target_ranks
from semid.evaluation.reference import knn, popularity_recommend


def test_ranks_recall_ndcg_hand_computed():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 8, 4], [0, 4, 6]])
    targets = np.array([3, 4, 7, 6])
    ranks = target_ranks(ranked, targets)
    assert ranks.tolist() == [1, -1, 0, 2]
    assert recall_at_k(ranks, 1) == pytest.approx(0.25)
    assert recall_at_k(ranks, 2) == pytest.approx(0.5)
    assert recall_at_k(ranks, 3) == pytest.approx(0.75)
    expected = (1 / math.log2(3) + 0 + 1 + 1 / math.log2(4)) / 4
    assert ndcg_at_k(ranks, 3) == pytest.approx(expected)
    table = metric_table(ranks, [1, 3])
    assert table["recall@1"] == pytest.approx(0.25)
    assert table["ndcg@1"] == pytest.approx(0.25)
    assert table["n"] == 4


def test_padding_minus_one_is_never_a_hit():
    ranks = target_ranks(np.array([[-1, -1]]), np.array([0]))
    assert ranks.tolist() == [-1]


def test_popularity_excludes_seen_items_when_asked():
    train = [[0, 0, 1], [0, 2], [1]]
    top = popularity_recommend(train, [[0], [1, 2]], n_items=4, k=2, exclude_seen=True)
    assert top.tolist() == [[1, 2], [0, 3]]
    top = popularity_recommend(train, [[0]], n_items=4, k=2, exclude_seen=False)
    assert top.tolist() == [[0, 1]]


def test_knn_is_cosine():
    items = np.array([[1.0, 0.0], [10.0, 10.0], [0.0, 1.0]], dtype=np.float32)
    assert knn(items, np.array([[0.9, 1.1]], dtype=np.float32), 2)[0].tolist() == [1, 2]


@pytest.mark.filterwarnings("ignore::Warning")
def test_recall_and_ndcg_agree_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    n, k, n_items = 200, 30, 80
    ranked = np.stack([rng.permutation(n_items)[:k] for _ in range(n)])
    targets = rng.integers(0, n_items, n)  # about 60% of the targets are missed
    ranks = target_ranks(ranked, targets)
    assert (ranks == -1).any() and (ranks >= 0).any()
    qrels = ranx.Qrels({f"q{i}": {f"d{targets[i]}": 1} for i in range(n)})
    run = ranx.Run(
        {f"q{i}": {f"d{d}": float(k - j) for j, d in enumerate(ranked[i])} for i in range(n)}
    )
    for cut in (1, 10, 30):
        expected = ranx.evaluate(qrels, run, [f"recall@{cut}", f"ndcg@{cut}"])
        assert recall_at_k(ranks, cut) == pytest.approx(expected[f"recall@{cut}"], abs=1e-12)
        assert ndcg_at_k(ranks, cut) == pytest.approx(expected[f"ndcg@{cut}"], abs=1e-12)
