import json

import pytest

from semid.config import load_config, parse_override
from semid.errors import ConfigError
from semid.runs import Run


def test_stage_is_reused_when_inputs_unchanged(tmp_path):
    calls = []

    def build(out):
        calls.append(1)
        (out / "x.txt").write_text("hello")
        return {"rows": 1}

    run = Run(tmp_path / "run")
    first = run.stage("data", {"a": 1}, build)
    second = run.stage("data", {"a": 1}, build)
    assert not first.cached and second.cached and len(calls) == 1
    assert (second.path / "x.txt").read_text() == "hello"
    third = run.stage("data", {"a": 2}, build)
    assert not third.cached and third.path != first.path and len(calls) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["data"]["facts"] == {"rows": 1}


def test_killed_stage_leaves_nothing_and_resumes(tmp_path):
    def dies(out):
        (out / "half.txt").write_text("partial")
        raise KeyboardInterrupt

    run = Run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run.stage("model", {"k": 1}, dies)
    stage_dir = run.cache_dir / "model"
    assert not any(p.name.endswith("half.txt") for p in stage_dir.rglob("*"))
    assert [p for p in stage_dir.iterdir() if not p.name.startswith(".")] == []
    done = run.stage("model", {"k": 1}, lambda out: (out / "w.txt").write_text("ok") and None)
    assert not done.cached and (done.path / "w.txt").exists()
    assert Run(tmp_path / "run").stage("model", {"k": 1}, dies).cached


def test_force_recomputes(tmp_path):
    run = Run(tmp_path / "run")
    run.stage("s", {}, lambda out: None)
    assert not run.stage("s", {}, lambda out: None, force=True).cached


def test_overrides_and_presets():
    cfg = load_config("smoke", None, ["train.epochs=2", "quantizer.levels=4"])
    assert cfg.train.epochs == 2 and cfg.quantizer.levels == 4
    assert cfg.data.max_items == 600  # from the smoke preset
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=-1", "option train.epochs"),
        ("quantizer.nonsense=1", "option quantizer.nonsense"),
        ("eval.split=train", "option eval.split"),
    ],
)
def test_bad_config_names_the_option(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", None, [override])


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")
    bad = tmp_path / "c.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        load_config("default", bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config("default", tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config("default", None, ["train.epochs"])


def test_manifest_records_python_platform_and_library_versions(tmp_path):
    from importlib import metadata

    run = Run(tmp_path / "run")
    run.stage("data", {"a": 1}, lambda out: None)
    env = json.loads((tmp_path / "run" / "manifest.json").read_text())["environment"]
    assert env["python"].count(".") == 2 and env["platform"]
    libraries = env["libraries"]
    for name in (
        "torch",
        "transformers",
        "sentence-transformers",
        "faiss",
        "vector-quantize-pytorch",
        "scikit-learn",
        "numpy",
        "polars",
    ):
        assert name in libraries
    assert libraries["numpy"] == metadata.version("numpy")
    assert libraries["torch"] == metadata.version("torch")
    assert libraries["faiss"] is not None
