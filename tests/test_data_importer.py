"""Generic catalogue import: schema, validation messages, round trip, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from semid.cli.data import data_app
from semid.data import DataConfig, load_dataset
from semid.data.importer import build_dataset, import_catalogue
from semid.errors import ConfigError, DataError

ITEMS_CSV = """item_id,title,year,genres,tags,category
10,Blue Kettle,2019,Kitchen|Tea,Enamel|shiny|enamel,home
30,Red Chair,,Furniture,,home
20,Green Lamp,2021,,,
"""
INTERACTIONS_CSV = """user_id,item_id,timestamp,rating
1,10,2024-01-02T10:00:00,5
1,30,2024-01-01,4
1,20,1704240000,
2,30,1704067200,3
2,10,1704067300,2
2,20,1704067400,1
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_import_normalises_and_sorts(tmp_path):
    data = import_catalogue(
        write(tmp_path / "items.csv", ITEMS_CSV), write(tmp_path / "inter.csv", INTERACTIONS_CSV)
    )
    items = data.items
    assert items["item_id"].to_list() == [10, 20, 30]  # item_idx = rank of the id
    assert items["text"].to_list() == [
        "Blue Kettle (2019). Category: home. Genres: Kitchen, Tea. Tags: enamel, shiny",
        "Green Lamp (2021)",
        "Red Chair. Category: home. Genres: Furniture",
    ]
    inter = data.interactions
    # user 1: 2024-01-01 (Red Chair), 2024-01-02 10:00 (Kettle), 2024-01-03 00:00 (Lamp)
    assert inter.filter(pl.col("user_id") == 1)["item_idx"].to_list() == [2, 0, 1]
    assert inter["timestamp"][0] == 1704067200
    assert inter["rating"].null_count() == 1


def test_parquet_lists_and_text_column(tmp_path):
    items = pl.DataFrame(
        {"item_id": [2, 1], "text": ["a described thing", ""], "title": ["Two", "One"],
         "genres": [["x"], []]}
    )  # fmt: skip
    inter = pl.DataFrame({"user_id": [7, 7], "item_id": [1, 2], "timestamp": [5, 6]})
    items.write_parquet(tmp_path / "items.parquet")
    inter.write_parquet(tmp_path / "interactions.parquet")
    data = load_dataset(DataConfig(dataset="custom", path=tmp_path))
    assert data.items["text"].to_list() == ["One", "a described thing"]  # empty text: composed
    assert data.interactions["rating"].null_count() == 2


def test_every_problem_is_reported(tmp_path):
    items = write(
        tmp_path / "items.csv",
        "item_id,title,year\n1,A,1990\n2,,1991\nx,C,\n1,D,199O\n",
    )
    inter = write(
        tmp_path / "interactions.csv",
        "user_id,item_id,timestamp\n1,1,5\n1,99,yesterday-ish\n",
    )
    with pytest.raises(DataError) as err:
        import_catalogue(items, inter)
    message = str(err.value)
    first = message.splitlines()[0]
    assert first.startswith("6 problems (")
    assert f"{items}: 4" in first and f"{inter}: 2" in first
    for expected in (
        "row 3 column item_id: not an integer: 'x'",
        "row 4 column item_id: duplicate id 1 (first at row 1)",
        "row 2 column title: empty title",
        "row 4 column year: not an integer: '199O'",
        "row 2 column item_id: unknown item 99",
        "row 2 column timestamp: unparseable timestamp 'yesterday-ish'",
    ):
        assert expected in message


def test_missing_and_unknown_columns(tmp_path):
    items = write(tmp_path / "items.csv", "id,titel\n1,A\n")
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\n1,1\n")
    with pytest.raises(DataError) as err:
        import_catalogue(items, inter)
    message = str(err.value)
    assert "missing column(s) item_id (expected: item_id, title, text, year" in message
    assert "missing column title or text" in message
    assert "unknown column(s) id, titel" in message
    assert "missing column(s) timestamp" in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(DataError, match="items.csv: file not found"):
        import_catalogue(tmp_path / "items.csv", tmp_path / "inter.csv")
    (tmp_path / "items.parquet").write_text("not parquet at all")
    with pytest.raises(DataError, match="items.parquet: cannot read as Parquet"):
        import_catalogue(tmp_path / "items.parquet", tmp_path / "items.parquet")
    write(tmp_path / "items.json", "{}")
    with pytest.raises(DataError, match="unsupported file type '.json'"):
        import_catalogue(tmp_path / "items.json", tmp_path / "items.json")
    write(tmp_path / "bad.csv", "item_id,title\n1,a\n2,b,c\n")
    write(tmp_path / "ok.csv", "user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match=r"bad.csv: cannot read as CSV \(line 3: 3 fields, the "):
        import_catalogue(tmp_path / "bad.csv", tmp_path / "ok.csv")


def test_rating_threshold_needs_ratings(tmp_path):
    items = pl.DataFrame({"item_id": [1], "title": ["a"]})
    inter = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]})
    with pytest.raises(ConfigError, match="data.rating_threshold=4.0: inter.csv has no ratings"):
        build_dataset(items, inter, interactions_source="inter.csv", rating_threshold=4.0)


def test_empty_text_when_only_text_column():
    items = pl.DataFrame({"item_id": [1, 2], "text": ["fine", "  "]})
    inter = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]})
    with pytest.raises(DataError, match="row 2 column text: empty text"):
        build_dataset(items, inter, items_source="items.parquet")


def test_many_bad_rows_are_counted_not_all_listed():
    items = pl.DataFrame({"item_id": [1], "title": ["a"]})
    inter = pl.DataFrame(
        {"user_id": list(range(500)), "item_id": [2] * 500, "timestamp": [1] * 500}
    )
    with pytest.raises(DataError) as err:
        build_dataset(items, inter, interactions_source="big.parquet")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("big.parquet: 500 problems: row 1 column item_id: unknown item 2")
    assert "... 490 more such rows" in str(err.value)
    assert len(lines) < 20


def test_round_trip_through_cli(tmp_path):
    items = write(tmp_path / "items.csv", ITEMS_CSV)
    inter = write(tmp_path / "inter.csv", INTERACTIONS_CSV)
    queries = write(
        tmp_path / "q.jsonl",
        json.dumps({"query": "a kettle", "item_id": 10}) + "\n"
        + json.dumps({"query": "lamp", "item_id": 20}) + "\n",
    )  # fmt: skip
    out = tmp_path / "imported"
    result = CliRunner().invoke(
        data_app,
        ["import", str(items), str(inter), "--queries", str(queries), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    direct = import_catalogue(items, inter)
    loaded = load_dataset(DataConfig(dataset="custom", path=out))
    assert loaded.items.equals(direct.items)
    assert loaded.interactions.equals(direct.interactions)
    assert (out / "queries.jsonl").is_file()
    info = CliRunner().invoke(data_app, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "interactions" in info.output and "6" in info.output


def test_cli_refuses_foreign_out_folder(tmp_path):
    items = write(tmp_path / "items.csv", ITEMS_CSV)
    inter = write(tmp_path / "inter.csv", INTERACTIONS_CSV)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(
        data_app, ["import", str(items), str(inter), "--out", str(tmp_path / "mine")]
    )
    assert isinstance(result.exception, DataError)
    assert "not a semid dataset folder" in str(result.exception)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"
