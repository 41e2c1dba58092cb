"""The Markdown report of one run: results beside reference points, ID diagnostics, timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semid.config import RunConfig
from semid.io import write_text

METHOD_ORDER = ["generative", "dense", "dense-user", "bm25", "sasrec", "popularity"]

# Evaluation sets (metric keys) in report order, with what each one is.
EVAL_SETS = {
    "search": "template queries, test half",
    "search_real": "real requests (TREC ToT 2023 movies), test only",
    "search_title": "the title alone as the query (indexing check: titles are training inputs)",
    "rec": "next item, test: train prefix + validation item -> test item",
    "search_valid": "template queries, validation half",
    "rec_valid": "next item, validation: train prefix -> validation item",
}


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell; '—' when missing."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _methods(metrics: dict[str, dict]) -> list[str]:
    return [m for m in METHOD_ORDER if m in metrics] + sorted(set(metrics) - set(METHOD_ORDER))


def results_table(metrics: dict[str, dict], ks: list[int], task: str) -> str:
    """Markdown table of one evaluation set: a row per method, Recall@K, NDCG@K, coverage."""
    cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k > 1]
    lines = [
        "| method | "
        + " | ".join(cols)
        + " | 95% CI of R@"
        + str(max(ks))
        + " | items listed | n |",
        "|" + "---|" * (len(cols) + 4),
    ]
    for method in _methods(metrics):
        row = metrics[method].get(task)
        if not row:
            continue
        cells = [fmt(row.get(c)) for c in cols]
        lines.append(
            f"| {method} | "
            + " | ".join(cells)
            + f" | {wilson(row.get(f'recall@{max(ks)}'), row.get('n'))} "
            f"| {fmt(row.get('coverage'))} | {fmt(row.get('n'))} |"
        )
    return "\n".join(lines)


def wilson(p: float | None, n: int | None) -> str:
    """95% Wilson score interval of a hit rate ``p`` over ``n`` inputs."""
    if p is None or not n:
        return "—"
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(round(p * n), n, alpha=0.05, method="wilson")
    return f"{lo:.3f}–{hi:.3f}"


def results_section(metrics: dict[str, dict], ks: list[int]) -> str:
    """One table per evaluation set present in ``metrics``, test sets first."""
    present = {task for row in metrics.values() for task in row}
    parts = []
    for task, what in EVAL_SETS.items():
        if task in present:
            split = "validation" if task.endswith("_valid") else "test"
            parts.append(
                f"### `{task}` — {what} ({split} split)\n\n"
                + results_table(metrics, ks, task)
                + "\n"
            )
    for task in sorted(present - set(EVAL_SETS)):
        parts.append(f"### `{task}`\n\n" + results_table(metrics, ks, task) + "\n")
    return "\n".join(parts)


def protocol_section(cfg: RunConfig, manifest: dict, model_facts: dict, tokens: dict) -> str:
    """The evaluation rules of the run, with the counts they depend on."""
    splits = manifest.get("stages", {}).get("splits", {}).get("facts", {})
    amb = splits.get("query_ambiguity") or {}
    if "rec" in cfg.tasks:
        lines = _rec_rules(cfg, splits.get("ties") or {})
    else:
        lines = [_search_only_line(cfg, manifest)]
    lines.append(
        f"- **Splits:** {', '.join(cfg.eval.splits)}; choices are made on validation, the final "
        "numbers are the test tables. Held-out template queries are split per item into a "
        "validation and a test half."
    )
    if amb:
        ceiling = amb.get("ceiling") or {}
        k = f"recall@{max(cfg.eval.ks)}"
        lines.append(
            f"- **Query ambiguity (template, held-out):** {fmt(amb.get('shared'), 3)} of "
            f"{fmt(amb.get('queries'))} held-out query texts are also a query of another item "
            f"({fmt(amb.get('shared_with_train'), 3)} verbatim a training query of another "
            f"item; median {fmt(amb.get('items_per_text_median'))} items per text); an oracle "
            f"that knows the text but picks at random among its items reaches {k} "
            f"{fmt(ceiling.get(k), 3)} (R@1 {fmt(ceiling.get('recall@1'), 3)})."
        )
    if tokens:
        read = ", ".join(f"{m} {v}" for m, v in tokens.items())
        lines.append(f"- **Search input tokens read** (longer texts are truncated): {read}.")
    lines.append(
        f"- **Decoding:** {cfg.eval.precision}, constrained beam search with "
        f"{cfg.eval.beam_width or cfg.eval.beam_size} beams returning {cfg.eval.beam_size} items."
    )
    return "\n".join(lines) + "\n"


def _rec_rules(cfg: RunConfig, ties: dict) -> list[str]:
    """The protocol lines of recommendation: seen items and the tie rule."""
    return [
        f"- **Seen items:** {'excluded' if cfg.eval.exclude_seen else 'not excluded'} for every "
        "method that ranks items for a user (the generator bans them inside the beam search; "
        "dense kNN, ENMF/ALS user vectors, SASRec and popularity mask them); each list still "
        "holds K items.",
        "- **Ties:** interactions of a user with the same timestamp are ordered by a seeded hash "
        f"of (seed, user, item), not by file order; the test item came from a tied block for "
        f"{fmt(ties.get('test_tied'))} of {fmt(ties.get('users'))} users, the validation item "
        f"for {fmt(ties.get('valid_tied'))}.",
    ]


def _search_only_line(cfg: RunConfig, manifest: dict) -> str:
    """The protocol line of a search-only run: what it trains on, and the catalogue."""
    items = manifest.get("stages", {}).get("data", {}).get("facts", {}).get("items")
    sample = (
        f" (a seeded random subset: data.sample_items={cfg.data.sample_items}, "
        f"sample_seed={cfg.data.sample_seed})"
        if cfg.data.sample_items is not None
        else ""
    )
    return (
        "- **Tasks:** search only (`tasks=[search]`): the generator is trained on search "
        "queries and indexing inputs, no user sequences are made and no recommendation "
        f"method is scored. Catalogue: {fmt(items)} items{sample}."
    )


STRATA = {
    "code": ("unique", "shared"),
    "bucket": ("1", "2-4", "5+"),
    "query": ("names title", "no title"),
}
STRATA_TITLES = {
    "code": "code: is the target's quantizer code unique or shared with other items?",
    "bucket": "bucket size: how many items share the target's quantizer code",
    "query": "query: does the template query name the target's title?",
}


def strata_section(
    run_dir: Path, ids_path: Path | None, k: int, titles: list[str] | None = None
) -> str:
    """Search recall by the target's code (unique vs shared, bucket size) and by whether the
    query names the title."""
    import polars as pl

    from semid.reports.strata import code_bucket_sizes, search_strata

    pred_file = Path(run_dir) / "predictions.parquet"
    if not pred_file.exists():
        return ""
    found = code_bucket_sizes(ids_path) if ids_path is not None else None
    sizes, levels = found if found is not None else (None, None)
    preds = pl.read_parquet(pred_file, columns=["method", "task", "input", "target", "rank"])
    table = search_strata(preds, sizes, titles, k)
    parts = []
    if sizes is not None:
        parts.append(
            f"{float((sizes > 1).mean()):.1%} of items share their {levels}-level quantizer "
            "code with another item (the disambiguation token, if any, tells them apart). A "
            "generator that tells items apart does at least as well on unique codes as on "
            "shared ones.\n"
        )
    for stratum, values in STRATA.items():
        rows = table.filter(pl.col("stratum") == stratum)
        if not rows.height or (stratum == "bucket" and rows["value"].n_unique() <= 2):
            continue  # buckets of one other size only: the code table says it all
        lines = [
            f"R@{k} by {STRATA_TITLES[stratum]} (inputs in brackets)\n",
            "| set | method | " + " | ".join(values) + " |",
            "|---|---|" + "---|" * len(values),
        ]
        for (task, method), group in rows.group_by(["task", "method"], maintain_order=True):
            by = {r["value"]: r for r in group.iter_rows(named=True)}
            cells = [f"{fmt(by[v]['recall'])} ({by[v]['n']})" if v in by else "-" for v in values]
            lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def stage_table(manifest: dict) -> str:
    """Markdown table of each stage's wall time, peak memory and whether it came from cache."""
    lines = ["| stage | seconds | peak RSS (MB) | cached |", "|---|---|---|---|"]
    for name, s in manifest.get("stages", {}).items():
        lines.append(
            f"| {name} | {fmt(s.get('seconds'), 1)} | {fmt(s.get('peak_rss_mb'), 0)} | "
            f"{'yes' if s.get('cached') else 'no'} |"
        )
    return "\n".join(lines)


def diagnostics_section(ids_path: Path | None) -> str:
    """The quantizer diagnostics of every ID space, as written by the ids stage."""
    if ids_path is None:
        return ""
    try:
        from semid.quantizers.diagnostics import format_diagnostics
    except ImportError:  # pragma: no cover - diagnostics module always ships
        return ""
    parts = []
    for diag in sorted(Path(ids_path).glob("*/diagnostics.json")):
        parts.append(f"### ID space `{diag.parent.name}`\n\n")
        parts.append(format_diagnostics(json.loads(diag.read_text())) + "\n")
    return "\n".join(parts)


def tokens_read(manifest: dict, metrics: dict) -> dict:
    """Input tokens each search method reads, as the stages recorded them."""
    tokens: dict = {}
    for stage, method in (("evaluate", "generative"), ("reference", "dense")):
        read = manifest.get("stages", {}).get(stage, {}).get("facts", {}).get("search_tokens_read")
        if read:
            tokens[method] = read
    if "bm25" in metrics:
        tokens["bm25"] = "all"
    return tokens


def rewrite_run_report(run_dir: Path) -> Path:
    """Write ``report.md`` again from what a finished run directory holds (config, manifest,
    metrics, predictions), e.g. after the report's code changed; nothing is recomputed."""
    from semid.errors import ConfigError
    from semid.io import read_json

    run_dir = Path(run_dir)
    for required in ("config.json", "manifest.json", "metrics.json"):
        if not (run_dir / required).exists():
            raise ConfigError(f"{run_dir}: not a finished semid run ({required} missing)")
    manifest = read_json(run_dir / "manifest.json")
    cfg = RunConfig.model_validate(read_json(run_dir / "config.json"))
    ids = manifest.get("stages", {}).get("ids", {}).get("path")
    metrics = read_json(run_dir / "metrics.json")
    return write_run_report(run_dir, cfg, manifest, metrics, Path(ids) if ids else None)


def write_run_report(
    run_dir: Path,
    cfg: RunConfig,
    manifest: dict,
    metrics: dict,
    ids_path: Path | None,
    tokens: dict[str, int] | None = None,
) -> Path:
    """Write ``report.md`` in the run directory and return its path.

    ``tokens``: input tokens each search method reads (default: from the manifest's facts).
    """
    model_facts = manifest.get("stages", {}).get("model", {}).get("facts", {})
    tokens = tokens if tokens is not None else tokens_read(manifest, metrics)
    from semid.reports.strata import item_titles

    q = cfg.quantizer
    text = [
        f"# semid run `{Path(run_dir).name}`\n",
        f"Embedding space **{cfg.embedding.space}** ({cfg.embedding.encoder}), quantizer "
        f"**{q.name}** {q.levels} x {q.codebook_size}"
        f"{' + disambiguation token' if q.disambiguation else ''}, generator "
        f"**{cfg.model.backbone}** ({fmt(model_facts.get('parameters'))} parameters, "
        f"{fmt(model_facts.get('steps'))} steps), seed {cfg.seed}.\n",
        "## Protocol\n",
        protocol_section(cfg, manifest, model_facts, tokens or {}),
        "## Results\n",
        "Every method is scored on the same inputs of each set (one target item per input). "
        "Recall@K is the hit rate of the target in the top K; the interval is a 95% Wilson "
        "interval over the set's inputs (test-sample noise only, one training seed); "
        "'items listed' counts distinct items across all the set's top-K lists.\n",
        results_section(metrics, cfg.eval.ks),
        "## Search recall by stratum\n",
        strata_section(run_dir, ids_path, max(cfg.eval.ks), item_titles(manifest)),
        "## Semantic-ID diagnostics\n",
        diagnostics_section(ids_path),
        "## Stages\n",
        stage_table(manifest) + "\n",
        "Config: `config.json`; per-example predictions: `predictions.parquet`; "
        "ID table: `id_table.csv`; model: `model/`.\n",
    ]
    path = Path(run_dir) / "report.md"
    write_text(path, "\n".join(text))
    return path
