"""Query ambiguity shares and the oracle ceiling on Recall@K, computed by hand."""

from __future__ import annotations

import polars as pl
import pytest

from semid.data.ambiguity import query_ambiguity
from semid.errors import DataError


def frame(rows: list[tuple[str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"query": [r[0] for r in rows], "item_idx": [r[1] for r in rows],
         "split": [r[2] for r in rows]}
    )  # fmt: skip


ROWS = [
    ("a drama", 0, "test"),  # text shared by items 0, 1, 2; item 1 has it in train
    ("A   Drama ", 1, "train"),
    ("a drama", 2, "test"),
    ("toy story", 0, "test"),  # unique: m = 1
    ("toy story", 0, "train"),  # the same item's own training query does not count
    ("space film", 3, "test"),  # shared with item 4's test query only (not a training one)
    ("space film", 4, "test"),
    ("space film", 4, "valid"),
]


def test_shares_items_per_text_and_ceiling_by_hand():
    out = query_ambiguity(frame(ROWS), "test", ks=(1, 2, 5))
    # test queries: a drama/0 (m=3), a drama/2 (m=3), toy story/0 (m=1), space film/3 (m=2),
    # space film/4 (m=2)
    assert out["queries"] == 5
    assert out["shared"] == pytest.approx(4 / 5)
    assert out["shared_with_train"] == pytest.approx(2 / 5)  # the two "a drama" queries
    assert out["items_per_text_median"] == 2.0
    assert out["items_per_text_mean"] == pytest.approx((3 + 3 + 1 + 2 + 2) / 5)
    assert out["max_items_per_text"] == 3
    assert out["ceiling"]["recall@1"] == pytest.approx((1 / 3 + 1 / 3 + 1 + 1 / 2 + 1 / 2) / 5)
    assert out["ceiling"]["recall@2"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1 + 1) / 5)
    assert out["ceiling"]["recall@5"] == 1.0


def test_any_held_out_split_and_empty_set():
    out = query_ambiguity(frame(ROWS), "valid", ks=(1,))
    assert out["queries"] == 1 and out["shared"] == 1.0 and out["shared_with_train"] == 0.0
    assert out["ceiling"]["recall@1"] == pytest.approx(1 / 2)
    empty = query_ambiguity(frame(ROWS), "nothing", ks=(1,))
    assert empty["queries"] == 0 and empty["shared"] is None
    assert empty["ceiling"] == {"recall@1": None}


def test_bad_input_is_one_clear_error():
    with pytest.raises(DataError, match="^queries: missing column\\(s\\) split$"):
        query_ambiguity(frame(ROWS).drop("split"))
    with pytest.raises(DataError, match="cut-offs must be positive integers, got 0"):
        query_ambiguity(frame(ROWS), ks=(0,))
