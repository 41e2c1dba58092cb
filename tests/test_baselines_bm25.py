"""BM25 search baseline."""

from __future__ import annotations

import numpy as np

from semid.evaluation.bm25 import BM25Search

TEXTS = [
    "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy.",
    "Jumanji (1995). Genres: Adventure, Children, Fantasy.",
    "Heat (1995). Genres: Action, Crime, Thriller.",
    "Sudden Death (1995). Genres: Action.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
]


def test_exact_title_query_finds_its_item_first():
    bm25 = BM25Search().fit(TEXTS)
    items, scores = bm25.search(["Sudden Death", "heat", "goldeneye thriller"], k=3)
    assert items.shape == scores.shape == (3, 3) and items.dtype == np.int64
    assert items[:, 0].tolist() == [3, 2, 4]
    assert np.all(np.diff(scores, axis=1) <= 0)  # sorted best first
    assert scores[0, 0] > scores[0, 1]


def test_unknown_words_and_large_k_are_safe():
    bm25 = BM25Search(k1=1.2, b=0.5).fit(TEXTS)
    items, scores = bm25.search(["zzzz qqqq", "", "jumanji"], k=8)
    assert items.shape == (3, 8)
    assert np.all(scores[0, :5] == 0)  # no matching word: nothing scores
    assert items[2, 0] == 1
    assert items[:, 5:].tolist() == [[-1] * 3] * 3 and np.all(np.isinf(scores[:, 5:]))
    empty_items, _ = bm25.search([], k=2)
    assert empty_items.shape == (0, 2)
