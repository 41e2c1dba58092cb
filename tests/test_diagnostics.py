"""Diagnostics against hand-computed values on crafted cases, and the `semid ids` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from semid.cli.ids import ids_app
from semid.quantizers import QuantizerConfig, build_ids
from semid.quantizers.diagnostics import (
    diagnose,
    explained_variance,
    format_diagnostics,
    gini,
    level_usage,
    prefix_collisions,
    semantic_coherence,
)


def test_collapsed_codebook_is_reported_as_collapsed() -> None:
    codes = np.zeros((10, 1), dtype=np.int64)
    (level,) = level_usage(codes, [4])
    assert level["codes_used"] == 1
    assert level["usage"] == 0.25
    assert level["perplexity"] == pytest.approx(1.0)
    assert level["gini"] == pytest.approx(0.75)  # (K-1)/K


def test_uniform_usage_and_known_gini() -> None:
    codes = np.repeat(np.arange(4), 5)[:, None]
    (level,) = level_usage(codes, [4])
    assert level["perplexity"] == pytest.approx(4.0)
    assert level["gini"] == pytest.approx(0.0)
    # counts 1, 1, 2: mean absolute difference 4/9, mean 4/3 -> G = (4/9) / (2 * 4/3) = 1/6
    assert gini(np.array([1, 2, 1])) == pytest.approx(1 / 6)


def test_prefix_collisions_by_hand() -> None:
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 2]])
    depth1, depth2 = prefix_collisions(codes)
    assert depth1 == {
        "depth": 1,
        "distinct": 2,
        "shared_share": 0.75,
        "largest_bucket": 3,
        "unreachable": 2,
    }
    assert depth2 == {
        "depth": 2,
        "distinct": 3,
        "shared_share": 0.5,
        "largest_bucket": 2,
        "unreachable": 1,
    }


def test_explained_variance() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    assert explained_variance(X, X) == pytest.approx(1.0)
    assert explained_variance(X, np.broadcast_to(X.mean(0), X.shape)) == pytest.approx(0.0)
    assert explained_variance(X, X.mean(0) + 0.5 * (X - X.mean(0))) == pytest.approx(0.75)


def test_semantic_coherence_two_clusters() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [rng.normal(size=(20, 3)) + [10, 0, 0], rng.normal(size=(20, 3)) - [10, 0, 0]]
    )
    good = np.repeat([[0], [1]], 20, axis=0)
    coh = semantic_coherence(X, good, max_depth=1)
    assert coh["nn_same_depth_1"] == 1.0
    assert coh["random_depth_1"] == pytest.approx(0.5)  # two buckets of half the items
    scrambled = np.tile([[0], [1]], (20, 1))
    assert semantic_coherence(X, scrambled, max_depth=1)["nn_same_depth_1"] < 0.8


def test_diagnose_and_format() -> None:
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 2]])
    d = diagnose(codes, [2, 4])
    assert d["collisions"]["unreachable_without_disambiguation"] == 1
    assert d["collisions"]["distinct_ids"] == 3
    assert [lv["codes_used"] for lv in d["per_level"]] == [2, 3]
    text = format_diagnostics(d)
    assert "| level | K | codes used | usage | perplexity | Gini |" in text
    assert "| 2 | 4 | 3 | 0.750 |" in text


def test_cli_inspect_run_dir_and_codes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    ids_dir = tmp_path / "cache" / "ids" / "abc"
    build_ids(QuantizerConfig(levels=2, codebook_size=4), {"item": X}, ids_dir, 0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = {"stages": {"ids": {"path": str(ids_dir)}}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    runner = CliRunner()
    result = runner.invoke(ids_app, ["inspect", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "ID space item" in result.output and "perplexity" in result.output
    result = runner.invoke(ids_app, ["inspect", str(ids_dir / "item" / "codes.npy")])
    assert result.exit_code == 0, result.output
    assert "unreachable" in result.output


def test_cli_fit(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.normal(size=(100, 6)).astype(np.float32))
    out = tmp_path / "ids"
    result = CliRunner().invoke(
        ids_app,
        [
            "fit",
            str(tmp_path / "emb.npy"),
            "--out",
            str(out),
            "--levels",
            "2",
            "--codebook-size",
            "4",
            "--set",
            "kmeans.niter=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert np.load(out / "item" / "codes.npy").shape == (100, 3)
    json_cfg = json.loads((out / "item" / "space.json").read_text())["params"]
    assert json_cfg["kmeans"]["niter"] == 5
