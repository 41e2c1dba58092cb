"""The RQ-VAE study's evidence page (semid.reports.evidence) on a small crafted study."""

import numpy as np
import polars as pl
import pytest

from semid.grid import CELL_DONE_FILE, config_hash, expand_grid, write_grid_json
from semid.io import read_json, write_json, write_parquet
from semid.reports.cells import load_study
from semid.reports.evidence import write_evidence_page
from semid.reports.evidence.collect import distinct_codes_in_top_k, downstream, run_setting
from semid.reports.evidence.prose import (
    epochs_text,
    gap_closing,
    knob_summary,
    parameters_text,
    scope_sentence,
)
from semid.reports.evidence.tables import downstream_table, fmt_p, id_row_cells

N_ITEMS, N_EX = 6, 10
UNIQUE = [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]  # every item its own code
COLLAPSED = [[0, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 1]]  # two codes of three items
# variant -> (quantizer settings, codes, search hits, rec hits): the first hits of N_EX examples
VARIANTS = {
    "rq-kmeans": ({"quantizer.name": "rq-kmeans"}, UNIQUE, 6, 4),
    "rq-vae-defaults": ({"quantizer.name": "rq-vae-defaults"}, COLLAPSED, 2, 2),
    "rq-vae-tuned": ({"quantizer.name": "rq-vae-tuned"}, UNIQUE, 5, 4),
    "defaults+standardize": (
        {"quantizer.name": "rq-vae-defaults", "quantizer.vae.normalize": "standardize"},
        UNIQUE,
        6,
        5,
    ),
    "rq-kmeans-no-disambiguation": (
        {"quantizer.name": "rq-kmeans", "quantizer.disambiguation": False},
        UNIQUE,
        6,
        4,
    ),
    "rq-vae-defaults-no-disambiguation": (
        {"quantizer.name": "rq-vae-defaults", "quantizer.disambiguation": False},
        COLLAPSED,
        1,
        2,
    ),
}
TARGETS = np.arange(N_EX) % N_ITEMS  # 0 1 2 3 4 5 0 1 2 3


def _diagnostics(codes):
    codes = np.asarray(codes)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {
        "n_items": len(codes),
        "per_level": [
            {"codes_used": len(set(codes[:, lvl])), "perplexity": 2.0} for lvl in range(2)
        ],
        "collisions": {
            "distinct_ids": len(counts),
            "colliding_items_share": float(counts[counts > 1].sum() / len(codes)),
            "largest_bucket": int(counts.max()),
        },
        "reconstruction": {"explained_variance": 0.5 if len(counts) == N_ITEMS else 0.1},
        "coherence": {"nn_same_depth_1": 0.4 if len(counts) == N_ITEMS else 0.2},
    }


def _write_cell(out, cache, cell, variant):
    _, codes, search_hits, rec_hits = VARIANTS[variant]
    run_dir = out / cell.name
    ids = cache / "ids" / variant
    write_json(
        ids / "item" / "space.json",
        {
            "name": "item",
            "cardinalities": [3, 2] + ([3] if cell.config.quantizer.disambiguation else []),
            "levels": 2,
            "disambiguation": cell.config.quantizer.disambiguation,
        },
    )
    np.save(ids / "item" / "codes.npy", np.asarray(codes, dtype=np.int64))
    write_json(ids / "item" / "diagnostics.json", _diagnostics(codes))
    splits = cache / "splits"
    if not splits.exists():  # items 0 and 1: 6 + 4 of the 20 training interactions = 50%
        train = [[0] * 6, [1] * 4, [2, 3, 4], [5, 2, 3, 4, 5, 3, 4]]
        write_parquet(splits / "sequences.parquet", pl.DataFrame({"train": train}))
    rows, metrics = [], {}
    for task, hits in (("search", search_hits), ("rec", rec_hits)):
        ranks = np.where(np.arange(N_EX) < hits, 0, -1).astype(np.int64)
        metrics[task] = {"recall@30": hits / N_EX}
        rows.append(
            pl.DataFrame(
                {
                    "method": "generative",
                    "task": task,
                    "input": [f"{task} {i}" for i in range(N_EX)],
                    "target": TARGETS.astype(np.int64),
                    "rank": ranks,
                    "predicted": [[0, 1, 2, 3, -1]] * N_EX,
                }
            )
        )
    write_parquet(run_dir / "predictions.parquet", pl.concat(rows))
    write_json(run_dir / "metrics.json", {"generative": metrics})
    write_json(run_dir / "config.json", cell.config.model_dump(mode="json"))
    stage = {"cached": False, "seconds": 1.0, "peak_rss_mb": 10}
    write_json(
        run_dir / "manifest.json",
        {
            "stages": {
                "splits": {"path": str(splits), **stage},
                "ids": {"path": str(ids), **stage},
                "model": {
                    "path": str(cache / "model"),
                    **stage,
                    "facts": {"parameters": 2_512_345},
                },
            }
        },
    )
    write_json(run_dir / CELL_DONE_FILE, {"config_hash": config_hash(cell.config)})


@pytest.fixture
def study_dir(tmp_path):
    spec = {
        "name": "rq-vae-study",
        "base": {
            "preset": "smoke",
            "set": {
                "quantizer.levels": 2,
                "quantizer.codebook_size": 256,
                "train.epochs": 3,
                "eval.beam_size": 12,
            },
        },
        "axes": {"variant": {v: s[0] for v, s in VARIANTS.items()}, "seed": [0]},
    }
    grid = expand_grid(spec)
    out, cache = tmp_path / "res", tmp_path / "cache"
    write_grid_json(grid, out, cache)
    for cell in grid.cells:
        _write_cell(out, cache, cell, cell.labels["variant"])
    return out


def _id_row(catalogue, quantizer, n_items, distinct, shape="2x256"):
    return {
        "catalogue": catalogue,
        "quantizer": quantizer,
        "shape": shape,
        "diagnostics": {
            "n_items": n_items,
            "per_level": [
                {"codes_used": 256, "perplexity": 200.4},
                {"codes_used": 250, "perplexity": 99.6},
            ],
            "collisions": {"distinct_ids": distinct, "colliding_items_share": 0.25},
            "reconstruction": {"explained_variance": 0.4321},
        },
    }


def test_downstream_numbers_hand_computed(study_dir):
    study = load_study(study_dir)
    rows = downstream(study, "rq-kmeans")
    assert rows["rq-kmeans"]["search"]["recall"] == pytest.approx(0.6)
    assert rows["rq-vae-defaults"]["search"]["recall"] == pytest.approx(0.2)
    test = rows["rq-vae-defaults"]["search"]["vs_reference"]
    assert test["kind"] == "bootstrap" and test["n"] == N_EX
    assert test["mean_diff"] == pytest.approx(-0.4)
    assert "vs_reference" not in rows["rq-kmeans"]["search"]
    # collapsed codes: every target shares its code with 2 others; with the token all reachable
    targets = rows["rq-vae-defaults"]["search"]["targets"]
    assert targets["shared_code_share"] == 1.0 and targets["items_per_code"] == 3.0
    assert targets["reachable_share"] == 1.0
    # without the token only items 0 and 3 (first of each code) decode: 4 of the 10 targets
    no_token = rows["rq-vae-defaults-no-disambiguation"]["search"]["targets"]
    assert no_token["reachable_share"] == pytest.approx(0.4)
    assert rows["rq-kmeans"]["search"]["targets"]["shared_code_share"] == 0.0
    assert rows["rq-vae-defaults"]["ids"]["codes_used"] == [1, 2]
    assert rows["rq-vae-defaults"]["ids"]["distinct_ids"] == 2
    # head = items 0 and 1 (10 of 20 interactions): 2 of 6 items; rec targets 0,1,0,1 of 10
    assert rows["_head_share"]["head_item_share"] == pytest.approx(2 / 6)
    assert rows["_head_share"]["head_target_share"] == pytest.approx(0.4)
    # rec hits are the first 4 examples (targets 0 1 2 3): head 2/4 hit, torso 2/6
    assert rows["rq-kmeans"]["rec"]["head"] == pytest.approx(0.5)
    assert rows["rq-kmeans"]["rec"]["torso"] == pytest.approx(2 / 6)


def test_distinct_codes_in_top_k(study_dir):
    study = load_study(study_dir)
    # predicted [0, 1, 2, 3]: four codes with unique IDs, two when collapsed
    assert distinct_codes_in_top_k(study, "rq-kmeans") == 4.0
    assert distinct_codes_in_top_k(study, "rq-vae-defaults") == 2.0
    assert np.isnan(distinct_codes_in_top_k(study, "no-such-row"))


def test_settings_are_read_from_the_runs(study_dir):
    study = load_study(study_dir)
    setting = run_setting(study, "rq-kmeans")
    assert setting["parameters"] == 2_512_345
    assert setting["epochs"] == 3 and setting["beam_size"] == 12
    assert setting["levels"] == 2 and setting["disambiguation"] is True
    assert (
        scope_sentence(setting, 6) == "a 2.5M-parameter generator trained for 3 epochs on 6 items"
    )


def test_number_words():
    assert parameters_text(1_834_000) == "1.8M-parameter"
    assert parameters_text(350_000) == "350k-parameter"
    assert parameters_text(None) == "default-size"
    assert epochs_text(2) == "2 epochs" and epochs_text(1.0) == "1 epoch"
    assert epochs_text(0.5) == "0.5 epochs"
    assert fmt_p(0.0123) == "0.012" and fmt_p(3.1e-5) == "3.1e-05" and fmt_p(None) == "—"


def test_gap_closing_hand_computed():
    def rows(ref, start, end):
        return {g: {"search": {"recall": r}} for g, r in (("r", ref), ("s", start), ("e", end))}

    assert gap_closing(rows(0.6, 0.2, 0.5), "r", "s", "e", "search") == (
        "the tuned recipe closes 75% of the search gap"
    )
    assert "more than closes" in gap_closing(rows(0.6, 0.2, 0.7), "r", "s", "e", "search")
    assert "does not narrow" in gap_closing(rows(0.6, 0.2, 0.1), "r", "s", "e", "search")
    assert "no search gap" in gap_closing(rows(0.2, 0.3, 0.1), "r", "s", "e", "search")


def test_tables(study_dir):
    rows = downstream(load_study(study_dir), "rq-kmeans")
    table = downstream_table(rows, ["rq-kmeans", "rq-vae-defaults", "missing"], "rq-kmeans")
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two rows (missing rows are skipped)
    assert lines[2].startswith("| **rq-kmeans** | 3 | 6 | 0.000 | 0.500 | 0.6000 | — | 0.4000 |")
    assert lines[3].startswith("| rq-vae-defaults | 1 | 2 | 1.000 | 0.100 | 0.2000 |")
    cells = id_row_cells(_id_row("25m", "rq-kmeans", 100, 80))
    assert cells[3:] == ["256/250", "200/100", "80", "0.250", "0.800", "0.432", "—"]
    # defaults+standardize removes the collapse (3 < 200 codes: no) and is not below rq-kmeans
    summary = knob_summary(rows)
    assert "codes used): none." in summary
    assert "on search: defaults+standardize" in summary


def test_page_states_measured_settings(study_dir, tmp_path):
    bench = tmp_path / "bench"
    write_json(
        bench / "quantizers.json",
        {
            "rows": [
                _id_row("ml-latest-small", "rq-kmeans", 6, 6),
                _id_row("25m", "rq-kmeans", 100, 80),
            ]
        },
    )
    out, evidence_path = tmp_path / "docs" / "page.md", tmp_path / "docs" / "evidence.json"
    evidence = write_evidence_page(study_dir, out, evidence_path, bench)
    text = out.read_text()
    assert read_json(evidence_path)["settings"]["rq-kmeans"]["epochs"] == 3
    assert evidence["paper_table3"] == {}
    assert "2.5M-parameter T5 trained from scratch for 3 epochs" in text
    assert "beam 12" in text and "(6 movies)" in text and "2 × 256 codes plus" in text
    assert "1.8M" not in text and "2 epochs" not in text
    assert "the 100-item ML-25M table" in text
    assert "2 × 256 leaves 20 items unreachable" in text and "recall cap 0.800" in text
    assert "a 2.5M-parameter generator trained for 3 epochs on 6 items" in text
    assert "(paper-table3 grid not run)" in text
    # the defaults' epochs and optimizer come from the rq-vae-defaults cell's config
    assert "trained 20 epochs with `adam`" in text
    # verdict sentences, hand computed: rq-kmeans 0.6, defaults 0.2, tuned 0.5 on search
    assert "- **search, content space, with the token**: defaults search 0.2000 vs 0.6000 " in text
    assert "(difference -0.4000, p = " in text and "tuned search 0.5000 vs 0.6000 " in text
    assert "the tuned recipe closes 75% of the search gap" in text
    # rec: defaults 0.2 vs 0.4, tuned 0.4 = rq-kmeans: the whole gap closed
    assert "the tuned recipe closes 100% of the rec gap" in text


def test_page_table3_section(study_dir, tmp_path):
    """A paper-table3 study fills the multitask section in TABLE3_ORDER and the verdict."""
    bench = tmp_path / "bench"
    write_json(bench / "quantizers.json", {"rows": [_id_row("25m", "rq-kmeans", 100, 80)]})
    out, evidence_path = tmp_path / "docs" / "page.md", tmp_path / "docs" / "evidence.json"
    evidence = write_evidence_page(study_dir, out, evidence_path, bench, table3_dir=study_dir)
    assert set(evidence["paper_table3"]) >= {"rq-kmeans", "rq-vae-defaults"}
    text = out.read_text()
    section = text.split("## The same quantizers on the multitask space")[1]
    assert "(paper-table3 grid not run)" not in text
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| **rq-kmeans** | 3 | 6 |")
    assert rows[1].startswith("| rq-vae-defaults | 1 | 2 | 1.000 | 0.100 | 0.2000 |")
    assert "(results/paper-table3-cpu/report.md)" in section
    assert "- **search, multitask space, with the token**: defaults search 0.2000" in text


def test_gap_decomposition_hand_computed():
    from semid.reports.evidence.gaps import decompose, gap_rows, gap_sentences, gap_verdict

    # reference: 60 unique-code targets at 0.8, 40 in 2-4 buckets at 0.5 (overall 0.68);
    # row: 20 at 0.7, 80 at 0.4 (overall 0.46): gap -0.22 = collisions -0.12 + within -0.10
    strata = pl.DataFrame(
        {
            "row": ["ref", "ref", "row", "row", "ref", "ref", "row", "row"],
            "stratum": ["bucket"] * 4 + ["query"] * 4,
            "value": ["1", "2-4", "1", "2-4", "names title", "no title"] * 1
            + ["names title", "no title"],
            "mean": [0.8, 0.5, 0.7, 0.4, 0.9, 0.4, 0.5, 0.4],
            "std": [0.0] * 8,
            "seeds": [3] * 8,
            "n": [60.0, 40.0, 20.0, 80.0, 60.0, 40.0, 60.0, 40.0],
        }
    )
    b = decompose(strata, "row", "ref", "bucket")
    assert b["gap"] == pytest.approx(-0.22)
    assert b["composition"] == pytest.approx(-0.12)
    assert b["within"] == pytest.approx(-0.10)
    q = decompose(strata, "row", "ref", "query")
    assert q["composition"] == pytest.approx(0.0)  # same queries: no mix effect
    assert q["parts"]["names title"] == pytest.approx(0.6 * (0.5 - 0.9))
    assert q["parts"]["no title"] == pytest.approx(0.0)
    # a bucket the row has targets in but the reference has none: no split
    assert decompose(strata, "ref", "row", "bucket") is not None
    gone = strata.filter(~((pl.col("row") == "ref") & (pl.col("value") == "2-4")))
    assert decompose(gone, "row", "ref", "bucket") is None
    gaps = gap_rows(strata, [("row", "ref")])
    assert gaps["row"]["title_share"] == pytest.approx(0.6)
    # all of the query split's -0.24 is on title queries (the share is of that split's gap)
    line = gap_verdict(gaps, "row")
    assert "(-0.2200) is -0.1200 from collisions and -0.1000 within code buckets" in line
    assert "100% of it is on the queries that name the title (60% of the queries)" in line
    ids = {"row": {"codes_used": [256], "nn_same_depth_1": 0.3}, "ref": {"codes_used": [256]}}
    assert "mostly the collision structure" in gap_sentences(gaps, ids)[0]  # 0.12 of 0.22
    ids["row"]["codes_used"] = [3]
    assert (
        "codebook collapse: the first level uses 3 of its codes against 256"
        in (gap_sentences(gaps, ids)[0])
    )


def test_query_set_rows(study_dir):
    from semid.reports.query_sets import query_set_rows, query_sets_table

    rows = {r["row"]: r for r in query_set_rows(load_study(study_dir), 30)}
    assert rows["rq-kmeans"]["search"][0] == pytest.approx(0.6)
    assert np.isnan(rows["rq-kmeans"]["search"][1])  # one seed: no spread
    assert rows["rq-vae-defaults"]["rec"][0] == pytest.approx(0.2)
    assert rows["rq-kmeans"]["search_real"] is None  # no real requests in these cells
    assert "dense" not in rows  # no reference metrics in these cells
    table = query_sets_table(list(rows.values()), 30)
    # sets no cell has (title alone, real requests) and coverage (not in these metrics) are
    # left out
    assert table.splitlines()[0] == "| row | seeds | template search R@30 | rec R@30 |"
    assert "| rq-kmeans | 1 | 0.6000 | 0.4000 |" in table


def test_report_cli_publishes_the_evidence_page(study_dir, tmp_path):
    from typer.testing import CliRunner

    from semid.cli.main import app

    page, publish = tmp_path / "docs" / "rq-vae-study.md", tmp_path / "docs" / "results" / "s"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(study_dir),
            "--publish",
            str(publish),
            "--evidence",
            str(page),
            "--benchmarks",
            str(tmp_path / "no-benchmark"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in publish.iterdir()) == [
        "evidence.json",
        "report.md",
        "results.json",
        "study.json",
        "tradeoff.png",
    ]
    text = page.read_text()
    assert "[`results/s/`](results/s/report.md)" in text
    assert f"semid report RESULTS --publish {publish} --evidence {page}" in text
    assert "(ID-level quantizer benchmark not run)" in text
    assert "Scope: 1 training seed (" in text and "not seeds" in text
    # rq-vae-tuned vs rq-kmeans: both codes unique, so the whole gap is within buckets
    gaps = read_json(publish / "evidence.json")["search_gaps"]
    assert gaps["rq-vae-tuned"]["buckets"]["composition"] == pytest.approx(0.0)
    assert gaps["rq-vae-tuned"]["buckets"]["within"] == pytest.approx(-0.1)
    assert "rq-vae-defaults" not in gaps  # its 3-item buckets have no rq-kmeans counterpart


def test_downstream_p_values_are_holm_corrected_per_reference(study_dir):
    from statsmodels.stats.multitest import multipletests

    from semid.reports.evidence.collect import p_of

    rows = downstream(load_study(study_dir), "rq-kmeans")
    tests = [
        rows[g][t]["vs_reference"]
        for g in rows
        if not g.startswith("_")
        for t in ("search", "rec")
        if "vs_reference" in rows[g][t]
    ]
    assert len(tests) == 2 * (len(VARIANTS) - 1)  # every row but the reference, both tasks
    raw = [t["pvalue"] for t in tests]
    expected = multipletests(raw, method="holm")[1]
    assert [t["pvalue_holm"] for t in tests] == pytest.approx(list(expected))
    assert (
        p_of(rows["rq-vae-tuned"], "search")
        == rows["rq-vae-tuned"]["search"]["vs_reference"]["pvalue_holm"]
    )


def test_page_rewrites_from_its_published_evidence_alone(study_dir, tmp_path):
    from semid.reports.evidence import rerender_evidence_page

    bench = tmp_path / "bench"
    published, out = tmp_path / "published", tmp_path / "docs" / "page.md"
    write_evidence_page(study_dir, out, published / "evidence.json", bench)
    first = out.read_text().splitlines()
    again = out
    evidence = rerender_evidence_page(published, again, bench)
    second = again.read_text().splitlines()
    # identical but for the line naming the command that wrote it
    assert [a for a, b in zip(first, second, strict=True) if a != b] == [first[2]]
    assert second[2] == f"Generated by `semid report {published.as_posix()} --evidence {again}`"
    assert evidence["query_sets"] and "token_effect" in evidence
    with pytest.raises(Exception, match="no evidence.json"):
        rerender_evidence_page(tmp_path / "nowhere", again, bench)
    # a paper-table3 results folder adds its section; evidence.json keeps it for later rewrites
    assert "(paper-table3 grid not run)" in second
    rerender_evidence_page(published, again, bench, table3_dir=study_dir)
    assert read_json(published / "evidence.json")["paper_table3"]
    for _ in range(2):  # with the folder, then from the stored rows alone
        text = again.read_text()
        assert "(paper-table3 grid not run)" not in text
        assert "(results/paper-table3-cpu/report.md)" in text
        assert "--table3 TABLE3_RESULTS" in text
        rerender_evidence_page(published, again, bench)


def test_token_effect_from_results_is_the_paired_t_test_over_seeds():
    from scipy.stats import ttest_rel

    from semid.reports.evidence.page import token_effect_from_results

    def cell(variant, seed, search, rec):
        recall = {"search": {"recall@30": search}, "rec": {"recall@30": rec}}
        return {"labels": {"variant": variant, "seed": seed}, "metrics": {"generative": recall}}

    with_token, without = [0.70, 0.72, 0.75], [0.55, 0.60, 0.58]
    cells = [cell("rq-kmeans", f"s{i}", v, 0.1) for i, v in enumerate(with_token)]
    cells += [cell("rq-kmeans-no-disambiguation", f"s{i}", v, 0.1) for i, v in enumerate(without)]
    cells.append(cell("rq-vae-tuned", "s0", 0.5, 0.1))  # no partner row: left out
    effect = token_effect_from_results({"cells": cells})
    assert list(effect) == ["rq-kmeans"] and effect["rq-kmeans"]["codes"] is None
    assert effect["rq-kmeans"]["p"]["search"] == pytest.approx(ttest_rel(without, with_token)[1])
    assert effect["rq-kmeans"]["p"]["rec"] is None  # identical recalls: the t-test is undefined


def _point(series, items, recall, gap=None, p=None, dense=0.9, baseline=False):
    return {
        "series": series, "group": f"{items}__{series}", "items": items, "seeds": 1,
        "is_baseline": baseline, "recall": [recall, None],
        "gap": gap, "gap_pvalue_holm": p, "gap_test": "bootstrap",
        "sets": {"search_title": recall, "search_real": 0.1},
        "references": {"dense": {"search": dense, "search_title": 1.0, "search_real": 0.3},
                       "bm25": {"search": 0.95}},
        "queries": {"search": 100, "search_title": 100, "search_real": 7},
    }  # fmt: skip


def test_scale_section_hand_made_points(tmp_path):
    from semid.errors import ConfigError
    from semid.reports.evidence.scale import read_scale, scale_section, scale_sentences

    points = [
        _point("rq-kmeans", 1000, 0.72, baseline=True, dense=0.9),
        _point("rq-kmeans", 2000, 0.45, baseline=True, dense=0.9),
        _point("rq-vae-tuned", 1000, 0.82, gap=[0.10, 0.05, 0.15], p=0.001),
        _point("rq-vae-tuned", 2000, 0.40, gap=[-0.05, -0.12, 0.02], p=0.2),
    ]
    lines = scale_sentences(points)
    assert lines[0] == (
        "- `rq-vae-tuned` − `rq-kmeans`: +0.100 at 1,000 items, -0.050 at 2,000 items; "
        "significantly above `rq-kmeans` at 1,000 items (Holm p < 0.05); not significant at "
        "2,000 items."
    )
    assert "reaches 0.80× at 1,000 and 0.50× at 2,000 items of dense kNN" in lines[1]
    points[3]["gap_pvalue_holm"] = 0.01  # now significant the other way
    assert (
        "significantly above `rq-kmeans` at 1,000 items and below it at 2,000 items (Holm"
        in (scale_sentences(points)[0])
    )
    points[3]["gap_pvalue_holm"] = 0.2
    assert "the largest size measured is 2,000" in lines[2]
    published = tmp_path / "docs" / "results" / "scale"
    write_json(published / "study.json", {"grid": "g", "preset": "cpu", "k": 30, "scaling": points})
    text = scale_section(read_scale(published), tmp_path / "docs" / "page.md")
    assert (
        "| 1,000 | 1 | 0.7200 | 0.8200 | +0.1000 [+0.050, +0.150], p=0.001 | 0.9000 | 0.9500 |"
        in text
    )
    assert "| 2,000 | 7 | 0.4500 | 0.4000 | 1.0000 | 0.1000 | 0.1000 | 0.3000 |" in text
    assert "![search vs catalogue size, preset cpu](results/scale/scaling.png)" in text
    assert "1 training seed per cell" in text
    write_json(published / "study.json", {"grid": "g", "scaling": []})
    with pytest.raises(ConfigError, match="no catalogue-size axis"):
        read_scale(published)
    with pytest.raises(ConfigError, match="no study.json"):
        read_scale(tmp_path / "missing")


def test_scale_studies_merge_the_point_with_more_seeds(tmp_path):
    """Two published scale studies: at a size both hold, the three-seed point replaces the
    one-seed one; the other sizes stay; the section names both presets, seeds per size, and
    links both figures; each point keeps its own study's collisions."""
    from semid.reports.evidence.scale import read_scale, scale_section

    sweep = [
        _point("rq-kmeans", 1000, 0.72, baseline=True),
        _point("rq-kmeans", 2000, 0.45, baseline=True),
        _point("rq-vae-tuned", 1000, 0.82, gap=[0.10, 0.05, 0.15], p=0.001),
        _point("rq-vae-tuned", 2000, 0.40, gap=[-0.05, -0.12, 0.02], p=0.2),
    ]
    seeded = [
        {**_point("rq-kmeans", 1000, 0.50, baseline=True), "seeds": 3, "gap_test": "seeds"},
        {**_point("rq-vae-tuned", 1000, 0.86, gap=[0.36, 0.1, 0.6], p=0.3), "seeds": 3,
         "gap_test": "seeds"},
    ]  # fmt: skip
    one, three = tmp_path / "docs" / "results" / "one", tmp_path / "docs" / "results" / "three"
    collisions = [{"group": "1000__rq-kmeans", "task": "search", "reachable_share": 0.25,
                   "items_per_code": 4.0, "recall_unique": 0.5}]  # fmt: skip
    write_json(one / "study.json", {"grid": "g", "preset": "cpu", "k": 30, "scaling": sweep})
    write_json(
        three / "study.json",
        {"grid": "g", "preset": "cpu-seeds", "k": 30, "scaling": seeded, "collisions": collisions},
    )
    scale = read_scale([one, three])
    by = {(p["series"], p["items"]): p for p in scale["points"]}
    assert [p["recall"][0] for p in scale["points"]] == [0.50, 0.45, 0.86, 0.40]
    assert by[("rq-kmeans", 1000)]["collisions"]["reachable_share"] == 0.25
    assert by[("rq-kmeans", 2000)]["collisions"] == {}
    assert read_scale([three, one])["points"][0]["recall"][0] == 0.50  # more seeds win either way
    text = scale_section(scale, tmp_path / "docs" / "page.md")
    assert "presets `cpu`, `cpu-seeds`" in text
    assert "3 training seeds per cell at 1,000 items; 1 training seed per cell at 2,000" in text
    assert "| 1,000 | 3 | 0.5000 | 0.8600 | +0.3600 [+0.100, +0.600], p=0.3 |" in text
    assert "| 2,000 | 1 | 0.4500 | 0.4000 |" in text
    assert "(results/one/scaling.png)" in text and "(results/three/scaling.png)" in text
    assert "| 1,000 | 0.250 | — | 4.0 | — | 0.500 | — |" in text


def test_degenerate_line_names_each_ablation_fix():
    from semid.reports.evidence.prose import _degenerate_line

    rows = {
        "d": {"search": {"recall": 0.01}, "ids": {"codes_used": [1, 30]}},
        "r": {"search": {"recall": 0.5}},
    }

    def ablation(variant: str, used: int, shape: str = "2x256") -> dict:
        return {
            "variant": variant,
            "shape": shape,
            "diagnostics": {"per_level": [{"codes_used": used}]},
        }

    line = _degenerate_line(
        ("paper regime", rows, "r", "d", 0.02),
        [
            ablation("standardize", 252),
            ablation("defaults+4880steps", 256),
            ablation("dead_code", 9, "3x256"),
        ],
    )
    assert "0.0100 search R@30 against RQ-kmeans' 0.5000 (2%)" in line
    assert "(1 level-1 code(s) used)" in line and "only 2.0% of the search targets" in line
    assert "With input standardisation alone, 252 level-1 codes are used (point 2)." in line
    assert "With 4,880 training steps (the defaults' step count on ML-25M) alone, 256" in line
    assert "dead-code" not in line  # only the 2 x 256 rows count
