"""Evaluation sets: validation and test in one run, real and title queries, scored per set."""

import numpy as np
import polars as pl
import pytest

from semid.data.dataset import Splits
from semid.evaluation.config import EvalConfig
from semid.evaluation.evaluate import eval_inputs, held_out_split, score_sets


def tiny_splits() -> Splits:
    sequences = pl.DataFrame(
        {
            "user_id": [1, 2],
            "train": [[0, 1], [2, 3, 4]],
            "valid": [5, 6],
            "test": [7, 8],
        },
        schema_overrides={"train": pl.List(pl.Int32), "valid": pl.Int32, "test": pl.Int32},
    )
    queries = pl.DataFrame(
        {
            "query": [f"q{i}" for i in range(10)],
            "item_idx": [0, 0, 0, 0, 1, 1, 2, 2, 2, 3],
            "split": ["train", "train", "test", "test", "test", "test", "test", "test", "test",
                      "test"],
        },
        schema_overrides={"item_idx": pl.Int32},
    )  # fmt: skip
    return Splits(sequences, queries)


def test_held_out_queries_split_in_half_per_item():
    held = tiny_splits().test_queries()
    split = held_out_split(held, seed=0)
    per_item = pl.DataFrame({"item": held["item_idx"], "split": split})
    counts = per_item.group_by("item", "split").len().sort("item", "split")
    # items 0 and 1: two held-out queries -> one each; item 2: three -> 1 valid, 2 test
    got = {(r["item"], r["split"]): r["len"] for r in counts.iter_rows(named=True)}
    assert got[(0, "valid")] == 1 and got[(0, "test")] == 1
    assert got[(1, "valid")] == 1 and got[(1, "test")] == 1
    assert got[(2, "valid")] == 1 and got[(2, "test")] == 2
    assert held_out_split(held, seed=0).tolist() == split.tolist()


def test_eval_inputs_stack_every_set_with_its_rows():
    splits = tiny_splits()
    real = pl.DataFrame({"query": ["a long real request"], "item_idx": [3]})
    cfg = EvalConfig(max_search_queries=None, max_title_queries=None)
    inputs = eval_inputs(splits, cfg, 0, real, ["Toy Story", "", "Heat", "Up", "x", "y", "z",
                                                 "w", "v"])  # fmt: skip
    assert list(inputs.query_sets) == ["search_valid", "search", "search_real", "search_title"]
    assert list(inputs.rec_sets) == ["rec_valid", "rec"]
    valid = inputs.query_sets["search_valid"]
    test = inputs.query_sets["search"]
    assert (valid.stop - valid.start) + (test.stop - test.start) == 8
    assert inputs.queries[inputs.query_sets["search_real"]] == ["a long real request"]
    titles = inputs.queries[inputs.query_sets["search_title"]]
    assert "" not in titles and len(titles) == 8
    # validation: the train prefix predicts the valid item; test: prefix + valid -> test item
    rv, rt = inputs.rec_sets["rec_valid"], inputs.rec_sets["rec"]
    assert inputs.histories[rv] == [[0, 1], [2, 3, 4]]
    assert inputs.rec_targets[rv].tolist() == [5, 6]
    assert inputs.histories[rt] == [[0, 1, 5], [2, 3, 4, 6]]
    assert inputs.rec_targets[rt].tolist() == [7, 8]


def test_score_sets_scores_each_set_on_its_own_rows():
    splits = tiny_splits()
    inputs = eval_inputs(splits, EvalConfig(splits=["test"], max_title_queries=0), 0)
    n = len(inputs.histories)
    ranked = np.tile(np.array([[7, 1, 2]]), (n, 1))
    metrics, frames = score_sets("m", "rec", ranked, inputs, [1, 3])
    assert set(metrics) == {"rec"}
    assert metrics["rec"]["recall@1"] == pytest.approx(0.5)  # user 1's test item is 7
    assert metrics["rec"]["coverage"] == 3
    assert frames[0]["task"].unique().to_list() == ["rec"]
