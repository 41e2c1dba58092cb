"""The template query generator and query files."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from semid.cli.data import queries_app
from semid.data import QueryConfig, QueryGenerator, TemplateQueryGenerator, load_query_file
from semid.data.dataset import Dataset
from semid.data.queries import contains_title, generate_queries, title_share
from semid.errors import ConfigError, DataError

GENRES = [
    ["Comedy", "Romance"], ["Horror"], ["Sci-Fi", "Action"], ["Drama", "War"],
    ["Animation", "Children", "Comedy"], ["Western"], ["Documentary"], ["Thriller"],
]  # fmt: skip


def items_frame(n: int = 40) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_idx": pl.Series(range(n), dtype=pl.Int32),
            "item_id": list(range(1, n + 1)),
            "title": [f"Film Number {i}" for i in range(n)],
            "year": pl.Series([1950 + (7 * i) % 70 if i % 5 else None for i in range(n)],
                              dtype=pl.Int32),
            "genres": [GENRES[i % len(GENRES)] for i in range(n)],
            "tags": [["time travel", "twist ending", "quirky"][: i % 4] for i in range(n)],
            "text": [f"Film Number {i}" for i in range(n)],
        }
    )  # fmt: skip


def test_template_generator_properties():
    items = items_frame()
    gen = TemplateQueryGenerator(title_share=0.2, progress=False, specific=False)
    assert isinstance(gen, QueryGenerator)
    out = gen.generate(items, per_item=10, seed=7)
    assert out.schema == pl.Schema({"query": pl.String, "item_idx": pl.Int32})
    counts = out.group_by("item_idx").agg(pl.len(), pl.col("query").n_unique().alias("distinct"))
    assert counts.height == items.height
    assert counts["len"].to_list() == [10] * items.height
    assert (counts["len"] == counts["distinct"]).all()
    titles = items["title"].gather(out["item_idx"]).to_list()
    share = title_share(out["query"].to_list(), titles)
    assert 0.1 <= share <= 0.2
    assert out.equals(gen.generate(items, per_item=10, seed=7))
    assert not out.equals(gen.generate(items, per_item=10, seed=8))
    # varied shapes: many distinct queries beyond bare genre keywords
    assert out["query"].n_unique() > 0.6 * out.height
    assert out["query"].str.contains("^I want to watch ").any()
    assert out["query"].str.contains("time travel").any()
    assert out["query"].str.contains(r"\b[5-9]0s\b|\b(19|20)\d0s\b").any()


def test_title_share_zero_and_small_per_item():
    items = items_frame(20)
    none = TemplateQueryGenerator(title_share=0.0, progress=False, specific=False).generate(
        items, 6, 0
    )
    titles = items["title"].gather(none["item_idx"]).to_list()
    assert title_share(none["query"].to_list(), titles) == 0.0
    # 4 per item * 0.2 = 0.8 title queries per item: spread over items, bound still held
    few = TemplateQueryGenerator(title_share=0.2, progress=False, specific=False).generate(
        items, 4, 0
    )
    titles = items["title"].gather(few["item_idx"]).to_list()
    assert 0.15 <= title_share(few["query"].to_list(), titles) <= 0.2
    assert contains_title("watch up tonight", "Up") and not contains_title("upbeat", "Up")


def test_item_without_metadata_gets_fewer_but_distinct_queries():
    items = pl.DataFrame(
        {
            "item_idx": pl.Series([0], dtype=pl.Int32),
            "item_id": [1],
            "title": ["Bare"],
            "year": pl.Series([None], dtype=pl.Int32),
            "genres": [[]],
            "tags": [[]],
            "text": ["Bare"],
        },
        schema_overrides={"genres": pl.List(pl.String), "tags": pl.List(pl.String)},
    )
    out = TemplateQueryGenerator(progress=False).generate(items, per_item=10, seed=0)
    assert 1 <= out.height <= 10 and out["query"].n_unique() == out.height


def test_specific_queries_single_out_few_items():
    items = items_frame(80)
    gen = TemplateQueryGenerator(progress=False, max_items_per_query=3)
    out = gen.generate(items, per_item=8, seed=1)
    assert out.equals(gen.generate(items, per_item=8, seed=1))
    assert out.group_by("item_idx").len()["len"].min() >= 6
    titles = items["title"].gather(out["item_idx"]).to_list()
    named = [contains_title(q, t) for q, t in zip(out["query"], titles, strict=True)]
    plain = out.filter(~pl.Series(named))
    assert plain.height > 0.2 * out.height  # attribute queries remain where metadata allows
    lower = pl.col("query").str.to_lowercase()
    per_text = plain.group_by(lower).agg(pl.col("item_idx").n_unique())
    # a non-title text can only be shared by items with every attribute it states: at most 3
    assert per_text["item_idx"].max() <= 3
    generic = TemplateQueryGenerator(progress=False, specific=False).generate(items, 8, 1)
    generic_text = generic.group_by(lower).agg(pl.col("item_idx").n_unique())
    assert generic_text["item_idx"].max() > 3  # the generic queries are ambiguous


def test_specific_falls_back_to_title_queries_for_common_metadata():
    n = 12  # twelve 2001 dramas without tags: no attribute combination singles one out
    items = pl.DataFrame(
        {
            "item_idx": pl.Series(range(n), dtype=pl.Int32),
            "item_id": list(range(1, n + 1)),
            "title": [f"Drama Number {i}" for i in range(n)],
            "year": pl.Series([2001] * n, dtype=pl.Int32),
            "genres": [["Drama"]] * n,
            "tags": [[]] * n,
            "text": [f"Drama Number {i}" for i in range(n)],
        },
        schema_overrides={"tags": pl.List(pl.String)},
    )
    out = TemplateQueryGenerator(progress=False).generate(items, per_item=10, seed=0)
    titles = items["title"].gather(out["item_idx"]).to_list()
    assert out.height == 10 * n
    assert title_share(out["query"].to_list(), titles) == 1.0
    with pytest.raises(ConfigError, match="max_items_per_query=0"):
        TemplateQueryGenerator(progress=False, max_items_per_query=0).generate(items, 4, 0)


def test_query_config_defaults_to_specific():
    cfg = QueryConfig()
    assert cfg.specific is True and cfg.max_items_per_query == 5
    items = items_frame(40)
    made = generate_queries(items, cfg.model_copy(update={"per_item": 4}), 0)
    direct = TemplateQueryGenerator(progress=False).generate(items, 4, 0)
    assert made.equals(direct)
    generic = generate_queries(items, cfg.model_copy(update={"per_item": 4, "specific": False}), 0)
    assert not generic.equals(direct)


def catalogue() -> Dataset:
    items = items_frame(3)
    inter = pl.DataFrame(
        {"user_id": [1], "item_idx": pl.Series([0], dtype=pl.Int32), "timestamp": [1],
         "rating": pl.Series([None], dtype=pl.Float32)}
    )  # fmt: skip
    return Dataset(items=items, interactions=inter)


def test_load_query_file_ok(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"query": " scary one ", "movieId": 2})
        + "\n\n"
        + json.dumps({"query": "funny", "item_id": "3", "group": 1})
        + "\n"
    )
    out = load_query_file(path, catalogue())
    assert out["query"].to_list() == ["scary one", "funny"]
    assert out["item_idx"].to_list() == [1, 2]
    assert out["group"].to_list() == [None, "1"]


def test_load_query_file_errors(tmp_path):
    data = catalogue()
    with pytest.raises(DataError, match="q.jsonl: query file not found"):
        load_query_file(tmp_path / "q.jsonl", data)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="empty.jsonl: empty query file"):
        load_query_file(empty, data)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                json.dumps({"query": "fine", "movieId": 1}),
                '{"query": "broken", "movieId": ',
                json.dumps({"movieId": 1}),
                json.dumps({"query": "no id"}),
                json.dumps({"query": "unknown", "movieId": 999}),
                json.dumps({"query": "", "movieId": 1}),
                json.dumps(["not", "an", "object"]),
                json.dumps({"query": "float id", "movieId": 1.5}),
            ]
        )
    )
    with pytest.raises(DataError) as err:
        load_query_file(bad, data)
    message = str(err.value)
    assert message.splitlines()[0].startswith(f"{bad}: 7 problems: line 2: not valid JSON")
    for expected in (
        "line 3: missing key 'query'",
        "line 4: missing key 'movieId' (or 'item_id')",
        "line 5: movieId 999 is not in the catalogue",
        "line 6: 'query' must be a non-empty string",
        "line 7: expected a JSON object, got list",
        "line 8: movieId must be an integer, got 1.5",
    ):
        assert expected in message


def test_cli_template_writes_jsonl(tmp_path, monkeypatch):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n1,Heat (1995),Action|Crime\n2,Up (2009),Animation\n"
    )
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,1\n1,2,4,2\n")
    out = tmp_path / "queries.jsonl"
    result = CliRunner().invoke(
        queries_app, ["template", "--dataset", "ml-latest-small", "--path", str(folder),
                      "--out", str(out), "--per-item", "5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 10 and {r["movieId"] for r in records} == {1, 2}
