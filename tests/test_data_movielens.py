"""MovieLens layouts, title parsing, filters and dataset resolution."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from semid.data import DataConfig, load_dataset
from semid.data.movielens import (
    ML25M_ITEMS_ENV,
    detect_layout,
    ml25m_items_candidates,
    ml25m_items_dir,
    parse_titles,
    resolve_path,
)
from semid.errors import DataError

MOVIES_CSV = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"Dark Knight, The (2008)",Action|Crime|Drama
3,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Fantasy|Sci-Fi
4,Babylon 5,(no genres listed)
5,Nobody Rated Me (2001),Drama
"""
RATINGS_CSV = """userId,movieId,rating,timestamp
2,1,4.0,100
1,2,5.0,300
1,1,3.0,200
1,3,2.5,200
2,2,1.0,50
2,3,4.5,150
1,4,4.0,400
"""
TAGS_CSV = """userId,movieId,tag,timestamp
1,1,Pixar,1
2,1,pixar,2
3,1,fun,3
1,1,  ,4
2,2,"dark, gritty",5
"""


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = folder / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return folder


def csv_folder(tmp_path: Path) -> Path:
    return write(
        tmp_path / "ml-latest-small",
        {"movies.csv": MOVIES_CSV, "ratings.csv": RATINGS_CSV, "tags.csv": TAGS_CSV},
    )


def test_csv_layout_items_text_and_order(tmp_path):
    data = load_dataset(DataConfig(path=csv_folder(tmp_path)))
    items = data.items
    assert items["item_id"].to_list() == [1, 2, 3, 4, 5]
    assert items["item_idx"].to_list() == [0, 1, 2, 3, 4]
    assert items["title"].to_list() == [
        "Toy Story",
        "The Dark Knight",
        "The City of Lost Children (La Cité des enfants perdus)",
        "Babylon 5",
        "Nobody Rated Me",
    ]
    assert items["year"].to_list() == [1995, 2008, 1995, None, 2001]
    assert items["genres"][3].to_list() == []
    assert items["tags"][0].to_list() == ["pixar", "fun"]  # lower-cased, merged, most used first
    assert items["tags"][1].to_list() == ["dark, gritty"]
    assert items["text"][0] == (
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. "
        "Tags: pixar, fun"
    )
    assert items["text"][3] == "Babylon 5"
    inter = data.interactions
    assert inter.columns == ["user_id", "item_idx", "timestamp", "rating"]
    # user 1: ts 200 (movie 1, row 3), ts 200 (movie 3, row 4): the tie keeps file order
    assert inter.filter(pl.col("user_id") == 1)["item_idx"].to_list() == [0, 2, 1, 3]
    assert inter.filter(pl.col("user_id") == 2)["item_idx"].to_list() == [1, 0, 2]
    assert inter.schema["item_idx"] == pl.Int32 and inter.schema["rating"] == pl.Float32


def test_filters_threshold_users_items(tmp_path):
    folder = csv_folder(tmp_path)
    kept = load_dataset(DataConfig(path=folder, rating_threshold=4.0)).interactions
    assert kept["rating"].min() >= 4.0 and kept.height == 4
    # the unrated movie stays in the catalogue without max_items
    assert load_dataset(DataConfig(path=folder)).items.height == 5
    one_user = load_dataset(DataConfig(path=folder, max_users=2)).interactions
    assert one_user["user_id"].unique().to_list() == [1, 2]
    big = "movieId,title,genres\n" + "".join(f"{i},M{i} (2000),Drama\n" for i in range(1, 13))
    ratings = "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{m},4,{u * 100 + m}\n" for m in range(1, 13) for u in range(1, m + 1)
    )
    folder2 = write(tmp_path / "big", {"movies.csv": big, "ratings.csv": ratings})
    top = load_dataset(DataConfig(path=folder2, max_items=10))
    assert top.items["item_id"].to_list() == list(range(3, 13))  # the 10 most rated
    assert top.interactions["item_idx"].max() == 9


def test_25m_style_csv_without_tags(tmp_path):
    folder = write(tmp_path / "ml-25m", {"movies.csv": MOVIES_CSV, "ratings.csv": RATINGS_CSV})
    data = load_dataset(DataConfig(dataset="ml-25m", path=folder))
    assert data.items["tags"].list.len().sum() == 0
    assert data.interactions.height == 7


def test_1m_dat_latin1(tmp_path):
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
        "3::Star Maker, The (Uomo delle stelle, L') (1995)::Drama\n"
    ).encode("latin-1")
    ratings = b"1::1::5::978300760\n1::2::3::978300759\n2::3::4::978300000\n"
    folder = write(tmp_path / "ml-1m", {"movies.dat": movies, "ratings.dat": ratings})
    assert detect_layout(folder).kind == "movielens-dat"
    data = load_dataset(DataConfig(dataset="ml-1m", path=folder))
    assert data.items["title"].to_list() == [
        "Toy Story",
        "La Cité des enfants perdus",
        "The Star Maker (L'Uomo delle stelle)",
    ]
    assert data.items["genres"][0].to_list() == ["Animation", "Children", "Comedy"]
    assert data.interactions.filter(pl.col("user_id") == 1)["item_idx"].to_list() == [1, 0]


def test_10m_dat_with_tags_in_subfolder(tmp_path):
    movies = "1::Heat (1995)::Action|Crime\n2::Title: With Colon: (1999)::Drama\n"
    ratings = "5::1::4.5::100\n5::2::3.5::90\n"
    tags = "5::1::bank robbery::100\n6::1::Bank Robbery::101\n7::1::al pacino::102\n"
    write(
        tmp_path / "dl" / "ml-10M100K",
        {"movies.dat": movies, "ratings.dat": ratings, "tags.dat": tags},
    )
    data = load_dataset(DataConfig(dataset="ml-10m", path=tmp_path / "dl"))
    assert data.items["tags"][0].to_list() == ["bank robbery", "al pacino"]
    assert data.items["title"][1] == "Title: With Colon:"
    assert data.interactions["rating"].to_list() == [3.5, 4.5]


def test_100k_layout(tmp_path):
    flags = ["0"] * 19
    toy = flags.copy()
    toy[3] = toy[4] = toy[5] = "1"  # Animation, Children's, Comedy
    unknown = flags.copy()
    unknown[0] = "1"
    item = (
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(toy) + "\n"
        "2|Café Society|01-Jan-1996||http://y|" + "|".join(unknown) + "\n"
    ).encode("latin-1")
    udata = b"196\t1\t3\t881250949\n196\t2\t4\t881250940\n"
    folder = write(tmp_path / "ml-100k", {"u.item": item, "u.data": udata})
    data = load_dataset(DataConfig(dataset="ml-100k", path=folder))
    assert data.items["genres"].to_list() == [["Animation", "Children", "Comedy"], []]
    assert data.items["title"][1] == "Café Society"
    assert data.items["year"].to_list() == [1995, 1996]  # year from the release date
    assert data.interactions["item_idx"].to_list() == [1, 0]


def test_parse_titles_articles():
    frame = pl.DataFrame({"t": ["American President, The (1995)", "Mona (1983))", "Up (2009) "]})
    title, year = parse_titles(pl.col("t"))
    out = frame.select(title.alias("title"), year.alias("year"))
    assert out["title"].to_list() == ["The American President", "Mona (1983))", "Up"]
    assert out["year"].to_list() == [1995, None, 2009]


def test_bad_movielens_inputs(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_dataset(DataConfig(path=tmp_path / "nope"))
    only_movies = write(tmp_path / "items-only", {"movies.csv": MOVIES_CSV})
    with pytest.raises(DataError, match="found movies.csv but no ratings.csv"):
        load_dataset(DataConfig(path=only_movies))
    bad_header = write(
        tmp_path / "h", {"movies.csv": MOVIES_CSV, "ratings.csv": "user,movieId,rating\n1,1,4\n"}
    )
    with pytest.raises(DataError, match=r"ratings.csv: missing column\(s\) userId, timestamp"):
        load_dataset(DataConfig(path=bad_header))
    bad_value = write(
        tmp_path / "v",
        {"movies.csv": MOVIES_CSV, "ratings.csv": RATINGS_CSV + "x,1,4.0,oops\n"},
    )
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(path=bad_value))
    message = str(err.value)
    assert "ratings.csv: 2 problems" in message.splitlines()[0]
    assert "row 8 column userId: not an integer: 'x'" in message
    assert "row 8 column timestamp: unparseable timestamp 'oops'" in message
    malformed = write(
        tmp_path / "m",
        {"movies.dat": "1::Heat (1995)::Action\nthis is not a movie line\n", "ratings.dat": ""},
    )
    with pytest.raises(DataError, match="row 2 column line: malformed line"):
        load_dataset(DataConfig(path=malformed))


def test_resolution_bundled_cache_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMID_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="semid data download ml-1m"):
        resolve_path("ml-1m", None)
    with pytest.raises(DataError, match="data.dataset=custom needs data.path"):
        resolve_path("custom", None)
    with pytest.raises(DataError, match="unknown dataset"):
        resolve_path("ml-5m", None)
    cached = tmp_path / "cache" / "semid" / "datasets" / "ml-1m"
    cached.mkdir(parents=True)
    assert resolve_path("ml-1m", None) == cached
    bundled = csv_folder(tmp_path / "data")  # $SEMID_DATA_DIR/ml-latest-small
    assert resolve_path("ml-latest-small", None) == bundled
    assert load_dataset(DataConfig()).items.height == 5


def test_bundled_ml_latest_small():
    data = load_dataset(DataConfig())
    assert data.items.height == 9742
    assert data.interactions.height == 100836
    assert data.interactions["user_id"].n_unique() == 610
    assert data.items.filter(pl.col("item_id") == 1)["text"][0].startswith("Toy Story (1995).")


def test_ml25m_items_found_from_env(tmp_path, monkeypatch):
    folder = write(tmp_path / "my-ml25m", {"movies.csv": MOVIES_CSV})
    monkeypatch.setenv(ML25M_ITEMS_ENV, str(folder))
    assert ml25m_items_candidates()[0] == folder
    assert ml25m_items_dir() == folder
    nested = write(tmp_path / "zip" / "ml-25m", {"movies.csv": MOVIES_CSV}).parent
    monkeypatch.setenv(ML25M_ITEMS_ENV, str(nested))
    assert ml25m_items_dir() == nested / "ml-25m"


def test_ml25m_item_table_reads_when_available():
    folder = ml25m_items_dir()
    if folder is None:
        pytest.skip(
            f"ML-25M item table not found (not redistributable, so not in the repository): set "
            f"{ML25M_ITEMS_ENV}=FOLDER, use ../shared/data/ml-25m-items or run "
            "`semid data download ml-25m`"
        )
    movies = pl.read_csv(folder / "movies.csv", columns=["movieId", "title", "genres"])
    assert movies.height > 60_000 and movies["movieId"].is_unique().all()
    title, year = parse_titles(pl.col("title"))
    parsed = movies.select(title.alias("title"), year.alias("year"))
    assert parsed["year"].null_count() < movies.height // 50
