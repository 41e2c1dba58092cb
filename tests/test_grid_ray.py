"""``semid grid --backend ray`` on a local Ray cluster (2 CPUs) started by the test: the same
results as the local backend, no stage built twice, and a cell whose worker dies resumes."""

import os
import uuid
from pathlib import Path

import pytest
from test_grid import SPEC, builds_of, fake_materials, fake_pipeline, fake_stage_keys
from test_grid import build_log as build_log  # noqa: F401 (fixture)

from semid.grid import expand_grid, run_grid
from semid.io import read_json, stable_hash
from semid.runs import Run

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def dying_pipeline(cfg, runs_dir, cache_dir):
    """fake_pipeline, but the worker process dies (once) after the cell's ids stage."""
    log_dir = Path(os.environ["FAKE_BUILD_LOG"])
    flag = log_dir / f"DIE-{cfg.name}"
    if flag.exists():
        run = Run(Path(runs_dir) / cfg.name, cache_dir)
        for stage, material in list(fake_materials(cfg).items())[:4]:

            def build(out, stage=stage, material=material):
                (log_dir / f"{stage}.{stable_hash(material)}.{uuid.uuid4().hex}.start").touch()
                (out / "artifact.txt").write_text(stage)

            run.stage(stage, material, build)
        flag.unlink()
        os._exit(1)  # a killed worker: Ray retries the task, which resumes from the cache
    return fake_pipeline(cfg, runs_dir, cache_dir)


@pytest.fixture
def cluster(build_log, monkeypatch):
    tests = str(Path(__file__).parent)
    src = str(Path(__file__).parents[1] / "src")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([src, tests, os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("FAKE_SLEEP", "0.1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield build_log
    ray.shutdown()


def test_ray_backend_matches_local_and_builds_each_stage_once(tmp_path, cluster):
    from semid.grid_ray import run_grid_ray

    spec = {**SPEC, "axes": {"embedding.space": ["content", "search"], "seed": [0, 1]}}
    grid = expand_grid(spec)
    (cluster / "DIE-search__s1").touch()
    statuses = run_grid_ray(
        grid,
        tmp_path / "ray",
        cpus_per_cell=1,
        pipeline=dying_pipeline,
        stage_keys=fake_stage_keys,
        poll_seconds=0.05,
    )
    assert set(statuses.values()) == {"done"}, statuses
    built = builds_of(cluster)
    assert len(built) == len(set(built))  # no stage twice, the killed cell's ids included
    assert not (cluster / "DIE-search__s1").exists()  # the worker did die once

    local_log = tmp_path / "local-builds"
    local_log.mkdir()
    os.environ["FAKE_BUILD_LOG"] = str(local_log)
    run_grid(grid, tmp_path / "local", pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert sorted(builds_of(local_log)) == sorted(built)

    def results(folder):
        rows = read_json(folder / "results.json")["cells"]
        return sorted((r["cell"], r["status"], str(r.get("metrics"))) for r in rows)

    assert results(tmp_path / "ray") == results(tmp_path / "local")
    again = run_grid_ray(grid, tmp_path / "ray", pipeline=fake_pipeline, stage_keys=fake_stage_keys)
    assert set(again.values()) == {"skipped"}
