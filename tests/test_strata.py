"""Strata of held-out inputs: code bucket sizes, title-naming queries, per-stratum recall."""

import json

import numpy as np
import polars as pl
import pytest

from semid.reports.strata import (
    bucket_label,
    code_bucket_sizes,
    names_title,
    search_strata,
    shared_code_items,
    strata_over_seeds,
)


def _write_space(path, codes, levels):
    space = path / "search"
    space.mkdir(parents=True)
    np.save(space / "codes.npy", np.asarray(codes))
    (space / "space.json").write_text(json.dumps({"levels": levels}))


def test_bucket_sizes_ignore_the_disambiguation_column(tmp_path):
    # items 0,1,2 share (1, 2) before the last (disambiguation) column; item 3 is alone
    _write_space(tmp_path, [[1, 2, 0], [1, 2, 1], [1, 2, 2], [1, 3, 0]], levels=2)
    sizes, levels = code_bucket_sizes(tmp_path)
    assert levels == 2
    assert sizes.tolist() == [3, 3, 3, 1]
    shared, _ = shared_code_items(tmp_path)
    assert shared.tolist() == [True, True, True, False]


def test_bucket_labels():
    assert [bucket_label(s) for s in (1, 2, 4, 5, 40)] == ["1", "2-4", "2-4", "5+", "5+"]


def test_names_title_ignores_case_and_partial_words():
    titles = ["Toy Story", "Up", ""]
    queries = ["is toy story worth it?", "movies about growing up", "upside down", "anything"]
    assert names_title(queries, [0, 1, 1, 2], titles).tolist() == [True, True, False, False]


def test_search_strata_recall_by_hand():
    preds = pl.DataFrame(
        {
            "task": ["search"] * 4 + ["rec"],
            "method": ["generative"] * 5,
            "input": ["Toy Story", "a toy movie", "Up", "balloons", "1 2 3"],
            "target": [0, 0, 1, 1, 0],
            "rank": [0, 40, 3, -1, 0],  # k = 30: hits on rows 0 and 2
        }
    )
    sizes = np.array([2, 1])  # item 0 shares its code, item 1 does not
    table = search_strata(preds, sizes, ["Toy Story", "Up"], k=30)
    got = {(r["stratum"], r["value"]): (r["recall"], r["n"]) for r in table.iter_rows(named=True)}
    assert got == {
        ("code", "shared"): (0.5, 2),
        ("code", "unique"): (0.5, 2),
        ("bucket", "2-4"): (0.5, 2),
        ("bucket", "1"): (0.5, 2),
        ("query", "names title"): (1.0, 2),
        ("query", "no title"): (0.0, 2),
    }


def test_strata_over_seeds_mean_and_std_by_hand():
    def table(recall):
        return pl.DataFrame(
            {
                "task": ["search", "rec"],
                "method": ["generative"] * 2,
                "stratum": ["code"] * 2,
                "value": ["unique"] * 2,
                "recall": [recall, 0.9],
                "n": [10, 10],
            },
            schema_overrides={"n": pl.UInt32},
        )

    out = strata_over_seeds({"b": [table(0.2), table(0.4)], "a": [table(0.5)]})
    rows = out.to_dicts()
    assert [r["row"] for r in rows] == ["b", "a"]  # grid order, not alphabetical
    assert rows[0]["mean"] == pytest.approx(0.3)
    assert rows[0]["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert (rows[0]["seeds"], rows[1]["seeds"], rows[1]["std"]) == (2, 1, 0.0)


def test_rewrite_run_report_names_what_is_missing(tmp_path):
    from semid.errors import ConfigError
    from semid.reports.report import rewrite_run_report

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"not a finished semid run \(metrics.json missing\)"):
        rewrite_run_report(tmp_path)


def test_study_strata_table_one_line_per_row():
    from semid.reports.breakdowns import strata_table

    def table(named, other):
        return pl.DataFrame(
            {
                "task": ["search"] * 3,
                "method": ["generative"] * 3,
                "stratum": ["query", "query", "bucket"],
                "value": ["names title", "no title", "1"],
                "recall": [named, other, 0.5],
                "n": [6, 4, 10],
            },
            schema_overrides={"n": pl.UInt32},
        )

    text = strata_table(strata_over_seeds({"rq-kmeans": [table(0.9, 0.5), table(0.7, 0.3)]}), 30)
    line = next(t for t in text.splitlines() if t.startswith("| rq-kmeans"))
    assert line == (
        "| rq-kmeans | 2 | 0.8000 ± 0.1414 (6) | 0.4000 ± 0.1414 (4) | 0.5000 ± 0.0000 (10) "
        "| — | — |"
    )


def test_cli_report_on_a_run_directory_rewrites_its_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import semid.reports.report as report
    from semid.cli.main import app

    seen = []
    monkeypatch.setattr(report, "rewrite_run_report", lambda d: seen.append(d) or d / "report.md")
    (tmp_path / "manifest.json").write_text("{}")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path]
