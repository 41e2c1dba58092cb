"""ID assignment, the ids stage's artifacts, and loading them back."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from semid.errors import DataError
from semid.quantizers import (
    QuantizerConfig,
    assign_ids,
    build_ids,
    load_ids,
    load_quantizer,
    semantic_id_strings,
)

CODES = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1], [0, 0]])


def test_assign_ids_appends_group_index_in_item_order() -> None:
    ids = assign_ids(CODES, disambiguation=True)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, :2], CODES)
    assert ids[:, 2].tolist() == [0, 0, 1, 2, 0, 1]
    assert len({tuple(r) for r in ids.tolist()}) == len(ids)


def test_assign_ids_without_disambiguation_keeps_collisions() -> None:
    ids = assign_ids(CODES, disambiguation=False)
    np.testing.assert_array_equal(ids, CODES)
    assert len({tuple(r) for r in ids.tolist()}) == 3


def test_assign_ids_continues_existing_groups() -> None:
    old = assign_ids(CODES, disambiguation=True)
    new = assign_ids(np.array([[1, 2], [5, 5], [0, 0]]), True, existing=old)
    assert new.tolist() == [[1, 2, 3], [5, 5, 0], [0, 0, 2]]
    everything = np.concatenate([old, new])
    assert len({tuple(r) for r in everything.tolist()}) == len(everything)


def test_assign_ids_rejects_bad_shapes() -> None:
    with pytest.raises(DataError, match="2-D"):
        assign_ids(np.array([1, 2, 3]), True)
    with pytest.raises(DataError, match=r"existing: expected shape \(m, 3\)"):
        assign_ids(CODES, True, existing=CODES)


def test_semantic_id_strings() -> None:
    assert semantic_id_strings(np.array([[12, 201, 7, 0]])) == ["<a_12><b_201><c_7><d_0>"]


def _clustered(n: int = 200, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32)


def test_build_ids_writes_a_loadable_space(tmp_path) -> None:
    X = _clustered()
    cfg = QuantizerConfig(name="rq-kmeans", levels=2, codebook_size=4)
    titles = [f"movie {i}" for i in range(200)]
    item_ids = np.arange(1000, 1200)
    facts = build_ids(cfg, {"item": X}, tmp_path, 0, item_titles=titles, item_ids=item_ids)
    folder = tmp_path / "item"
    for name in (
        "codes.npy",
        "space.json",
        "quantizer.pkl",
        "diagnostics.json",
        "training_log.json",
        "id_table.csv",
        "code_usage.png",
        "bucket_sizes.png",
    ):
        assert (folder / name).is_file(), name
    space = load_ids(tmp_path)["item"]
    assert space.codes.shape == (200, 3) and space.codes.dtype == np.int64
    assert space.levels == 2 and space.disambiguation is True
    largest = int(facts["item"]["largest_bucket"])
    assert space.cardinalities == [4, 4, largest]
    assert space.codes[:, 2].max() + 1 == largest
    assert len({tuple(r) for r in space.codes.tolist()}) == 200
    # a new process can encode new items with the saved quantizer, same codes as the fit
    quantizer = load_quantizer(folder)
    np.testing.assert_array_equal(quantizer.encode(X), space.codes[:, :2])
    table = pl.read_csv(folder / "id_table.csv")
    assert table.columns == ["item_id", "title", "semantic_id"]
    assert table["item_id"][0] == 1000 and table["title"][0] == "movie 0"
    assert table["semantic_id"][0] == "".join(
        f"<{c}_{v}>" for c, v in zip("abc", space.codes[0], strict=True)
    )
    meta = json.loads((folder / "space.json").read_text())
    assert meta["quantizer"] == "rq-kmeans" and meta["params"]["codebook_size"] == 4
    assert (folder / "code_usage.png").read_bytes()[:4] == b"\x89PNG"


def test_build_ids_separate_spaces_without_disambiguation(tmp_path) -> None:
    cfg = QuantizerConfig(name="rq-kmeans", levels=1, codebook_size=4, disambiguation=False)
    build_ids(cfg, {"search": _clustered(seed=1), "rec": _clustered(seed=2)}, tmp_path, 0)
    spaces = load_ids(tmp_path)
    assert sorted(spaces) == ["rec", "search"]
    for space in spaces.values():
        assert space.codes.shape == (200, 1) and space.cardinalities == [4]
        diag = json.loads((tmp_path / space.name / "diagnostics.json").read_text())
        # 200 items in 4 buckets: 196 cannot be reached without a disambiguation token
        assert diag["collisions"]["unreachable_without_disambiguation"] == 196


def test_load_ids_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="no ID spaces"):
        load_ids(tmp_path)
    with pytest.raises(DataError, match="no quantizer.pkl"):
        load_quantizer(tmp_path)
