"""Extension points: registries, entry points, --plugin through semid run / ids fit / a grid."""

import json
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semid.cli import app
from semid.config import load_config
from semid.errors import ConfigError
from semid.grid import expand_grid, pending_stages, pipeline_stage_keys, run_grid
from semid.io import read_json, stable_hash, write_json
from semid.registry import Registry, load_plugins
from semid.runs import DONE_FILE, Run, stage_kind

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUANTIZER_PLUGIN = str(EXAMPLES / "custom_quantizer.py")
SPACE_PLUGIN = str(EXAMPLES / "custom_embedding_space.py")

# The smoke preset cut to seconds: 200 items, a word-piece T5, ten steps, few held-out inputs.
TINY = [
    "data.max_items=200",
    "model.backbone=t5-scratch",
    "train.max_steps=10",
    "train.rec_windows_per_user=1",
    "eval.baselines=[popularity,dense]",
    "eval.max_search_queries=20",
    "eval.max_rec_users=20",
    "eval.max_title_queries=20",
    "quantizer.codebook_size=8",
]


def test_registry_names_help_and_errors():
    reg = Registry("widget", "thing.name", "semid.test_widgets_none")
    reg.register("a", 1, "the first")
    reg.register("b", "json:dumps")
    assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
    assert reg.get("b") is json.dumps  # a reference is imported on first use
    assert reg.choices() == "a or b" and reg.describe() == [("a", "the first"), ("b", "")]
    with pytest.raises(ConfigError, match=r"thing.name: unknown widget 'c' \(available: a, b"):
        reg.get("c")


def test_entry_points_of_an_installed_distribution(tmp_path, monkeypatch):
    dist = tmp_path / "semid_toy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: semid-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[semid.test_widgets]\ntoy = json:loads\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", "thing.name", "semid.test_widgets")
    assert reg.names() == ["toy"] and reg.get("toy") is json.loads


def test_plugins_are_recorded_and_validate_the_config(tmp_path):
    from semid.embeddings.spaces import SPACES

    if "tfidf-svd" not in SPACES:  # registrations are per process: not imported yet
        with pytest.raises(ConfigError, match="unknown embedding space 'tfidf-svd'"):
            load_config("smoke", None, ["embedding.space=tfidf-svd"])
    with pytest.raises(ConfigError, match="no such file"):
        load_plugins([str(tmp_path / "missing.py")])
    cfg = load_config(
        "smoke",
        None,
        ["quantizer.name=pca-bins", "embedding.space=tfidf-svd"],
        plugins=[QUANTIZER_PLUGIN, SPACE_PLUGIN],
    )
    assert cfg.plugins == [QUANTIZER_PLUGIN, SPACE_PLUGIN]
    # what a grid worker or `semid evaluate` does with the saved config.json
    again = type(cfg).model_validate(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again == cfg


def test_ids_fit_with_a_plugin_quantizer(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "ids"
    args = ["ids", "fit", str(tmp_path / "X.npy"), "--out", str(out), "--quantizer", "pca-bins"]
    result = CliRunner().invoke(app, [*args, "--levels", "2", "--codebook-size", "8",
                                      "--plugin", QUANTIZER_PLUGIN])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_json(out / "item" / "space.json")["quantizer"] == "pca-bins"
    listed = CliRunner().invoke(app, ["ids", "list"])
    assert "pca-bins" in listed.output  # the example registered it in this process


def test_semid_run_with_plugin_quantizer_and_embedding_space(tmp_path):
    args = ["run", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "plug"]
    args += ["--plugin", QUANTIZER_PLUGIN, "--plugin", SPACE_PLUGIN]
    args += ["--embedding", "tfidf-svd", "--quantizer", "pca-bins"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output  # the result tables at 80 columns, nothing cut
    run_dir = tmp_path / "plug"
    assert read_json(run_dir / "config.json")["plugins"] == [QUANTIZER_PLUGIN, SPACE_PLUGIN]
    assert read_json(run_dir / "metrics.json")["generative"]["search"]["n"] > 0
    embeddings = Path(read_json(run_dir / "manifest.json")["stages"]["embeddings"]["path"])
    assert read_json(embeddings / "meta.json")["space"] == "tfidf-svd"


def test_grid_workers_import_the_plugins(tmp_path):
    spec = {
        "name": "plugins",
        "base": {"preset": "smoke", "set": {"embedding.space": "tfidf-svd"}},
        "plugins": [SPACE_PLUGIN],
        "axes": {"quantizer.name": ["pca-bins", "rq-kmeans"]},
    }
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(json.dumps(spec))
    out = tmp_path / "res"
    args = ["grid", str(grid_file), "--jobs", "2", "--runs-dir", str(out), "--no-report"]
    args += ["--plugin", QUANTIZER_PLUGIN]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for cell in ("pca-bins", "rq-kmeans"):
        saved = read_json(out / cell / "config.json")
        assert saved["quantizer"]["name"] == cell
        assert saved["plugins"] == [SPACE_PLUGIN, QUANTIZER_PLUGIN]
        assert read_json(out / cell / "metrics.json")["generative"]["search"]["n"] > 0


# --- composite spaces: one stage name per component ------------------------------------------


def test_composite_components_are_stages_of_their_own():
    search = load_config("smoke", None, ["embedding.space=search"])
    separate = load_config("smoke", None, ["embedding.space=separate"])
    rec = load_config("smoke", None, ["embedding.space=rec"])
    keys = pipeline_stage_keys(separate)
    assert list(keys)[2:5] == ["embeddings/search", "embeddings/rec", "embeddings"]
    assert keys["embeddings/search"] == pipeline_stage_keys(search)["embeddings"]
    assert keys["embeddings/rec"] == pipeline_stage_keys(rec)["embeddings"]
    assert keys["embeddings"] not in (keys["embeddings/search"], keys["embeddings/rec"])


def test_a_cell_waits_while_another_builds_its_component(tmp_path):
    """The scheduler sees separate's embeddings/search as the search cell's embeddings folder."""
    search = load_config("smoke", None, ["embedding.space=search"])
    separate = load_config("smoke", None, ["embedding.space=separate", "eval.baselines=[bm25]"])
    keys_search, keys_separate = pipeline_stage_keys(search), pipeline_stage_keys(separate)
    for stage in ("data", "splits"):  # built already: only the embeddings are shared
        folder = tmp_path / stage / keys_search[stage]
        folder.mkdir(parents=True)
        (folder / DONE_FILE).write_text("{}")
    busy = pending_stages(keys_search, tmp_path)  # the search cell is running
    shared = pending_stages(keys_separate, tmp_path) & busy
    assert shared == {("embeddings", keys_search["embeddings"])}


def logged_noop_pipeline(cfg, runs_dir, cache_dir):
    """The real pipeline with every build a logged sleep (module level: runs in workers)."""
    import semid.pipeline

    log_dir = Path(os.environ["STAGE_BUILD_LOG"])
    original = Run.stage

    def stage(self, name, material, build, force=False, **kwargs):
        def fake(out):
            kind, key = stage_kind(name), stable_hash(material)
            (log_dir / f"{kind}.{key}.{uuid.uuid4().hex}.start").touch()
            time.sleep(1.0 if kind == "embeddings" else 0.2)
            return {}

        return original(self, name, material, fake, force, **kwargs)

    Run.stage = stage
    semid.pipeline.finalize_run = lambda state: write_json(state.run.run_dir / "metrics.json", {})
    try:
        return semid.pipeline.run_pipeline(cfg, runs_dir, cache_dir)
    finally:
        Run.stage = original


def test_two_workers_never_build_the_same_stage(tmp_path, monkeypatch):
    log_dir = tmp_path / "builds"
    log_dir.mkdir()
    monkeypatch.setenv("STAGE_BUILD_LOG", str(log_dir))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # workers import this module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    # different baselines: the cells share nothing after the splits but the search space
    variants = {
        "search": {"embedding.space": "search", "eval.baselines": ["popularity"]},
        "separate": {"embedding.space": "separate", "eval.baselines": ["bm25"]},
    }
    grid = expand_grid({"base": {"preset": "smoke"}, "axes": {"space": variants}})
    statuses = run_grid(
        grid, tmp_path / "out", jobs=2, pipeline=logged_noop_pipeline, poll_seconds=0.05
    )
    assert set(statuses.values()) == {"done"}, statuses
    built = [tuple(p.name.split(".")[:2]) for p in log_dir.glob("*.start")]
    assert len(built) == len(set(built)), sorted(built)
    # the search space is built once: by the search cell, reused by separate's component stage
    search_key = read_json(tmp_path / "out" / "search" / "manifest.json")["stages"]["embeddings"]
    separate = read_json(tmp_path / "out" / "separate" / "manifest.json")["stages"]
    assert separate["embeddings/search"]["key"] == search_key["key"]
    assert {"embeddings/search", "embeddings/rec", "embeddings"} <= set(separate)


def test_an_axis_over_a_registry_takes_every_name_with_all():
    from semid.quantizers.registry import QUANTIZERS

    load_plugins([QUANTIZER_PLUGIN])
    grid = expand_grid({"base": {"preset": "smoke"}, "axes": {"quantizer.name": "all"}})
    assert [c.config.quantizer.name for c in grid.cells] == QUANTIZERS.names()
    assert "pca-bins" in QUANTIZERS.names()
