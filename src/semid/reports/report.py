"""The Markdown report of one run: results beside reference points, ID diagnostics, timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semid.config import RunConfig
from semid.io import write_text

METHOD_ORDER = [
    "generative",
    "dense",
    "dense-user",
    "bm25",
    "sasrec",
    "popularity",
    "popularity-unseen",
]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell; '—' when missing."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table(metrics: dict[str, dict], ks: list[int]) -> str:
    """Markdown table: one row per method, Recall/NDCG@K for search and recommendation."""
    cols = [
        (task, f"{m}@{k}") for task in ("search", "rec") for k in ks for m in ("recall", "ndcg")
    ]
    header = "| method | " + " | ".join(f"{t} {c}" for t, c in cols) + " | n (search / rec) |"
    lines = [header, "|" + "---|" * (len(cols) + 2)]
    methods = [m for m in METHOD_ORDER if m in metrics] + sorted(set(metrics) - set(METHOD_ORDER))
    for method in methods:
        row = metrics[method]
        cells = [fmt(row.get(task, {}).get(c)) for task, c in cols]
        n = f"{row.get('search', {}).get('n', '—')} / {row.get('rec', {}).get('n', '—')}"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


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


def write_run_report(
    run_dir: Path, cfg: RunConfig, manifest: dict, metrics: dict, ids_path: Path | None
) -> Path:
    """Write ``report.md`` in the run directory and return its path."""
    model_facts = manifest.get("stages", {}).get("model", {}).get("facts", {})
    q = cfg.quantizer
    text = [
        f"# semid run `{Path(run_dir).name}`\n",
        f"Embedding space **{cfg.embedding.space}** ({cfg.embedding.encoder}), quantizer "
        f"**{q.name}** {q.levels} x {q.codebook_size}"
        f"{' + disambiguation token' if q.disambiguation else ''}, generator "
        f"**{cfg.model.backbone}** ({fmt(model_facts.get('parameters'))} parameters, "
        f"{fmt(model_facts.get('steps'))} steps), seed {cfg.seed}, split `{cfg.eval.split}`.\n",
        "## Results\n",
        "Every method is scored on the same held-out inputs: search = held-out queries (one "
        "target item each), rec = each user's last item given the items before it. Recall@K "
        "is the hit rate of the target in the top K.\n",
        results_table(metrics, cfg.eval.ks) + "\n",
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
