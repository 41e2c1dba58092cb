import numpy as np
import polars as pl
import pytest
from serving_toy import N_ITEMS, one_thread, toy_items, toy_run

import semid
from semid.errors import ConfigError, DataError
from semid.generative.lru import LRUCache
from semid.generative.retriever import GenerativeRetriever
from semid.serving import ItemFilter, SemidModel, load

ITEMS = toy_items()
DRAMA = set(ITEMS.filter(pl.col("genres").list.contains("Drama"))["item_id"].to_list())


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return toy_run(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def model(run_dir):
    return load(run_dir, precision="fp32")


def test_load_accepts_the_run_or_its_model_folder(run_dir, model):
    assert isinstance(model.retriever, GenerativeRetriever)
    assert model.n_items == N_ITEMS
    assert semid.load(run_dir).search("toy story", k=1)["title"][0] == "Toy Story"
    from_folder = SemidModel.load(run_dir / "model", precision="fp32")
    assert (
        from_folder.search("toy story", k=3)["item_id"].to_list()
        == model.search("toy story", k=3)["item_id"].to_list()
    )


def test_decoding_keeps_the_runs_beam_factor(run_dir, model, tmp_path):
    import json
    import shutil

    assert model.beam_factor == 1.0 and model.beams_for(5) == 5  # no run config beside it
    shutil.copytree(run_dir / "model", tmp_path / "model")
    config = {"tasks": ["search", "rec"], "eval": {"beam_size": 30, "beam_width": 60}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    wide = load(tmp_path, precision="fp32")
    assert wide.beam_factor == 2.0 and wide.beams_for(3) == 6
    rows, _ = wide.retriever.search(["a drama movie"], k=3, beams=6)
    ids = wide.items["item_id"].to_numpy()[rows[0]].tolist()
    assert wide.search("a drama movie", k=3)["item_id"].to_list() == ids
    assert model.search("a drama movie", k=3, beams=6)["item_id"].to_list() == ids
    with pytest.raises(DataError, match="beams=2: must be an integer >= k=3"):
        wide.search("a drama movie", k=3, beams=2)


def test_load_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(ConfigError, match="no trained model folder"):
        semid.load(tmp_path)


def test_search_returns_titles_and_decreasing_scores(model):
    frame = model.search("toy story", k=5)
    assert frame.columns == ["rank", "item_id", "title", "score", "year", "genres"]
    assert frame["rank"].to_list() == [1, 2, 3, 4, 5]
    assert frame["title"][0] == "Toy Story" and frame["item_id"][0] == 1
    scores = frame["score"].to_numpy()
    assert (np.diff(scores) <= 0).all() and (scores <= 0).all()
    assert frame["item_id"].n_unique() == 5


def test_recommend_follows_the_trained_next_item_pattern(model):
    # The toy generator was trained on histories [i] -> i+1 (item rows).
    ids = ITEMS["item_id"].to_list()
    hits = sum(
        model.recommend([ids[i]], k=3)["item_id"].to_list().count(ids[i + 1]) for i in range(10)
    )
    assert hits >= 5
    assert model.recommend([ids[0], ids[1]], k=4).height == 4


def test_batched_calls_equal_one_at_a_time(model):
    queries = ["toy story", "a drama movie", "sinister", "a documentary movie called control room"]
    batch = model.search_batch(queries, k=4)
    assert len(batch) == len(queries)
    for query, frame in zip(queries, batch, strict=True):
        single = model.search(query, k=4)
        assert frame["item_id"].to_list() == single["item_id"].to_list()
        np.testing.assert_allclose(frame["score"], single["score"], atol=1e-4)
    ids = ITEMS["item_id"].to_list()
    histories = [[ids[0]], [ids[3], ids[4]], [ids[10], ids[11], ids[12]]]
    for history, frame in zip(histories, model.recommend_batch(histories, k=3), strict=True):
        assert frame["item_id"].to_list() == model.recommend(history, k=3)["item_id"].to_list()


def test_genre_filter_fills_the_top_k_with_allowed_items(model):
    query = "a documentary movie called gimme danger"
    plain = model.search(query, k=10)
    kept_after = [i for i in plain["item_id"].to_list() if i in DRAMA]
    assert len(kept_after) < 10  # filtering afterwards would leave holes
    filtered = model.search(query, k=10, genres=["Drama"])
    assert filtered.height == 10
    assert set(filtered["item_id"].to_list()) <= DRAMA
    assert all("Drama" in g for g in filtered["genres"].to_list())


def test_filters_combine_and_never_return_more_than_match(model):
    frame = model.search("toy story", k=20, genres=["Animation", "Documentary"], year_max=2000)
    expected = set(
        ITEMS.filter(
            pl.col("genres").list.eval(pl.element().is_in(["Animation", "Documentary"])).list.any()
            & (pl.col("year") <= 2000)
        )["item_id"].to_list()
    )
    assert set(frame["item_id"].to_list()) == expected and frame.height == len(expected)
    years = model.search("a drama movie", k=8, year_min=2000, year_max=2009)["year"].to_list()
    assert len(years) == 8 and all(2000 <= y <= 2009 for y in years)
    allow = [234, 747, 7153]
    got = model.recommend([1], k=5, allow=allow)
    assert sorted(got["item_id"].to_list()) == allow


def test_exact_ranking_is_available_through_the_model(model):
    beam = model.search("a comedy movie", k=3, genres=["Comedy"])
    exact = model.search("a comedy movie", k=3, genres=["Comedy"], exact=True)
    assert exact["score"][0] >= beam["score"][0] - 1e-5
    assert set(exact["item_id"].to_list()) <= set(
        ITEMS.filter(pl.col("genres").list.contains("Comedy"))["item_id"].to_list()
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"genres": ["Cartoon"]}, r"unknown genre\(s\) \['Cartoon'\] \(known: Action"),
        ({"allow": [1, 424242]}, r"unknown item id\(s\): \[424242\]"),
        ({"allow": []}, "allow-list of item ids is empty"),
        ({"year_min": 2010, "year_max": 2000}, "year_min=2010 is after year_max=2000"),
        ({"year_min": 1800, "year_max": 1850}, "filter matches no items: year in"),
        ({"k": 0}, "k=0: must be a positive integer"),
    ],
)
def test_bad_requests_raise_one_clear_line(model, kwargs, message):
    kwargs = {"k": 5} | kwargs
    with pytest.raises(DataError, match=message):
        model.search("toy story", **kwargs)


def test_empty_inputs_are_rejected(model):
    with pytest.raises(DataError, match="empty query"):
        model.search("   ")
    with pytest.raises(DataError, match="empty history"):
        model.recommend([])
    with pytest.raises(DataError, match=r"unknown item id\(s\): \[-5\]"):
        model.recommend([1, -5])
    with pytest.raises(DataError, match="not one string"):
        model.search_batch("toy story")


def test_restricted_tries_are_cached_per_filter(model):
    cache = model.retriever.trie_cache
    before = (len(cache), cache.hits)
    for _ in range(3):
        model.search("a war movie", k=3, genres=["War"])
    model.search("a war movie", k=3, genres=["War"], year_min=1900)  # same items -> same trie
    assert len(cache) == before[0] + 1
    assert cache.hits >= before[1] + 3
    flt = ItemFilter.make(genres=["War", "Drama", "War"])
    assert flt == ItemFilter.make(genres=["Drama", "War"]) and hash(flt)
    assert ItemFilter.make() is None


def test_lru_cache_evicts_the_least_recently_used():
    cache = LRUCache(2)
    calls = []

    def build(key):
        calls.append(key)
        return key * 10

    assert cache.get(1, lambda: build(1)) == 10
    cache.get(2, lambda: build(2))
    cache.get(1, lambda: build(1))  # 1 is now the most recent
    cache.get(3, lambda: build(3))  # evicts 2
    cache.get(1, lambda: build(1))
    cache.get(2, lambda: build(2))
    assert calls == [1, 2, 3, 2] and len(cache) == 2


def test_item_lookup_gives_its_semantic_id(model):
    item = model.item(1)
    assert item["title"] == "Toy Story" and item["year"] == 1995
    assert "Animation" in item["genres"]
    assert item["semantic_ids"] == {"item": "<a_0><b_0><c_0>"}
    with pytest.raises(DataError, match="unknown item id"):
        model.item(999999)


def test_mismatched_codes_and_items_are_refused(model):
    with pytest.raises(ConfigError, match="codes_item.npy has 48 rows, items.parquet has 47"):
        SemidModel(model.retriever, model.items.head(47))


def test_cli_search_and_recommend_print_titles(run_dir):
    from typer.testing import CliRunner

    from semid.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["search", str(run_dir), "toy story", "--k", "3"])
    assert out.exit_code == 0, out.output
    assert "Toy Story" in out.output
    out = runner.invoke(
        app, ["search", str(run_dir), "a movie", "--genre", "Animation", "--year-max", "2000"]
    )
    assert out.exit_code == 0, out.output
    # Animation up to 2000: Toy Story, An American Tail 2, The Emperor's New Groove.
    assert "Toy Story" in out.output and "Despicable Me" not in out.output
    assert out.output.count("Animation") == 3
    out = runner.invoke(app, ["recommend", str(run_dir), "--history", "1,234", "--allow", "747"])
    assert out.exit_code == 0, out.output
    assert "Stupids" in out.output
