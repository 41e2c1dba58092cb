import json
import os
import time
import uuid
from pathlib import Path

import pytest

from semid.errors import ConfigError
from semid.grid import (
    CELL_DONE_FILE,
    CELL_FAILED_FILE,
    expand_grid,
    load_grid,
    order_cells,
    run_grid,
    stage_sharing,
)
from semid.io import read_json, stable_hash, write_json
from semid.runs import Run, stage_folder, stage_kind

GRIDS = Path(__file__).resolve().parents[1] / "grids"

SPEC = {
    "name": "t",
    "base": {"preset": "smoke", "set": {"quantizer.name": "rq-kmeans", "train": {"epochs": 2}}},
    "presets": {
        "cpu": {"set": {"eval.max_search_queries": 50}, "axes": {"seed": [7]}},
        "paper": {"preset": "default", "set": {"train.lr": 0.002}},
    },
    "axes": {
        "embedding.space": ["content", "search"],
        "quantizer.shape": ["2x16", "3x8"],
        "seed": [0, 1],
    },
    "baseline": {"embedding.space": "content"},
}


# --- a cheap pipeline with the real stage cache (module level: picklable for --jobs) ----------


def fake_materials(cfg) -> dict[str, dict]:
    """Stage key materials chained like the pipeline's; here the seed only reaches the model."""
    d = cfg.model_dump(mode="json")
    parts = {
        "data": ("data",),
        "splits": ("queries",),
        "embeddings": ("embedding",),
        "ids": ("quantizer",),
        "model": ("model", "train", "seed"),
        "evaluate": ("eval",),
    }
    materials, upstream = {}, None
    for stage, fields in parts.items():
        materials[stage] = {"up": upstream, **{f: d[f] for f in fields}}
        upstream = stable_hash(materials[stage])
    return materials


def fake_stage_keys(cfg) -> dict[str, str]:
    return {stage: stable_hash(m) for stage, m in fake_materials(cfg).items()}


def fake_pipeline(cfg, runs_dir, cache_dir):
    """Builds every stage through semid.runs.Run; logs each build; fails on a flag file."""
    builds = Path(os.environ["FAKE_BUILD_LOG"])
    run = Run(Path(runs_dir) / cfg.name, cache_dir)
    write_json(run.run_dir / "config.json", cfg.model_dump(mode="json"))
    for stage, material in fake_materials(cfg).items():

        def build(out, stage=stage, material=material):
            key = stable_hash(material)
            (builds / f"{stage}.{key}.{uuid.uuid4().hex}.start").touch()
            time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
            flag = builds / f"FAIL-{cfg.name}-{stage}"
            if flag.exists():
                error = flag.read_text()
                flag.unlink()
                raise KeyboardInterrupt if error == "kill" else RuntimeError(error)
            (out / "artifact.txt").write_text(stage)
            return {}

        run.stage(stage, material, build)
    write_json(run.run_dir / "metrics.json", {"generative": {"search": {"recall@30": 0.5}}})
    return run.run_dir


def builds_of(log_dir: Path) -> list[tuple[str, str]]:
    return [tuple(p.name.split(".")[:2]) for p in log_dir.glob("*.start")]


@pytest.fixture
def build_log(tmp_path, monkeypatch):
    log_dir = tmp_path / "builds"
    log_dir.mkdir()
    monkeypatch.setenv("FAKE_BUILD_LOG", str(log_dir))
    monkeypatch.setenv("FAKE_SLEEP", "0")
    return log_dir


# --- expansion -------------------------------------------------------------------------------


def test_expansion_is_the_product_with_readable_stable_names():
    grid = expand_grid(SPEC)
    names = [c.name for c in grid.cells]
    assert len(names) == 8 and len(set(names)) == 8
    assert names[:3] == ["content__2x16__s0", "content__2x16__s1", "content__3x8__s0"]
    assert names == [c.name for c in expand_grid(SPEC).cells]  # stable
    cell = {c.name: c for c in grid.cells}["search__3x8__s1"]
    cfg = cell.config
    assert (cfg.embedding.space, cfg.quantizer.levels, cfg.quantizer.codebook_size) == (
        "search",
        3,
        8,
    )
    assert cfg.seed == 1 and cfg.name == "search__3x8__s1"
    assert cfg.train.epochs == 2  # base.set, nested form
    assert cfg.data.max_items == 600  # the base's semid preset (smoke)
    assert cell.group == "search__3x8" and grid.group_over == "seed"
    assert grid.baseline == {"embedding.space": "content"}


def test_grid_presets_and_overrides():
    cpu = expand_grid(SPEC, preset="cpu", overrides=["train.lr=0.01"])
    assert [c.name for c in cpu.cells] == [
        "content__2x16__s7",
        "content__3x8__s7",
        "search__2x16__s7",
        "search__3x8__s7",
    ]
    assert all(c.config.eval.max_search_queries == 50 for c in cpu.cells)
    assert all(c.config.train.lr == 0.01 and c.config.train.epochs == 2 for c in cpu.cells)
    paper = expand_grid(SPEC, preset="paper")
    assert paper.cells[0].config.data.max_items is None  # preset switched to `default`
    assert paper.cells[0].config.train.lr == 0.002


def test_named_axis_labels_and_subset_in_preset():
    spec = {
        "axes": {
            "variant": {
                "defaults": {"quantizer.name": "rq-vae-defaults"},
                "dead-code": {
                    "quantizer": {
                        "name": "rq-vae-defaults",
                        "vae": {"threshold_ema_dead_code": 2.0},
                    }
                },
                "no-disambiguation": {"quantizer.disambiguation": False},
            },
            "quantizer.disambiguation": [True],
            "train.epochs": [1.5],
        },
        "presets": {"cpu": {"axes": {"variant": ["dead-code"]}}},
    }
    grid = expand_grid(spec)
    names = [c.name for c in grid.cells]
    assert names[0] == "defaults__disambiguation-on__epochs1.5"
    dead = grid.cells[1].config.quantizer
    assert dead.name == "rq-vae-defaults" and dead.vae.threshold_ema_dead_code == 2.0
    assert grid.group_over is None
    assert [c.name for c in expand_grid(spec, preset="cpu").cells] == [
        "dead-code__disambiguation-on__epochs1.5"
    ]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"axes": {"embedding.spac": ["content"]}},
            r"axes\.embedding\.spac: unknown config option",
        ),
        ({"axes": {"seed": [0], "quantizer.nonsense": [1]}}, "quantizer.nonsense"),
        ({"axes": {"quantizer.shape": ["2-256"]}}, r"axes\.quantizer\.shape: '2-256'"),
        ({"axes": {"embedding.space": ["nope"]}}, "cell nope: option embedding.space"),
        ({"axes": {"seed": []}}, r"axes\.seed: has no values"),
        ({"base": {"set": {"train.epoch": 1}}}, r"base\.set: train\.epoch: unknown config"),
        ({"baseline": {"quantizer.name": "x"}}, r"baseline\.quantizer\.name: not an axis"),
        ({"baseline": {"embedding.space": "rec"}}, r"baseline\.embedding\.space: 'rec'"),
        ({"baseline": {"seed": 0}}, r"baseline\.seed: not an axis"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"presets": {"cpu": {"axes": {"seed": [0]}, "sett": {}}}}, r"presets\.cpu: unknown key"),
    ],
)
def test_invalid_grid_names_the_key(change, message):
    spec = {**SPEC, **change}
    with pytest.raises(ConfigError, match=message):
        expand_grid(spec, preset="cpu" if "presets" in change else None)


def test_unknown_preset_and_axis_override():
    with pytest.raises(ConfigError, match="--preset gpu: unknown grid preset"):
        expand_grid(SPEC, preset="gpu")
    with pytest.raises(ConfigError, match="--set seed: is an axis"):
        expand_grid(SPEC, overrides=["seed=3"])
    with pytest.raises(ConfigError, match="--set quantizer.levels: is an axis"):
        expand_grid(SPEC, overrides=["quantizer.levels=3"])
    with pytest.raises(ConfigError, match="--set train.nope: unknown config option"):
        expand_grid(SPEC, overrides=["train.nope=3"])


def test_shipped_grids_expand_for_every_preset():
    files = sorted(GRIDS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"paper-table1", "paper-table2", "paper-table3", "rq-vae-study"} <= names
    for path in files:
        spec = load_grid(path)
        assert spec.cells and spec.baseline, path
        for preset in ("cpu", "paper"):
            grid = load_grid(path, preset=preset)
            if preset == "paper":
                if path.stem.startswith("paper-"):
                    assert {c.config.quantizer.levels for c in grid.cells} == {2}, path
                    assert {c.config.quantizer.codebook_size for c in grid.cells} == {256}, path
                # five seeds: run seeds, or training seeds (quantizer + generator) on one split
                seeds = {
                    (c.config.seed, c.config.train.seed, c.config.quantizer.seed)
                    for c in grid.cells
                }
                assert len(seeds) == 5, path
                assert all(c.config.queries.per_item == 20 for c in grid.cells), path
            else:
                # a cpu preset fits a few hours here: <= 18 cells (the study: 6 rows x 3 seeds)
                assert len(grid.cells) <= 18, (path, len(grid.cells))


def test_rq_vae_study_ablations_are_one_knob_from_defaults():
    from semid.quantizers.config import RQ_VAE_TUNED, VAEConfig

    grid = load_grid(GRIDS / "rq-vae-study.yaml", preset="paper")
    defaults = VAEConfig().model_dump()
    by_group = {c.group: c.config.quantizer for c in grid.cells}
    assert by_group["rq-vae-tuned"].vae.model_dump() == VAEConfig(**RQ_VAE_TUNED).model_dump()
    covered = set()
    for group, q in by_group.items():
        if not group.startswith("defaults+"):
            continue
        assert q.name == "rq-vae-defaults" and (q.levels, q.codebook_size) == (2, 256)
        changed = {k for k, v in q.vae.model_dump().items() if defaults[k] != v}
        assert changed, group
        for key in changed & set(RQ_VAE_TUNED):  # a knob of the tuned recipe: its value
            assert getattr(q.vae, key) == RQ_VAE_TUNED[key], (group, key)
        covered |= changed
    assert set(RQ_VAE_TUNED) <= covered  # every knob of the recipe is ablated


# --- running ---------------------------------------------------------------------------------


def test_order_groups_cells_that_share_stages():
    grid = expand_grid(SPEC)
    keys = {c.name: fake_stage_keys(c.config) for c in grid.cells}
    ordered = [c.name for c in order_cells(list(reversed(grid.cells)), keys)]
    ids = [keys[n]["ids"] for n in ordered]
    # each ID set appears in one contiguous run (one ID set feeds all its seeds)
    assert len([i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]) == len(set(ids))
    embeddings = [keys[n]["embeddings"] for n in ordered]
    changes = [i for i in range(1, len(embeddings)) if embeddings[i] != embeddings[i - 1]]
    assert len(changes) == 1


def test_cells_share_stage_folders_and_a_rerun_skips_them(tmp_path, build_log):
    grid = expand_grid(SPEC)
    out = tmp_path / "out"
    statuses = run_grid(grid, out, pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert set(statuses.values()) == {"done"}
    manifests = {c.name: read_json(out / c.name / "manifest.json")["stages"] for c in grid.cells}
    a, b = manifests["search__2x16__s0"], manifests["search__2x16__s1"]  # differ in seed only
    for stage in ("data", "splits", "embeddings", "ids"):
        assert a[stage]["path"] == b[stage]["path"]
    assert a["model"]["path"] != b["model"]["path"]
    assert manifests["content__2x16__s0"]["embeddings"]["path"] != a["embeddings"]["path"]
    built = builds_of(build_log)
    assert len(built) == len(set(built))  # no stage folder built twice
    assert sum(s == "ids" for s, _ in built) == 4 and sum(s == "model" for s, _ in built) == 8
    results = read_json(out / "results.json")
    assert [c["status"] for c in results["cells"]] == ["done"] * 8
    assert (out / "results.parquet").exists()
    assert read_json(out / "grid.json")["baseline"] == {"embedding.space": "content"}
    rerun = run_grid(grid, out, pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert set(rerun.values()) == {"skipped"} and len(builds_of(build_log)) == len(built)
    sharing = stage_sharing({c.name: fake_stage_keys(c.config) for c in grid.cells}, out / ".cache")
    assert sharing["ids"] == (8, 4, 4) and sharing["data"] == (8, 1, 1)


def test_grid_resumes_after_a_kill_and_after_a_failure(tmp_path, build_log):
    grid = expand_grid(SPEC, preset="cpu")
    out = tmp_path / "out"
    (build_log / "FAIL-content__3x8__s7-model").write_text("kill")
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, out, pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert (out / "content__2x16__s7" / CELL_DONE_FILE).exists()
    assert not (out / "content__3x8__s7" / CELL_DONE_FILE).exists()
    killed = {c.name: c for c in grid.cells}["content__3x8__s7"]
    killed_ids = ("ids", fake_stage_keys(killed.config)["ids"])
    assert killed_ids in builds_of(build_log)
    (build_log / "FAIL-search__2x16__s7-evaluate").write_text("disk full")
    statuses = run_grid(grid, out, pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert statuses["content__2x16__s7"] == "skipped"
    assert statuses["content__3x8__s7"] == "done"
    assert statuses["search__2x16__s7"] == "failed: RuntimeError: disk full"
    assert statuses["search__3x8__s7"] == "done"
    # the killed cell resumed from the cache: its ID set was not rebuilt
    assert builds_of(build_log).count(killed_ids) == 1
    assert (out / "search__2x16__s7" / CELL_FAILED_FILE).exists()
    results = {c["cell"]: c for c in read_json(out / "results.json")["cells"]}
    assert results["search__2x16__s7"]["status"] == "failed"
    final = run_grid(grid, out, pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert final["search__2x16__s7"] == "done" and list(final.values()).count("skipped") == 3
    assert not (out / "search__2x16__s7" / CELL_FAILED_FILE).exists()
    built = builds_of(build_log)
    assert sum(s == "model" for s, _ in built) == 5  # 4 cells + the killed attempt
    assert len(set(built)) == 4 * 2 + 4 + 2 + 1 + 1  # evaluate+model 4 each, ids 4, emb 2, ...


def test_a_changed_config_reruns_a_done_cell(tmp_path, build_log):
    out = tmp_path / "out"
    run_grid(
        expand_grid(SPEC, preset="cpu"), out, pipeline=fake_pipeline, stage_keys=fake_stage_keys
    )
    again = run_grid(
        expand_grid(SPEC, preset="cpu", overrides=["eval.beam_size=7"]),
        out,
        pipeline=fake_pipeline,
        stage_keys=fake_stage_keys,
    )
    assert set(again.values()) == {"done"}
    assert sum(s == "model" for s, _ in builds_of(build_log)) == 4  # model stages reused


def test_parallel_jobs_never_build_one_stage_twice(tmp_path, build_log, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.15")
    spec = {**SPEC, "axes": {"embedding.space": ["content", "search"], "seed": [0, 1]}}
    grid = expand_grid(spec)
    out = tmp_path / "out"
    statuses = run_grid(
        grid, out, jobs=2, pipeline=fake_pipeline, stage_keys=fake_stage_keys, poll_seconds=0.05
    )
    assert set(statuses.values()) == {"done"}, statuses
    built = builds_of(build_log)
    assert len(built) == len(set(built))
    assert sum(s == "model" for s, _ in built) == 4 and sum(s == "data" for s, _ in built) == 1
    assert all((out / c.name / "grid.log").exists() for c in grid.cells)


def test_cli_dry_run_lists_cells_and_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from semid.cli import app

    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(json.dumps({**SPEC, "name": "mini"}))
    runner = CliRunner()
    out = tmp_path / "res"
    dry = runner.invoke(
        app, ["grid", str(grid_file), "--preset", "cpu", "--runs-dir", str(out), "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "search__3x8__s7" in dry.output and "quantizer.levels=3" in dry.output
    assert "stage folders" in dry.output and not out.exists()
    bad = runner.invoke(app, ["grid", str(grid_file), "--preset", "nope"])
    assert isinstance(bad.exception, ConfigError)
    missing = runner.invoke(app, ["report", str(tmp_path)])
    assert isinstance(missing.exception, ConfigError)
    assert "grid.json missing" in str(missing.exception)


def test_real_pipeline_keys_are_shared_as_configs_agree(tmp_path, monkeypatch):
    """The real pipeline with every stage's build replaced by a no-op: keys and sharing."""
    import semid.pipeline
    from semid.grid import pipeline_stage_keys

    original = Run.stage

    def no_build(self, name, material, build, force=False, **kwargs):
        return original(self, name, material, lambda out: {}, force, **kwargs)

    monkeypatch.setattr(Run, "stage", no_build)
    monkeypatch.setattr(
        semid.pipeline,
        "finalize_run",
        lambda state: write_json(state.run.run_dir / "metrics.json", {}),
    )
    spec = {
        "base": {"preset": "smoke"},
        "axes": {
            "embedding.space": ["content", "search"],
            "quantizer.shape": ["2x16", "2x32"],
            "seed": [0, 1],
        },
    }
    grid = expand_grid(spec)
    out = tmp_path / "out"
    assert set(run_grid(grid, out).values()) == {"done"}
    stages = {c.name: read_json(out / c.name / "manifest.json")["stages"] for c in grid.cells}
    for cell in grid.cells:  # the runner's dry key computation matches the pipeline's
        assert {s: v["key"] for s, v in stages[cell.name].items()} == pipeline_stage_keys(
            cell.config
        )

    def shared(a, b):
        return [s for s in stages[a] if stages[a][s]["path"] == stages[b][s]["path"]]

    assert shared("content__2x16__s0", "content__2x32__s0") == [
        "data",
        "splits",
        "embeddings",
        "text_vectors",  # text-t5's training-text vectors depend on the encoder, not the IDs
        "reference",  # the embedding's own kNN depends on the embeddings, not on the IDs
        "baselines",  # popularity / BM25 / SASRec depend on neither
    ]
    assert shared("content__2x16__s0", "search__2x16__s0") == ["data", "splits", "baselines"]
    assert "data" in shared("content__2x16__s0", "content__2x16__s1")
    assert "model" not in shared("content__2x16__s0", "content__2x16__s1")

    # a composite space builds (or reuses) the search and rec spaces as embedding stages first
    search_cell = next(c for c in grid.cells if c.name == "search__2x16__s0")
    separate = search_cell.config.model_copy(deep=True)
    separate.embedding.space = "separate"
    calls = []
    monkeypatch.setattr(
        Run,
        "stage",
        lambda self, name, material, build, force=False: (
            calls.append(
                (
                    name,
                    stable_hash(material),
                    stage_folder(self.cache_dir, name, stable_hash(material)).exists(),
                )
            )
            or no_build(self, name, material, build, force)
        ),
    )
    semid.pipeline.run_pipeline(
        separate, tmp_path / "sep", cache_dir=out / ".cache", until="embeddings"
    )
    # component stages have names of their own (embeddings/search, embeddings/rec)
    embedding_calls = [c for c in calls if stage_kind(c[0]) == "embeddings"]
    assert len(embedding_calls) == 3  # search, rec, then separate itself
    assert embedding_calls[0][1:] == (stages["search__2x16__s0"]["embeddings"]["key"], True)
    assert not embedding_calls[1][2] and not embedding_calls[2][2]


def test_training_seeds_leave_the_split_and_its_baselines_shared():
    """quantizer.seed + train.seed vary the trained stages only; unset, they are the run seed."""
    from semid.config import load_config
    from semid.grid import pipeline_stage_keys

    def keys(*sets):
        return pipeline_stage_keys(load_config("smoke", overrides=list(sets)))

    base = keys()
    assert keys("quantizer.seed=0", "train.seed=0") == base  # run seed 0 spelled out
    other = keys("quantizer.seed=1", "train.seed=1")
    same = [s for s in base if base[s] == other[s]]
    assert same == ["data", "splits", "embeddings", "text_vectors", "reference", "baselines"]


def test_embedding_seed_varies_trained_spaces_only():
    """embedding.seed moves a trained space's embedding stage (not the splits); content trains
    nothing, so its embedding stage stays shared; unset, it is the run seed."""
    from semid.config import load_config
    from semid.grid import pipeline_stage_keys

    def keys(*sets):
        return pipeline_stage_keys(load_config("smoke", overrides=list(sets)))

    content = keys()
    assert keys("embedding.seed=0") == content  # run seed 0 spelled out
    assert keys("embedding.seed=1")["embeddings"] == content["embeddings"]
    search = keys("embedding.space=search")
    assert keys("embedding.space=search", "embedding.seed=0") == search
    other = keys("embedding.space=search", "embedding.seed=1")
    same = [s for s in search if search[s] == other[s]]
    # the generator reads its texts with the space's tuned encoder: text vectors follow it
    assert same == ["data", "splits", "baselines"]
