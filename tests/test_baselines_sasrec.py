"""SASRec recommendation baseline."""

from __future__ import annotations

import numpy as np
import pytest

from semid.errors import DataError
from semid.evaluation.sasrec import SASRec, training_windows


def test_training_windows_cover_long_sequences_from_the_end():
    assert training_windows([[1, 2, 3, 4, 5, 6]], max_len=3) == [[3, 4, 5, 6], [1, 2, 3]]
    assert training_windows([[7], [8, 9]], max_len=3) == [[8, 9]]


def test_learns_item_i_is_followed_by_i_plus_1():
    n_items = 30
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_items - 8, size=60)
    sequences = [list(range(s, s + int(rng.integers(3, 8)))) for s in starts]
    model = SASRec(
        max_len=8, dim=32, epochs=30, batch_size=60, lr=1e-2, dropout=0.0, progress=False
    ).fit(sequences, n_items)
    histories = [[i - 2, i - 1, i] for i in range(2, n_items - 1)]
    top1 = model.recommend(histories, k=1)[:, 0]
    accuracy = np.mean(top1 == np.array([h[-1] + 1 for h in histories]))
    assert accuracy > 0.8  # chance is 1/30
    assert model.loss_curve_[-1] < model.loss_curve_[0]


def test_recommend_excludes_seen_and_is_seeded():
    sequences = [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]] * 5
    kwargs = dict(max_len=4, dim=16, epochs=3, progress=False, random_state=3)
    a = SASRec(**kwargs).fit(sequences, 6)
    b = SASRec(**kwargs).fit(sequences, 6)
    np.testing.assert_array_equal(a.scores([[0, 1]]), b.scores([[0, 1]]))
    top = a.recommend([[0, 1, 2], []], k=6, exclude_seen=True)
    assert set(top[0, :3]) == {3, 4, 5} and top.shape == (2, 6)
    bce = SASRec(loss="bce", **kwargs).fit(sequences, 6)
    assert bce.recommend([[0, 1]], k=2).shape == (1, 2)


def test_rejects_bad_items():
    with pytest.raises(DataError, match="outside 0..2"):
        SASRec(progress=False).fit([[0, 5]], 3)
