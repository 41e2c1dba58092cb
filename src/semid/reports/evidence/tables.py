"""The evidence page's markdown tables."""

from __future__ import annotations

from semid.reports.cells import TASKS
from semid.reports.evidence.collect import K, is_missing, p_of
from semid.reports.tables import md_table

ID_HEADER = [
    "catalogue",
    "quantizer",
    "shape",
    "codes used per level",
    "perplexity per level",
    "distinct IDs",
    "items colliding",
    "recall cap without disambiguation",
    "explained variance",
    "NN shares 1st code",
]


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` decimals; '—' when missing."""
    return "—" if is_missing(value) else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    """A p-value: ``0.012``, ``3.1e-05``; '—' when missing."""
    if p is None or is_missing(p):
        return "—"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def id_row_cells(row: dict) -> list[str]:
    """One row of the quantizer benchmark as the cells of :data:`ID_HEADER`."""
    diag = row["diagnostics"]
    n = diag["n_items"]
    coll = diag["collisions"]
    used = "/".join(str(level["codes_used"]) for level in diag["per_level"])
    perp = "/".join(f"{level['perplexity']:.0f}" for level in diag["per_level"])
    coherence = diag.get("coherence", {}).get("nn_same_depth_1")
    return [
        row["catalogue"],
        row["quantizer"] + (f" ({row['variant']})" if row.get("variant") else ""),
        row["shape"],
        used,
        perp,
        str(coll["distinct_ids"]),
        f"{coll['colliding_items_share']:.3f}",
        f"{coll['distinct_ids'] / n:.3f}",
        f"{diag['reconstruction']['explained_variance']:.3f}",
        fmt(coherence, 3),
    ]


def id_table(rows: list[dict]) -> str:
    return md_table(ID_HEADER, [id_row_cells(r) for r in rows])


def downstream_table(rows: dict[str, dict], order: list[str], reference: str) -> str:
    """Rows of ``order`` found in ``rows``: their IDs, recalls and p against ``reference``."""
    header = [
        "row",
        "level-1 codes used",
        "distinct IDs",
        "items colliding",
        "explained variance",
        f"search R@{K}",
        f"p vs {reference}",
        f"rec R@{K}",
        f"p vs {reference}",
    ]
    body = []
    for group in order:
        entry = rows.get(group)
        if entry is None:
            continue
        ids = entry.get("ids", {})
        body.append(
            [
                f"**{group}**" if group == reference else group,
                str(ids.get("codes_used", ["—"])[0]),
                str(ids.get("distinct_ids", "—")),
                fmt(ids.get("colliding_items_share"), 3),
                fmt(ids.get("explained_variance"), 3),
                fmt(entry["search"]["recall"]),
                fmt_p(p_of(entry, "search")),
                fmt(entry["rec"]["recall"]),
                fmt_p(p_of(entry, "rec")),
            ]
        )
    return md_table(header, body)


def targets_table(rows: dict[str, dict], order: list[str]) -> str:
    """Where each row's held-out targets sit in its ID space, per task."""
    header = [
        "row",
        "task",
        "targets sharing their code",
        "items per target's code",
        "targets reachable",
        f"R@{K}",
        f"R@{K} shared code",
        f"R@{K} unique code",
    ]
    body = []
    for group in order:
        entry = rows.get(group)
        if entry is None:
            continue
        for task in TASKS:
            t = entry[task].get("targets")
            if not t:
                continue
            body.append(
                [
                    group,
                    task,
                    fmt(t["shared_code_share"], 3),
                    fmt(t["items_per_code"], 1),
                    fmt(t["reachable_share"], 3),
                    fmt(entry[task]["recall"]),
                    fmt(t["recall_shared"]),
                    fmt(t["recall_unique"]),
                ]
            )
    return md_table(header, body)


def head_torso_rows(rows: dict[str, dict], order: list[str]) -> str:
    """Recommendation recall on head vs torso targets, per row."""
    header = ["row", f"rec R@{K} head", f"rec R@{K} torso", "n head", "n torso"]
    body = [
        [
            g,
            fmt(rows[g]["rec"].get("head")),
            fmt(rows[g]["rec"].get("torso")),
            f"{rows[g]['rec'].get('n_head', float('nan')):.0f}",
            f"{rows[g]['rec'].get('n_torso', float('nan')):.0f}",
        ]
        for g in order
        if g in rows and "head" in rows[g]["rec"]
    ]
    return md_table(header, body)
