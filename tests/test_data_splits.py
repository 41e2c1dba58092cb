"""Leave-last-out sequences and the per-item query split."""

from __future__ import annotations

import json

import polars as pl
import pytest

from semid.data import DataConfig, QueryConfig, make_splits
from semid.data.dataset import Dataset, Splits
from semid.data.importer import build_dataset
from semid.data.splits import leave_last_out, order_ties, split_queries, tie_stats
from semid.errors import ConfigError, DataError


def toy_dataset(n_items: int = 6) -> Dataset:
    items = pl.DataFrame(
        {
            "item_idx": pl.Series(range(n_items), dtype=pl.Int32),
            "item_id": [100 + i for i in range(n_items)],
            "title": [f"Movie {i}" for i in range(n_items)],
            "year": pl.Series([1990 + i for i in range(n_items)], dtype=pl.Int32),
            "genres": [["Comedy", "Romance"], ["Horror"], ["Sci-Fi", "Action"], [], ["Drama"],
                       ["Animation", "Children"]][:n_items],
            "tags": [["funny"], ["zombies", "gore"], [], [], ["sad"], ["pixar"]][:n_items],
            "text": [f"Movie {i}" for i in range(n_items)],
        }
    )  # fmt: skip
    # user 1 re-watches item 2; user 3 has two interactions only
    rows = [(1, 0, 1), (1, 2, 2), (1, 1, 3), (1, 2, 4), (2, 3, 1), (2, 4, 2), (2, 5, 3), (3, 1, 5),
            (3, 0, 6)]  # fmt: skip
    inter = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_idx": pl.Series([r[1] for r in rows], dtype=pl.Int32),
            "timestamp": [r[2] for r in rows],
            "rating": pl.Series([None] * len(rows), dtype=pl.Float32),
        }
    )
    return Dataset(items=items, interactions=inter)


def test_leave_last_out_and_short_users():
    inter = toy_dataset().interactions
    with pytest.raises(DataError) as err:
        leave_last_out(inter, 3, source="ratings.csv")
    assert str(err.value) == (
        "ratings.csv: user 3 has 2 interactions, fewer than data.min_user_interactions=3; "
        "set data.drop_short_users=true to drop them"
    )
    single = pl.concat([inter, inter.head(1).with_columns(pl.lit(0, pl.Int64).alias("user_id"))])
    with pytest.raises(DataError, match="^ratings.csv: user 0 has 1 interaction, fewer .* all\\)"):
        leave_last_out(single, 3, source="ratings.csv")
    seq = leave_last_out(inter, 3, drop_short_users=True)
    assert seq["user_id"].to_list() == [1, 2]
    assert seq["train"].to_list() == [[0, 2], [3]]
    assert seq["valid"].to_list() == [1, 4]
    assert seq["test"].to_list() == [2, 5]  # the re-watched item is kept as it is
    assert seq.schema["train"] == pl.List(pl.Int32) and seq.schema["test"] == pl.Int32


def test_sequences_are_chronological_no_leakage():
    data = toy_dataset()
    splits = make_splits(
        data, DataConfig(drop_short_users=True), QueryConfig(per_item=4, test_per_item=1), 0
    )
    inter = data.interactions
    for row in splits.sequences.iter_rows(named=True):
        history = inter.filter(pl.col("user_id") == row["user_id"])
        times = history["timestamp"].to_list()
        n = len(times)
        assert row["train"] + [row["valid"], row["test"]] == history["item_idx"].to_list()
        # train strictly precedes valid, which precedes test
        assert max(times[: n - 2]) <= times[n - 2] <= times[n - 1]


def test_make_splits_reports_short_user_with_dataset_name():
    with pytest.raises(DataError, match="^dataset toy: user 3 has 2 interactions"):
        make_splits(toy_dataset(), DataConfig(dataset="toy"), QueryConfig(), 0)


def test_template_query_split_per_item():
    data = toy_dataset()
    cfg = QueryConfig(per_item=5, test_per_item=2)
    splits = make_splits(data, DataConfig(drop_short_users=True), cfg, seed=3)
    q = splits.queries
    assert q.columns == ["query", "item_idx", "split"]
    counts = q.group_by("item_idx", "split").len().sort("item_idx", "split")
    for item in range(data.n_items):
        per = {r["split"]: r["len"] for r in counts.filter(pl.col("item_idx") == item).to_dicts()}
        assert per["test"] == 2 and per["train"] >= 1
    train = set(splits.train_queries().select("query", "item_idx").iter_rows())
    test = set(splits.test_queries().select("query", "item_idx").iter_rows())
    assert not train & test
    again = make_splits(data, DataConfig(drop_short_users=True), cfg, seed=3)
    assert again.queries.equals(q)
    with pytest.raises(ConfigError, match="test_per_item=5 must be smaller"):
        make_splits(
            data, DataConfig(drop_short_users=True), QueryConfig(per_item=5, test_per_item=5), 0
        )


def test_split_queries_edge_cases():
    queries = pl.DataFrame(
        {
            "query": ["a", "a", "b", "c", "d", "e", "f", "g"],
            "item_idx": [0, 0, 0, 1, 2, 2, 2, 2],
            "group": ["x", "x", "y", "z", "p", "p", "q", "r"],
        }
    )
    out = split_queries(queries, test_per_item=1, seed=0)
    assert out.height == 7  # the duplicate (query, item) pair is merged
    only = out.filter(pl.col("item_idx") == 1)
    assert only["split"].to_list() == ["train"]  # an item with one query keeps it for training
    by_group = out.filter(pl.col("item_idx") == 2).with_columns(
        pl.Series("group", ["p", "p", "q", "r"])
    )
    assert by_group.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
    assert (out.filter(pl.col("item_idx") == 0)["split"] == "test").sum() == 1


def test_file_queries(tmp_path):
    data = toy_dataset()
    path = tmp_path / "q.jsonl"
    lines = [{"query": f"query {i}", "movieId": 100 + i % 3} for i in range(9)]
    lines.append({"query": "lonely", "item_id": 105})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    cfg = QueryConfig(source="file", file=path, test_per_item=2)
    splits = make_splits(data, DataConfig(drop_short_users=True), cfg, 0)
    q = splits.queries
    assert q.height == 10
    assert q.filter(pl.col("item_idx") == 5)["split"].to_list() == ["train"]
    assert (q.filter(pl.col("item_idx") == 0)["split"] == "test").sum() == 2
    with pytest.raises(ConfigError, match="queries.file"):
        make_splits(data, DataConfig(drop_short_users=True), QueryConfig(source="file"), 0)


def test_file_queries_with_their_own_split(tmp_path):
    data = toy_dataset()
    path = tmp_path / "llm.jsonl"
    rows = [
        {"query": "original one", "movieId": 100, "group": "original", "split": "train"},
        {"query": "original two", "movieId": 100, "group": "original", "split": "train"},
        {"query": "paraphrase one", "movieId": 100, "group": "paraphrase", "split": "test"},
        {"query": "paraphrase two", "movieId": 100, "group": "paraphrase", "split": "test"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = QueryConfig(source="file", file=path, test_per_item=1)
    q = make_splits(data, DataConfig(drop_short_users=True), cfg, 0).queries
    assert q["split"].to_list() == ["train", "train", "test", "test"]
    rows[1].pop("split")
    rows[2]["split"] = "valid"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        make_splits(data, DataConfig(drop_short_users=True), cfg, 0)
    assert 'line 3: \'split\' must be "train" or "test", got "valid"' in str(err.value)
    assert "line 2: missing key 'split' (other lines have one)" in str(err.value)


# ----------------------------------------------------------------------------- tie rule

# user 1: items 3 and 7 tie at t=20 (the valid item is one of them, tied with a train item)
# user 2: items 4 and 6 tie at t=8, the last timestamp (test and valid tied)
# user 3: no ties; user 4: too short to split (its tie is not counted)
TIE_ROWS = [(1, 5, 10), (1, 3, 20), (1, 7, 20), (1, 9, 30),
            (2, 1, 5), (2, 2, 6), (2, 4, 8), (2, 6, 8),
            (3, 1, 1), (3, 2, 2), (3, 3, 3),
            (4, 1, 1), (4, 2, 1)]  # fmt: skip


def tie_frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_idx": pl.Series([r[1] for r in rows], dtype=pl.Int32),
            "timestamp": [r[2] for r in rows],
        }
    )


def test_ties_are_permuted_by_seed_and_nothing_else():
    inter = tie_frame(TIE_ROWS)
    seen_test, seen_valid = set(), set()
    for seed in range(20):
        seq = leave_last_out(inter, 3, drop_short_users=True, seed=seed)
        assert seq.equals(leave_last_out(inter, 3, drop_short_users=True, seed=seed))
        u1, u2, u3 = seq.iter_rows(named=True)
        # non-tied interactions keep their chronological place
        assert u3["train"] == [1] and u3["valid"] == 2 and u3["test"] == 3
        assert u1["test"] == 9 and u1["train"][0] == 5
        assert {u1["train"][1], u1["valid"]} == {3, 7}
        assert u2["train"] == [1, 2] and {u2["valid"], u2["test"]} == {4, 6}
        seen_test.add(u2["test"])
        seen_valid.add(u1["valid"])
    assert seen_test == {4, 6} and seen_valid == {3, 7}  # the seed, not movieId, decides


def test_tie_order_ignores_file_row_order():
    inter = tie_frame(TIE_ROWS)
    shuffled = [tie_frame(TIE_ROWS[::-1]), inter.sample(fraction=1.0, shuffle=True, seed=7)]
    for seed in (0, 1, 2):
        expected = leave_last_out(inter, 3, drop_short_users=True, seed=seed)
        for frame in shuffled:
            assert leave_last_out(frame, 3, drop_short_users=True, seed=seed).equals(expected)
            assert order_ties(frame, seed).equals(order_ties(inter, seed))


def test_tie_stats_counted_by_hand():
    assert tie_stats(tie_frame(TIE_ROWS), 3) == {
        "users": 3,
        "test_tied": 1,  # user 2
        "valid_tied": 2,  # users 1 and 2
        "valid_train_tied": 1,  # user 1
        "tied_blocks": 2,  # (1, t=20), (2, t=8); user 4 is not split
        "tied_interactions": 4,
    }
    assert tie_stats(tie_frame(TIE_ROWS), 2)["tied_blocks"] == 3


def test_make_splits_saves_tie_stats(tmp_path):
    inter = tie_frame(TIE_ROWS).with_columns(pl.lit(None, pl.Float32).alias("rating"))
    items = build_dataset(
        pl.DataFrame({"item_id": list(range(10)), "title": [f"Movie {i}" for i in range(10)]}),
        pl.DataFrame({"user_id": [1], "item_id": [0], "timestamp": [1]}),
    ).items
    data = Dataset(items=items, interactions=inter)
    splits = make_splits(
        data, DataConfig(drop_short_users=True), QueryConfig(per_item=3, test_per_item=1), 3
    )
    assert splits.tie_stats["test_tied"] == 1 and splits.tie_stats["users"] == 3
    splits.save(tmp_path)
    assert Splits.load(tmp_path).tie_stats == splits.tie_stats
    (tmp_path / "tie_stats.json").unlink()  # a split saved before the tie counts existed
    assert Splits.load(tmp_path).tie_stats == {}


def test_dataset_tie_order_does_not_follow_file_rows():
    items = pl.DataFrame({"item_id": [1, 2, 3], "title": ["A", "B", "C"]})
    rows = {"user_id": [1, 1, 1, 1], "item_id": [3, 1, 2, 2], "timestamp": [5, 5, 1, 9]}
    forward = build_dataset(items, pl.DataFrame(rows)).interactions
    backward = build_dataset(items, pl.DataFrame(rows).reverse()).interactions
    assert forward.equals(backward)
    assert forward["item_idx"].to_list() == [1, 0, 2, 1]  # t=1, then t=5 in item order, t=9
