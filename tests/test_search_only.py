"""Search-only runs (``tasks=[search]``) on a catalogue without interactions: the ML-25M item
table's case. A movies.csv-only folder runs end to end; nested catalogue subsets; clear errors;
the stage keys of configs that do not use the new fields stay what they were."""

import json
import random

import polars as pl
import pytest
import yaml

from semid.config import load_config
from semid.data import DataConfig, QueryConfig, build_dataset, load_dataset, make_splits
from semid.data.movielens import NO_INTERACTIONS, detect_layout
from semid.data.subsets import sample_order
from semid.errors import ConfigError, DataError
from semid.grid import config_hash, expand_grid, pipeline_stage_keys, run_grid
from semid.io import read_json
from semid.pipeline import evaluate_query_file, run_name

GENRES = ["Comedy", "Drama", "Horror", "Western", "Sci-Fi", "Romance", "Animation", "Crime"]
WORDS = ["Silent", "Crimson", "Lost", "Golden", "Broken", "Hidden", "Frozen", "Wild"]
NOUNS = ["River", "Harbor", "Mountain", "Garden", "Empire", "Voyage", "Lantern", "Orchard"]
N_MOVIES, SAMPLE = 60, 40
SMALL = 20  # the grid's smaller catalogue (nested in SAMPLE)


def write_movies_only(folder):
    """A movies.csv alone (no ratings.csv), in ML-25M's format: ids with gaps, quoted titles."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["movieId,title,genres"]
    for i in range(N_MOVIES):
        title = f"{WORDS[i % 8]} {NOUNS[i // 8 % 8]} {i}"
        if i % 7 == 0:
            title = f"{title}, The"
        genres = "|".join({GENRES[i % 8], GENRES[(i * 3 + 1) % 8]})
        lines.append(f'{10 * i + 7},"{title} ({1950 + i})",{genres}')
    (folder / "movies.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def search_only_overrides(folder):
    return [
        "tasks=[search]",
        "data.dataset=custom",
        f"data.path={folder}",
        "data.max_items=null",
        f"data.sample_items={SAMPLE}",
    ]


# --- a search-only grid end to end ----------------------------------------------------------


@pytest.fixture(scope="module")
def search_only_grid(tmp_path_factory):
    folder = write_movies_only(tmp_path_factory.mktemp("ml-items") / "items")
    out = tmp_path_factory.mktemp("results")
    sets = {}
    for item in search_only_overrides(folder):
        key, value = item.split("=", 1)
        sets[key] = yaml.safe_load(value)
    spec = {
        "name": "search-only",
        "base": {"preset": "smoke", "set": sets},
        "axes": {"data.sample_items": [SMALL, SAMPLE], "quantizer.codebook_size": [8, 16]},
        "baseline": {"quantizer.codebook_size": 8},
    }
    grid = expand_grid(spec)
    statuses = run_grid(grid, out)
    return folder, out, grid, statuses


@pytest.mark.slow
def test_movies_only_folder_runs_search_only_end_to_end(search_only_grid):
    folder, out, grid, statuses = search_only_grid
    assert set(statuses.values()) == {"done"}, statuses
    run_dir = out / f"sample-items{SAMPLE}__codebook-size8"
    manifest = read_json(run_dir / "manifest.json")
    stages = manifest["stages"]
    assert stages["data"]["facts"]["items"] == SAMPLE
    assert stages["data"]["facts"]["interactions"] == 0
    assert stages["splits"]["facts"]["users"] == 0 and stages["splits"]["facts"]["ties"] == {}
    examples = read_json(run_dir / "model" / "training_log.json")["examples"]
    assert examples["rec"] == 0 and examples["search"] == 3 * SAMPLE  # per_item 4, 1 held out
    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics) == {"generative", "dense", "bm25"}  # no popularity, no SASRec
    assert set(metrics["generative"]) == {"search", "search_valid", "search_title"}
    assert not [t for m in metrics.values() for t in m if t.startswith("rec")]
    gen = metrics["generative"]
    assert gen["search_title"]["n"] == SAMPLE  # every sampled item's title, once
    assert gen["search"]["n"] + gen["search_valid"]["n"] == SAMPLE  # one held out per item
    assert gen["search"]["valid_output_rate"] == 1.0
    assert metrics["bm25"]["search_title"]["recall@10"] == 1.0  # the title finds its item
    preds = pl.read_parquet(run_dir / "predictions.parquet")
    assert set(preds["task"].unique()) == {"search", "search_valid", "search_title"}
    items = pl.read_parquet(run_dir / "model" / "items.parquet")
    all_ids = pl.read_csv(folder / "movies.csv")["movieId"]
    assert items["item_id"].to_list() == sorted(sample_order(all_ids, 0).head(SAMPLE).to_list())
    report = (run_dir / "report.md").read_text()
    assert "search only (`tasks=[search]`)" in report and f"{SAMPLE} items" in report
    assert "### `rec`" not in report and "**Seen items:**" not in report
    # the served model knows it was trained search-only
    import semid

    model = semid.load(run_dir)
    assert model.search("a movie", k=3).height == 3
    first = int(items["item_id"][0])
    with pytest.raises(ConfigError, match=r"trained on tasks=\[search\] only, so it cannot rec"):
        model.recommend([first], k=3)


@pytest.mark.slow
def test_search_only_cells_share_upstream_stages_and_study_report_has_no_rec(search_only_grid):
    from semid.reports.report import rewrite_run_report
    from semid.reports.study import write_study_report

    _, out, grid, _ = search_only_grid
    second = read_json(out / f"sample-items{SAMPLE}__codebook-size16" / "manifest.json")
    stages = second["stages"]
    assert all(stages[s]["cached"] for s in ("data", "splits", "embeddings", "baselines"))
    assert not stages["ids"]["cached"]
    small = pl.read_parquet(
        out / f"sample-items{SMALL}__codebook-size8" / "model" / "items.parquet"
    )
    large = pl.read_parquet(
        out / f"sample-items{SAMPLE}__codebook-size8" / "model" / "items.parquet"
    )
    assert set(small["item_id"]) < set(large["item_id"])  # nested catalogues
    text = write_study_report(out).read_text()
    results = text.split("## Results")[1].split("### Reference points")[0]
    assert "search R@10" in results and "p search (Holm)" in results
    assert "rec R@" not in text and "p rec" not in text
    assert "Search-only cells" in text and not (out / "tradeoff.png").exists()
    rows = {r["group"]: r for r in read_json(out / "study.json")["rows"]}
    assert list(rows) == [c.name for c in grid.cells]
    assert all(set(r["mean"]) == {"search recall@10", "search ndcg@10"} for r in rows.values())
    gap = rows[f"sample-items{SAMPLE}__codebook-size16"]["tests"]["search"]
    assert gap["kind"] == "bootstrap"
    # the catalogue-size axis: a scaling section and plot, gaps from the paired tests
    scaling = text.split("## Catalogue size")[1].split("\n## ")[0]
    assert "axis `data.sample_items`" in scaling and (out / "scaling.png").stat().st_size > 0
    assert f"| series | value | {SMALL} items | {SAMPLE} items |" in scaling
    assert "| codebook-size16 | gap [95% CI] | " in scaling
    assert f"{gap['mean_diff']:+.4f}" in scaling.split("codebook-size16 | gap")[1]
    # the reference methods per size, in the table, in study.json and in the query-set table
    # (one dense row per catalogue size: the sizes see different candidates)
    dense = {
        n: read_json(out / f"sample-items{n}__codebook-size8" / "metrics.json")["dense"]["search"][
            "recall@10"
        ]
        for n in (SMALL, SAMPLE)
    }
    assert f"| dense (reference) | R@10 | {dense[SMALL]:.4f} | {dense[SAMPLE]:.4f} |" in scaling
    scaled = read_json(out / "study.json")["scaling"]
    assert {(p["items"], p["references"]["dense"]["search"]) for p in scaled} == set(dense.items())
    (point,) = [p for p in scaled if p["group"] == f"sample-items{SAMPLE}__codebook-size16"]
    assert point["gap"][0] == pytest.approx(gap["mean_diff"]) and point["gap_test"] == "bootstrap"
    query_sets = text.split("## Every query set")[1].split("\n## ")[0]
    if dense[SMALL] == dense[SAMPLE]:  # identical values merge into one reference row
        assert "| dense | — |" in query_sets and "| dense (" not in query_sets
    else:
        assert f"| dense (sample-items{SMALL}) |" in query_sets
        assert f"| dense (sample-items{SAMPLE}) |" in query_sets
    # `semid report RUN` rewrites a run's report from its files
    assert "search only" in rewrite_run_report(out / grid.cells[0].name).read_text()


@pytest.mark.slow
def test_evaluate_real_requests_skips_items_outside_the_sample(search_only_grid, tmp_path):
    folder, out, grid, _ = search_only_grid
    run_dir = out / f"sample-items{SAMPLE}__codebook-size8"
    items = pl.read_parquet(run_dir / "model" / "items.parquet")
    inside = set(items["item_id"].to_list())
    outside = next(i for i in pl.read_csv(folder / "movies.csv")["movieId"] if i not in inside)
    lines = [
        {"query": f"{t} movie", "movieId": int(i)}
        for t, i in zip(items["title"][:3], items["item_id"][:3], strict=True)
    ] + [{"query": "a movie outside the sample", "movieId": int(outside)}]
    qfile = tmp_path / "requests.jsonl"
    qfile.write_text("".join(json.dumps(line) + "\n" for line in lines))
    metrics = evaluate_query_file(run_dir, qfile)
    assert metrics["generative"]["search"]["n"] == 3 and metrics["dense"]["search"]["n"] == 3
    with pytest.raises(DataError, match="requests.jsonl"):
        evaluate_query_file(run_dir, qfile, skip_unknown_items=False)


# --- nested subsets -------------------------------------------------------------------------


def _items(n, order_seed):
    ids = list(range(3, 3 + 7 * n, 7))
    random.Random(order_seed).shuffle(ids)  # the file's row order must not matter
    return pl.DataFrame({"item_id": ids, "title": [f"movie {i}" for i in ids]})


def _sample(items, n, seed=0):
    dataset = build_dataset(items, NO_INTERACTIONS, sample_items=n, sample_seed=seed)
    return set(dataset.items["item_id"].to_list())


def test_sample_items_are_nested_and_independent_of_row_order():
    items = _items(500, order_seed=1)
    sizes = [20, 50, 120, 300]
    samples = [_sample(items, n) for n in sizes]
    assert [len(s) for s in samples] == sizes
    assert all(small < large for small, large in zip(samples, samples[1:], strict=False))
    assert _sample(_items(500, order_seed=2), 120) == samples[2]  # other row order, same subset
    assert _sample(items, 120, seed=1) != samples[2]  # sample_seed picks another permutation
    assert _sample(items, 500) == _sample(items, 10_000) == set(items["item_id"])


def test_sample_does_not_follow_the_run_seed(tmp_path):
    folder = write_movies_only(tmp_path / "items")
    a = load_config("smoke", None, [*search_only_overrides(folder), "seed=0"])
    b = load_config("smoke", None, [*search_only_overrides(folder), "seed=3"])
    assert pipeline_stage_keys(a)["data"] == pipeline_stage_keys(b)["data"]
    ids = load_dataset(a.data, items_only=True).items["item_id"].to_list()
    assert len(ids) == SAMPLE and ids == sorted(ids)  # item_idx follows movieId
    bigger = load_dataset(a.data.model_copy(update={"sample_items": 50}), items_only=True)
    assert set(ids) < set(bigger.items["item_id"].to_list())


# --- clear errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["rec", "separate", "fused-concat", "fused-svd", "multitask"])
def test_a_space_learnt_from_interactions_fails_early_in_a_search_only_run(space):
    with pytest.raises(ConfigError, match=rf"embedding.space={space} is learnt from user"):
        load_config("smoke", None, ["tasks=[search]", f"embedding.space={space}"])


def test_search_spaces_and_task_lists():
    for space in ("content", "search"):
        cfg = load_config("smoke", None, ["tasks=[search]", f"embedding.space={space}"])
        assert cfg.tasks == ["search"]
    assert load_config("smoke", None, ["tasks=[rec, search, rec]"]).tasks == ["search", "rec"]
    with pytest.raises(ConfigError, match="option tasks: .*recommendation-only"):
        load_config("smoke", None, ["tasks=[rec]"])


def test_movies_only_folder_needs_a_search_only_run(tmp_path):
    folder = write_movies_only(tmp_path / "items")
    with pytest.raises(DataError, match="no ratings.csv .*tasks=\\[search\\]"):
        detect_layout(folder)
    assert detect_layout(folder, items_only=True).kind == "movielens-items"
    cfg = DataConfig(dataset="custom", path=folder)
    dataset = load_dataset(cfg, items_only=True)
    assert dataset.items.height == N_MOVIES and dataset.interactions.height == 0
    queries = QueryConfig(per_item=4, test_per_item=1)
    with pytest.raises(DataError, match="no interactions, and recommendation needs them"):
        make_splits(dataset, cfg, queries, seed=0)
    splits = make_splits(dataset, cfg, queries, seed=0, sequences=False)
    assert splits.sequences.height == 0 and splits.train_queries().height == 3 * N_MOVIES
    with pytest.raises(ConfigError, match="data.max_items=100: .*movies.csv.*sample_items"):
        load_dataset(cfg.model_copy(update={"max_items": 100}), items_only=True)
    from typer.testing import CliRunner

    from semid.cli.data import data_app

    info = CliRunner().invoke(data_app, ["info", str(folder)])  # statistics of the table
    assert info.exit_code == 0, info.output
    assert "movielens-items" in info.output and f"{N_MOVIES:,}" in info.output


# --- stage keys of configs that do not use the new fields -----------------------------------

# Keys, run names and grid done-marker hashes computed before `tasks` and `data.sample_items`
# existed (commit 6e6fcd1). The stages before evaluation only: evaluation keys also hold the
# real-request file's fingerprint, which depends on the machine. Update these only with a
# change that is meant to invalidate every cache (a version bump).
BEFORE = {
    "default": (
        # on a CPU with bf16 (text_precision auto -> bf16: the vectors' key, hence the model's,
        # changed on purpose); with fp32 text vectors both keep their earlier keys (below)
        {"data": "086f4c9c5285", "splits": "3194f769ca9b", "embeddings": "10470a522c0b",
         "ids": "cc48a0bbb47d", "text_vectors": "4b2e7cf6de4a", "model": "67a066310593"},
        # model key, name and marker changed on purpose: the default trains 5 epochs, not 3,
        # and sets model.text_precision=auto; name and marker again: it decodes with 60 beams
        # (eval.beam_width, an evaluation field: the stage keys above stay)
        "content-rq-kmeans-3x256-s0-fbeb15",
        "8eabe6a6162d",
    ),
    "smoke": (
        {"data": "6aeae48af25d", "splits": "6f1b36e7d1ea", "embeddings": "63bb6206037e",
         "ids": "33d1aa0604bc", "text_vectors": "d6b4d8048410", "model": "39aa81e1c8ca"},
        "content-rq-kmeans-2x32-s0-d7f407",
        "654c5a753750",
    ),
}  # fmt: skip


# The default's keys where text vectors resolve to fp32 (a CPU without bf16): those of 5d7c009.
FP32_DEFAULT = {"text_vectors": "ffd692e256b0", "model": "cf93e58843fa"}


def _resolve_text_precision_as(monkeypatch, resolved: str) -> None:
    """Make ``auto`` resolve to ``resolved`` whatever this machine's CPU supports."""
    import semid.stages.model as model_stage

    monkeypatch.setattr(
        model_stage, "text_precision", lambda p: resolved if p in ("auto", "bf16") else "fp32"
    )


def test_default_keys_with_fp32_text_vectors_are_the_earlier_ones(monkeypatch):
    _resolve_text_precision_as(monkeypatch, "fp32")
    found = pipeline_stage_keys(load_config("default", None, []))
    assert {stage: found[stage] for stage in FP32_DEFAULT} == FP32_DEFAULT


@pytest.mark.parametrize("preset", ["default", "smoke"])
def test_default_configs_keep_their_stage_keys(preset, monkeypatch):
    _resolve_text_precision_as(monkeypatch, "bf16")
    keys, name, marker = BEFORE[preset]
    for extra in ([], ["tasks=[search, rec]", "data.sample_seed=5"]):  # explicit defaults
        cfg = load_config(preset, None, extra)
        found = pipeline_stage_keys(cfg)
        assert {stage: found[stage] for stage in keys} == keys, extra
        assert run_name(cfg) == name and config_hash(cfg) == marker
        dumped = cfg.model_dump(mode="json")
        assert "tasks" not in dumped and "sample_items" not in dumped["data"]
    search_only = pipeline_stage_keys(load_config(preset, None, ["tasks=[search]"]))
    assert search_only["data"] == keys["data"]  # one dataset for both kinds of run
    assert search_only["splits"] != keys["splits"]  # no sequences: another split
