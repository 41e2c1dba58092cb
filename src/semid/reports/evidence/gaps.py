"""What a quantizer's search gap to RQ-kmeans is made of: collisions, codebook use, semantics.

The gap in generative search Recall@K between a row and its reference row splits exactly over
the strata of :func:`semid.reports.breakdowns.strata_rows` (Kitagawa decomposition):

    gap = sum_s (w_row,s - w_ref,s) * R_ref,s  +  sum_s w_row,s * (R_row,s - R_ref,s)

with ``w`` the share of test targets in stratum ``s`` and ``R`` the recall there. Over the
*bucket* strata (how many items share the target's code) the first term is what the row's
collision structure alone would cost with the reference's per-bucket recall (*collisions*), the
second what the generator loses on targets of the same bucket size (*within buckets*: the codes
themselves). Over the *query* strata the shares are equal (same queries in every row), so the
gap splits into the part on queries that name the title and the part on the others.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from semid.reports.evidence.collect import K
from semid.reports.evidence.tables import fmt
from semid.reports.tables import md_table

BUCKET = "bucket"
QUERY = "query"


def stratum_means(strata: pl.DataFrame, row: str, stratum: str) -> dict[str, tuple[float, float]]:
    """``value -> (share of targets, recall)`` of one row and stratum kind (means over seeds)."""
    part = strata.filter((pl.col("row") == row) & (pl.col("stratum") == stratum))
    total = float(part["n"].sum()) if part.height else 0.0
    if not total:
        return {}
    return {r["value"]: (r["n"] / total, r["mean"]) for r in part.iter_rows(named=True)}


def decompose(strata: pl.DataFrame, row: str, reference: str, stratum: str) -> dict | None:
    """The Kitagawa split of ``row``'s recall gap to ``reference`` over ``stratum``.

    ``{"gap", "composition", "within", "parts": {value: within-part}}``, or None when a
    stratum the row has targets in has no reference recall (or either row is missing).
    """
    mine, ref = stratum_means(strata, row, stratum), stratum_means(strata, reference, stratum)
    if not mine or not ref or any(v not in ref for v, (w, _) in mine.items() if w > 0):
        return None
    composition = sum(
        (w - ref.get(v, (0.0, 0.0))[0]) * ref.get(v, (0.0, 0.0))[1] for v, (w, _) in mine.items()
    )
    composition -= sum(w * r for v, (w, r) in ref.items() if v not in mine)
    parts = {v: w * (r - ref[v][1]) for v, (w, r) in mine.items()}
    within = sum(parts.values())
    return {
        "gap": composition + within,
        "composition": composition,
        "within": within,
        "parts": parts,
    }


def gap_rows(strata: pl.DataFrame, pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Per row of ``pairs`` (row, reference): its bucket and query decompositions."""
    out: dict[str, dict[str, Any]] = {}
    for row, reference in pairs:
        buckets = decompose(strata, row, reference, BUCKET)
        queries = decompose(strata, row, reference, QUERY)
        if buckets is None and queries is None:
            continue
        mine, ref = stratum_means(strata, row, QUERY), stratum_means(strata, reference, QUERY)
        out[row] = {
            "reference": reference,
            "buckets": buckets,
            "queries": queries,
            "query_recall": {v: (mine.get(v, (0, math.nan))[1], ref[v][1]) for v in ref},
            "title_share": ref.get("names title", (math.nan,))[0],
        }
    return out


def gap_table(gaps: dict[str, dict[str, Any]]) -> str:
    """One line per row: its search gap and the parts it splits into."""
    header = [
        "row",
        "reference",
        f"search gap R@{K}",
        "from collisions",
        "within buckets",
        "on title queries",
        "on the others",
    ]
    body = []
    for row, g in gaps.items():
        b, q = g["buckets"] or {}, g["queries"] or {}
        parts = q.get("parts", {})
        body.append(
            [
                row,
                g["reference"],
                _signed(b.get("gap", q.get("gap"))),
                _signed(b.get("composition")),
                _signed(b.get("within")),
                _signed(parts.get("names title")),
                _signed(parts.get("no title")),
            ]
        )
    return md_table(header, body)


def gap_sentences(gaps: dict[str, dict[str, Any]], ids: dict[str, dict[str, Any]]) -> list[str]:
    """What each row's gap is made of, in words chosen by the numbers. ``ids``: the rows'
    :func:`semid.reports.evidence.collect.ids_summary` (codes used, nearest-neighbour share)."""
    out = []
    for row, g in gaps.items():
        b, ref = g["buckets"], g["reference"]
        if b is None or abs(b["gap"]) < 1e-9:
            continue
        cause = _cause(b, ids.get(row, {}), ids.get(ref, {}))
        line = (
            f"- `{row}` vs `{ref}`: search R@{K} gap {_signed(b['gap'])}; collisions "
            f"{_signed(b['composition'])}, within buckets {_signed(b['within'])}: {cause}"
        )
        q = g["queries"]
        recall = g["query_recall"]
        if q and "names title" in recall and "no title" in recall:
            t, o = recall["names title"], recall["no title"]
            line += (
                f" By query kind: {_signed(q['parts'].get('names title'))} on queries that name "
                f"the title ({100 * g['title_share']:.0f}% of the queries; {fmt(t[0])} vs "
                f"{fmt(t[1])}), {_signed(q['parts'].get('no title'))} on the others "
                f"({fmt(o[0])} vs {fmt(o[1])})."
            )
        out.append(line)
    return out


def _cause(b: dict[str, float], mine: dict[str, Any], ref: dict[str, Any]) -> str:
    """Codebook use, collisions or the codes' semantics: whichever the numbers point at."""
    used, ref_used = mine.get("codes_used") or [], ref.get("codes_used") or []
    if used and ref_used and used[0] < 0.5 * ref_used[0]:
        return (
            f"codebook collapse: the first level uses {used[0]} of its codes against "
            f"{ref_used[0]}, so a target's code is shared by far more items than in the "
            "reference's largest bucket class (5+); the within-bucket part here is that collapse."
        )
    if abs(b["composition"]) >= 0.5 * abs(b["gap"]):
        return "mostly the collision structure (how many items share each code)."
    nn, ref_nn = mine.get("nn_same_depth_1"), ref.get("nn_same_depth_1")
    neighbours = (
        f" An item's nearest neighbour in the embedding space (the space the generator reads "
        f"the queries in) shares its first code for {fmt(nn, 2)} of the items against "
        f"{fmt(ref_nn, 2)}: the codes follow that space's neighbourhoods "
        + ("less closely." if nn < ref_nn else "at least as closely.")
        if nn is not None and ref_nn is not None
        else ""
    )
    return (
        "not collisions and not codebook use: the generator does worse on targets whose code "
        "is shared by as many items, so the codes themselves are harder to learn." + neighbours
    )


def gap_verdict(gaps: dict[str, dict[str, Any]], row: str) -> str | None:
    """One verdict sentence on what ``row``'s search gap is made of (None without a split)."""
    g = gaps.get(row)
    if g is None or g["buckets"] is None or g["queries"] is None or abs(g["buckets"]["gap"]) < 1e-9:
        return None
    b, parts = g["buckets"], g["queries"]["parts"]
    title = parts.get("names title", math.nan)
    return (
        f"`{row}`'s search gap to `{g['reference']}` ({_signed(b['gap'])}) is "
        f"{_signed(b['composition'])} from collisions and {_signed(b['within'])} within code "
        f"buckets; {100 * title / g['queries']['gap']:.0f}% of it is on the queries that name "
        f"the title ({100 * g['title_share']:.0f}% of the queries), where the item's identity, "
        "not its attributes, must be mapped to its code."
    )


def _signed(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:+.4f}"
