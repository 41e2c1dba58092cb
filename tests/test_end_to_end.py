"""The whole pipeline on the smoke preset: artifacts, report, cache reuse, evaluate, load."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import semid
from semid.config import load_config
from semid.errors import DataError
from semid.pipeline import evaluate_query_file, run_pipeline

pytestmark = pytest.mark.slow

# Floors of the smoke preset's generator (Recall@10; chance is 10 / 600 = 0.017), set well
# below what it reached when they were written (see the test that uses them).
SMOKE_FLOORS = {"search_title": 0.3, "search": 0.2, "rec": 0.03}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config("smoke", None, ["name=smoke"])
    return run_pipeline(cfg, runs), runs, cfg


def test_run_directory_holds_every_artifact(smoke_run):
    run_dir, _, cfg = smoke_run
    for name in (
        "config.json",
        "manifest.json",
        "metrics.json",
        "predictions.parquet",
        "report.md",
        "id_table.csv",
        "model",
    ):
        assert (run_dir / name).exists(), name
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["seed"] == cfg.seed and saved["data"]["max_items"] == 600
    metrics = json.loads((run_dir / "metrics.json").read_text())
    gen = metrics["generative"]
    # every evaluation set is scored, by the generator and by its references
    for task in ("search", "search_valid", "search_title", "rec", "rec_valid"):
        assert gen[task]["n"] > 0, task
    for method, task in [("dense", "search"), ("bm25", "search"), ("popularity", "rec"),
                         ("sasrec", "rec"), ("dense", "search_title")]:  # fmt: skip
        assert metrics[method][task]["n"] == gen[task]["n"], (method, task)
    # chance Recall@10 on 600 items is 0.017: the generator memorises titles and retrieves
    # held-out queries far above it
    assert gen["search_title"]["recall@10"] >= SMOKE_FLOORS["search_title"]
    assert gen["search"]["recall@10"] >= SMOKE_FLOORS["search"]
    assert gen["rec"]["recall@10"] >= SMOKE_FLOORS["rec"]
    # constrained decoding: every generated item is a real catalogue item
    assert gen["search"]["valid_output_rate"] == 1.0
    report = (run_dir / "report.md").read_text()
    assert "| generative |" in report and "perplexity" in report
    for rule in ("**Seen items:** excluded", "**Ties:**", "**Query ambiguity", "validation"):
        assert rule in report, rule


def test_generator_never_recommends_a_seen_item(smoke_run):
    run_dir, _, _ = smoke_run
    preds = pl.read_parquet(run_dir / "predictions.parquet")
    cfg = load_config("smoke")
    assert cfg.eval.exclude_seen
    from semid.data.dataset import Splits
    from semid.evaluation.evaluate import eval_inputs

    manifest = json.loads((run_dir / "manifest.json").read_text())
    splits = Splits.load(Path(manifest["stages"]["splits"]["path"]))
    inputs = eval_inputs(splits, cfg.eval, cfg.seed)
    for method in ("generative", "sasrec", "popularity", "dense"):
        rows = preds.filter((pl.col("method") == method) & (pl.col("task") == "rec"))
        hist = inputs.histories[inputs.rec_sets["rec"]]
        for predicted, seen in zip(rows["predicted"].to_list(), hist, strict=True):
            assert not set(predicted) & set(seen), method
            assert -1 not in predicted


def test_same_seed_gives_byte_identical_metrics(smoke_run, tmp_path):
    run_dir, _, cfg = smoke_run
    again = run_pipeline(cfg, tmp_path / "fresh")  # a fresh cache: every stage is rebuilt
    manifest = json.loads((again / "manifest.json").read_text())
    assert not any(stage["cached"] for stage in manifest["stages"].values())
    assert (again / "metrics.json").read_bytes() == (run_dir / "metrics.json").read_bytes()


def test_predictions_recompute_the_metrics(smoke_run):
    run_dir, _, _ = smoke_run
    preds = pl.read_parquet(run_dir / "predictions.parquet")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    gen = preds.filter((pl.col("method") == "generative") & (pl.col("task") == "search"))
    hits = gen.select(((pl.col("rank") >= 0) & (pl.col("rank") < 10)).mean()).item()
    assert hits == pytest.approx(metrics["generative"]["search"]["recall@10"])
    recomputed = [
        t in p[:10]
        for t, p in zip(gen["target"].to_list(), gen["predicted"].to_list(), strict=True)
    ]
    assert sum(recomputed) / len(recomputed) == pytest.approx(hits)


def test_second_run_reuses_every_stage(smoke_run):
    run_dir, runs, cfg = smoke_run
    again = run_pipeline(cfg, runs)
    manifest = json.loads((again / "manifest.json").read_text())
    assert all(stage["cached"] for stage in manifest["stages"].values())
    changed = cfg.model_copy(deep=True)
    changed.eval.beam_size = 5
    changed.eval.ks = [5]
    manifest = json.loads((run_pipeline(changed, runs) / "manifest.json").read_text())
    cached = {name: s["cached"] for name, s in manifest["stages"].items()}
    assert cached["model"] and cached["ids"] and not cached["evaluate"]


def test_evaluate_a_query_file_without_retraining(smoke_run, tmp_path):
    run_dir, _, _ = smoke_run
    items = pl.read_parquet(run_dir / "model" / "items.parquet")
    lines = [
        json.dumps({"query": f"{t} movie", "movieId": int(i)})
        for t, i in zip(items["title"][:5], items["item_id"][:5], strict=True)
    ]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(lines) + "\n")
    metrics = evaluate_query_file(run_dir, qfile)
    assert metrics["generative"]["search"]["n"] == 5
    assert (run_dir / "eval-q" / "predictions.parquet").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "x", "movieId": -42}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl"):
        evaluate_query_file(run_dir, bad)


def test_load_search_and_recommend(smoke_run):
    run_dir, _, _ = smoke_run
    model = semid.load(run_dir)
    found = model.search("an animated comedy", k=5)
    assert found.height == 5 and {"item_id", "title", "score"} <= set(found.columns)
    some = model.items["item_id"][:3].to_list()
    assert model.recommend(some, k=4).height == 4


def test_cli_reports_bad_input_in_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "semid.cli",
            "run",
            "--preset",
            "smoke",
            "--set",
            f"data.path={tmp_path / 'nowhere'}",
            "--runs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "nowhere" in out.stderr
