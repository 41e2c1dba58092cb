"""CLI tables at 80 columns (what `semid run > run.log` gets): split, never cut with '…'."""

import numpy as np
from rich.console import Console

from semid.cli.tables import column_groups, print_markdown, print_table
from semid.quantizers.diagnostics import diagnose, format_diagnostics
from semid.reports.report import results_section

METHODS = ["generative", "dense", "dense-user", "bm25", "sasrec", "popularity"]


def _render(print_fn, *args) -> str:
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    print_fn(console, *args)
    return console.export_text()


def test_results_tables_at_80_columns_keep_every_header_and_cell_whole():
    ks = [1, 10, 30]
    row = {f"recall@{k}": 0.1234 for k in ks} | {f"ndcg@{k}": 0.2345 for k in ks}
    row |= {"coverage": 1234, "n": 2000}
    metrics = {m: {"search": row, "rec": row} for m in METHODS}
    text = _render(print_markdown, results_section(metrics, ks))
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for header in ["recall@1", "recall@10", "recall@30", "ndcg@10", "ndcg@30", "95% CI of R@30",
                   "items listed", "generative", "popularity", "0.110–0.139"]:  # fmt: skip
        assert header in text, header
    # split by columns, each part keyed by the method: 2 tables per evaluation set
    assert text.count("method") == 4


def test_a_table_that_fits_stays_one_and_long_cells_fold_instead_of_cut():
    assert column_groups([6, 8, 8], 80) == [[1, 2]]
    assert column_groups([10, 40, 40], 80) == [[1], [2]]
    text = _render(print_table, ["a", "b"], [["x", "word " * 30 + "supercalifragilistic" * 5]])
    assert "…" not in text and text.count("supercalifragilistic") >= 4


def test_diagnostics_markdown_at_80_columns():
    codes = np.random.default_rng(0).integers(0, 256, size=(2000, 3))
    text = _render(print_markdown, "## ID space\n\n" + format_diagnostics(diagnose(codes)))
    assert "…" not in text and "perplexity" in text


def test_search_results_wrap_their_text_and_stay_one_table():
    header = ["rank", "item_id", "title", "score", "year", "genres"]
    rows = [[1, 1097, "E.T. the Extra-Terrestrial", "-4.714", 1982, "Children, Drama, Sci-Fi"],
            [2, 4993, "The Lord of the Rings: The Fellowship of the Ring", "-4.8", 2001,
             "Adventure, Fantasy"]]  # fmt: skip
    text = _render(print_table, header, rows)
    assert "…" not in text and text.count("item_id") == 1
    assert "Extra-Terrestrial" in text and "Fellowship" in text
