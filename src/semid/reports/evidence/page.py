"""``docs/rq-vae-study.md`` and its ``evidence.json``, from a study grid's results folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semid.errors import ConfigError
from semid.io import read_json, write_json, write_text
from semid.quantizers.config import RQ_VAE_TUNED, VAEConfig
from semid.reports.breakdowns import stage_build_seconds, strata_rows
from semid.reports.cells import load_study
from semid.reports.evidence.collect import (
    HEADLINE,
    KNOBS,
    REGIME_PAPER,
    REGIME_TOKEN,
    K,
    catalogue_items,
    downstream,
    run_setting,
)
from semid.reports.evidence.gaps import gap_rows, gap_sentences, gap_table, gap_verdict
from semid.reports.evidence.prose import (
    TOKEN_PAIRS,
    epochs_text,
    knob_summary,
    parameters_text,
    regime_sentences,
    scope_sentence,
    search_vs_rec_sentences,
    token_effect,
    verdict,
)
from semid.reports.evidence.scale import read_scale, scale_section, scale_verdict
from semid.reports.evidence.tables import (
    downstream_table,
    head_torso_rows,
    id_table,
    targets_table,
)
from semid.reports.query_sets import (
    query_set_rows,
    query_sets_from_json,
    query_sets_json,
    query_sets_table,
)
from semid.reports.stats import MIN_SEEDS_FOR_SEED_TEST, finite_or_none, paired_ttest

TABLE3_ORDER = [
    "rq-kmeans",
    "dictionary",
    "residual-lfq",
    "residual-lfq-tuned",
    "rq-vae-defaults",
    "rq-vae-tuned",
]
# (row, reference) whose search gap the page splits into collisions and the rest
GAP_PAIRS = [
    ("rq-vae-defaults", "rq-kmeans"),
    ("rq-vae-tuned", "rq-kmeans"),
    ("rq-vae-defaults-no-disambiguation", "rq-kmeans-no-disambiguation"),
    ("rq-vae-tuned-no-disambiguation", "rq-kmeans-no-disambiguation"),
]


def read_benchmark_rows(benchmark_dir: Path) -> tuple[list[dict], list[dict]]:
    """Rows of ``quantizers.json`` and of ``quantizers-rq-vae-ablation.json`` (each ``[]`` when
    that benchmark has not been run: the page then says so where it would show them)."""
    path = benchmark_dir / "quantizers.json"
    if not path.exists():
        return [], []
    ablation = benchmark_dir / "quantizers-rq-vae-ablation.json"
    return read_json(path)["rows"], read_json(ablation)["rows"] if ablation.exists() else []


def table3_rows(table3_dir: Path | None) -> dict[str, dict]:
    """:func:`downstream` of the paper-table3 grid against its rq-kmeans row, or ``{}``."""
    if table3_dir is None or not table3_dir.is_dir():
        return {}
    t3 = load_study(table3_dir)
    groups = t3.groups()
    ref = next(
        (g for g, c in groups.items() if c[0].labels.get("quantizer.name") == "rq-kmeans"),
        "rq-kmeans",
    )
    return downstream(t3, ref)


def by_quantizer(rows: dict[str, dict]) -> dict[str, dict]:
    """Rows keyed by their ``quantizer.name`` label (the group name without one)."""
    return {
        entry["labels"].get("quantizer.name", group): entry
        for group, entry in rows.items()
        if not group.startswith("_") and "labels" in entry
    }


def write_evidence_page(
    study_dir: Path,
    out: Path,
    evidence_path: Path,
    benchmark_dir: Path,
    table3_dir: Path | None = None,
    scale: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Write the page ``out`` and ``evidence_path`` (every number the page uses); return it.

    ``scale``: published ml-25m-scale studies (folders or their ``study.json``), for section 6
    (:func:`semid.reports.evidence.scale.read_scale` merges them).
    """
    if not study_dir.is_dir():
        raise ConfigError(f"{study_dir}: no rq-vae-study results folder (run the grid first)")
    id_rows, ablation_rows = read_benchmark_rows(benchmark_dir)
    study = load_study(study_dir)
    strata = strata_rows(study, K)
    evidence: dict[str, Any] = {
        "rq_vae_study_vs_rq_kmeans": downstream(study, "rq-kmeans"),
        "rq_vae_study_vs_rq_kmeans_no_disambiguation": downstream(
            study, "rq-kmeans-no-disambiguation"
        ),
        "paper_table3": table3_rows(table3_dir),
        "settings": {g: run_setting(study, g) for g in ("rq-kmeans", "rq-vae-defaults")},
        "search_gaps": gap_rows(strata, GAP_PAIRS),
        "grid_minutes": sum(stage_build_seconds(study).values()) / 60,
    }
    evidence["token_effect"] = token_effect(
        study,
        evidence["rq_vae_study_vs_rq_kmeans"]
        | evidence["rq_vae_study_vs_rq_kmeans_no_disambiguation"],
    )
    evidence["query_sets"] = query_sets_json(query_set_rows(study, K))
    command = f"semid report RESULTS --publish {evidence_path.parent} --evidence {out}"
    return _write(evidence, out, evidence_path, id_rows, ablation_rows, scale, command)


def rerender_evidence_page(
    published: Path,
    out: Path,
    benchmark_dir: Path,
    scale: Sequence[Path] | None = None,
    table3_dir: Path | None = None,
) -> dict[str, Any]:
    """Rewrite the page ``out`` from a *published* study folder's ``evidence.json`` (committed
    evidence only: no run directory is read but ``table3_dir``'s), with the scale section from
    ``scale``.

    ``table3_dir``: a paper-table3 grid's results folder (run directories): its rows replace
    the ``paper_table3`` of ``evidence.json``, which keeps them for later rewrites.

    An ``evidence.json`` written before the page kept the token effect and the query sets in it
    is completed from the folder's ``study.json`` (query sets) and ``results.json`` (the
    per-seed t-tests); the beams' distinct codes, which need the runs' predictions, are then
    left out of the page."""
    path = published / "evidence.json"
    if not path.exists():
        raise ConfigError(f"{path}: no evidence.json (write it with --publish DIR --evidence PAGE)")
    evidence = read_json(path)
    if table3_dir is not None:
        evidence["paper_table3"] = table3_rows(table3_dir)
    id_rows, ablation_rows = read_benchmark_rows(benchmark_dir)
    if "query_sets" not in evidence and (published / "study.json").exists():
        evidence["query_sets"] = read_json(published / "study.json").get("query_sets", [])
    if "token_effect" not in evidence and (published / "results.json").exists():
        evidence["token_effect"] = token_effect_from_results(read_json(published / "results.json"))
    command = f"semid report {published.as_posix()} --evidence {out.as_posix()}"
    return _write(evidence, out, path, id_rows, ablation_rows, scale, command)


def _write(
    evidence: dict[str, Any],
    out: Path,
    evidence_path: Path,
    id_rows: list[dict],
    ablation_rows: list[dict],
    scale: Sequence[Path] | None,
    command: str,
) -> dict[str, Any]:
    evidence["scale"] = read_scale(scale)
    suffix = "".join(f" --scale {path.as_posix()}" for path in scale or [])
    write_json(evidence_path, evidence)
    link = Path(os.path.relpath(evidence_path.parent, out.parent)).as_posix()
    reproduce = f"semid report RESULTS --publish {evidence_path.parent.as_posix()} --evidence {out}"
    if evidence.get("paper_table3"):
        reproduce += " --table3 TABLE3_RESULTS"
    write_text(
        out,
        render_page(
            evidence, id_rows, ablation_rows, link, command + suffix, out, reproduce + suffix
        ),
    )
    return evidence


def token_effect_from_results(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`token_effect`'s p-values from a published ``results.json`` (the paired t-test over
    the seeds both rows have, on each task's Recall@K); no beam codes."""
    per: dict[str, dict[str, dict[str, float]]] = {}  # group -> task -> seed -> recall
    for cell in results.get("cells", []):
        labels = cell.get("labels", {})
        group, seed = labels.get("variant"), labels.get("seed")
        for task in ("search", "rec"):
            value = ((cell.get("metrics") or {}).get("generative", {}).get(task) or {}).get(
                f"recall@{K}"
            )
            if group and seed and value is not None:
                per.setdefault(group, {}).setdefault(task, {})[seed] = float(value)
    out: dict[str, dict[str, Any]] = {}
    for with_token, without in TOKEN_PAIRS:
        if with_token not in per or without not in per:
            continue
        p = {}
        for task in ("search", "rec"):
            a, b = per[without].get(task, {}), per[with_token].get(task, {})
            seeds = sorted(set(a) & set(b))
            p[task] = (
                finite_or_none(
                    paired_ttest([a[s] for s in seeds], [b[s] for s in seeds], "seeds").pvalue
                )
                if len(seeds) >= MIN_SEEDS_FOR_SEED_TEST
                else None
            )
        out[with_token] = {"p": p, "codes": None}
    return out


def render_page(
    evidence: dict[str, Any],
    id_rows: list[dict],
    ablation_rows: list[dict],
    results_link: str = "results/rq-vae-study-cpu",
    command: str = "semid report RESULTS --evidence docs/rq-vae-study.md",
    page: Path = Path("docs/rq-vae-study.md"),
    reproduce: str | None = None,
) -> str:
    """The page's markdown, from :func:`write_evidence_page`'s evidence. ``command``: what
    wrote the page; ``reproduce``: the command after the grid (default ``command``)."""
    rows = evidence["rq_vae_study_vs_rq_kmeans"]
    paper_rows = evidence["rq_vae_study_vs_rq_kmeans_no_disambiguation"]
    t3_named = by_quantizer(evidence["paper_table3"])
    settings = [
        (
            "content space, no disambiguation token",
            paper_rows,
            "rq-kmeans-no-disambiguation",
            "rq-vae-defaults-no-disambiguation",
            "rq-vae-tuned-no-disambiguation",
        ),
        ("content space, with the token", rows, "rq-kmeans", "rq-vae-defaults", "rq-vae-tuned"),
        (
            "multitask space, with the token",
            t3_named,
            "rq-kmeans",
            "rq-vae-defaults",
            "rq-vae-tuned",
        ),
    ]
    setting = evidence["settings"]["rq-kmeans"]
    n_items = rows.get("rq-kmeans", {}).get("ids", {}).get("n_items")
    t3_text = (
        downstream_table(t3_named, TABLE3_ORDER, "rq-kmeans")
        if t3_named
        else "(paper-table3 grid not run)"
    )
    return "\n\n".join(
        [
            intro(
                rows,
                id_rows,
                setting,
                n_items,
                evidence["grid_minutes"],
                results_link,
                command,
                reproduce=reproduce or command,
            ),  # fmt: skip
            defaults_section(rows, evidence["settings"]["rq-vae-defaults"], ablation_rows),
            regime_section(rows, paper_rows, id_rows, evidence.get("token_effect", {})),
            gaps_section(evidence["search_gaps"], {**rows, **paper_rows}),
            search_vs_rec_section(
                rows, query_sets_table(query_sets_from_json(evidence.get("query_sets", [])), K)
            ),
            "## 5. Verdict",
            "\n".join(
                verdict(settings, ablation_rows, scope_sentence(setting, n_items, seeds_of(rows)))
                + [
                    f"- **What the gap is made of:** {line}"
                    for line in [gap_verdict(evidence["search_gaps"], "rq-vae-tuned")]
                    if line
                ]
                + scale_verdict(evidence.get("scale"))
            ),
            scale_section(evidence.get("scale"), page),
            "## The same quantizers on the multitask space (paper Table 3, cpu preset)",
            t3_text
            + (
                "\n\nSee [`results/paper-table3-cpu/report.md`]"
                "(results/paper-table3-cpu/report.md) for the full\n"
                "report (NDCG, head/torso, diagnostics, cost).\n"
                if t3_named
                else "\n"
            ),
        ]
    )


def setting_text(setting: dict[str, Any], n_items: int | None) -> str:
    """The downstream cells' setting, read from the reference cell's config and manifest."""
    if not setting:
        return "(no finished `rq-kmeans` cell to read the setting from)"
    token = " plus a disambiguation token" if setting["disambiguation"] else ""
    items = f" ({n_items:,} movies)" if n_items else ""
    return (
        f"`{setting['encoder']}` {setting['space']} embeddings of {setting['dataset']}{items}, "
        f"{setting['levels']} × {setting['codebook_size']} codes{token} unless the row says "
        f"otherwise, the {parameters_text(setting['parameters'])} T5 trained from scratch for "
        f"{epochs_text(setting['epochs'])} on search + recommendation, beam "
        f"{setting['beam_size']}"
    )


def seeds_of(rows: dict[str, dict]) -> list[str]:
    """The training seeds the study's rows rest on (sorted union over rows)."""
    return sorted({s for g, e in rows.items() if not g.startswith("_") for s in e["seeds"]})


def intro(
    rows: dict[str, dict],
    id_rows: list[dict],
    setting: dict[str, Any],
    n_items: int | None,
    grid_minutes: float,
    results_link: str = "results/rq-vae-study-cpu",
    command: str = "semid report RESULTS --evidence docs/rq-vae-study.md",
    reproduce: str = "semid report RESULTS --evidence docs/rq-vae-study.md",
) -> str:
    cells = [g for g in rows if not g.startswith("_")]
    seeds = seeds_of(rows)
    per_row = sorted({len(rows[g]["seeds"]) for g in cells})
    first = rows[cells[0]] if cells else {"search": {}, "rec": {}}
    n_queries = int(first["search"].get("targets", {}).get("n", 0))
    n_users = int(first["rec"].get("targets", {}).get("n", 0))
    n_25m = catalogue_items(id_rows, "25m")
    big = f"the {n_25m:,}-item ML-25M table" if n_25m else "the ML-25M table"
    bench = (
        f"the quantizer benchmark (`benchmarks/results/quantizers*.json`: the IDs themselves, on "
        f"ml-latest-small and on {big}) and "
        if id_rows
        else ""
    )
    seeds_text = "/".join(str(n) for n in per_row) if per_row else "0"
    return f"""# Was RQ-VAE trained correctly?

Generated by `{command}`
(`semid.reports.evidence`) from measured results only: {bench}the downstream grid
`grids/rq-vae-study.yaml` (preset `cpu`: {len(cells)} rows on {seeds_text} training seeds each,
seeds {", ".join(seeds) or "none"}; report and per-row numbers in
[`{results_link}/`]({results_link}/report.md); every number on this page is also in
`{results_link}/evidence.json`).

**Reproduce** ({grid_minutes / 60:.1f} hours of stage time measured for this grid, one cell at a
time on a 2-core CPU, each distinct stage counted once; the paper preset needs a GPU):

```bash
semid grid grids/rq-vae-study.yaml --preset cpu --runs-dir RESULTS
{reproduce}
```

{
        ""
        if id_rows
        else "The ID-level quantizer benchmark (`python benchmarks/quantizers.py`) has not "
        "been run for this page: the ID-level tables are left out and the ID numbers below are the "
        "grid cells' own diagnostics."
    }

**Setting of the downstream cells.** {setting_text(setting, n_items)},
{n_queries:,} held-out search queries and {n_users:,} users (leave-last-out). p = two-sided
paired test on per-example hits@{K} against `rq-kmeans` (the same inputs in every cell; a
bootstrap of examples below 3 seeds, else a t-test over seeds), Holm-corrected over every row
and task tested against the same reference row (one family per reference).
This is a small generator on a small catalogue: absolute recalls are far below the paper's; the
comparisons between rows are what this page is about."""


def gaps_section(gaps: dict[str, dict[str, Any]], rows: dict[str, dict]) -> str:
    ids = {g: e["ids"] for g, e in rows.items() if not g.startswith("_") and "ids" in e}
    if not gaps:
        return "### What each search gap is made of\n\n(no strata: no finished cells)"
    return f"""### What each search gap is made of

Each row's template-search gap to its reference split exactly over the strata of the study report
(Kitagawa decomposition, from the strata means over seeds): *from collisions* = the reference's
recall per code-bucket size (1, 2-4, 5+ items per code) re-weighted by this row's bucket shares
minus the reference's own recall; *within buckets* = what is left, the generator doing worse on
targets whose code is shared by as many items. The same gap split by query kind (every row has the
same queries): the part on queries that name the title and the part on the others.

{gap_table(gaps)}

{chr(10).join(gap_sentences(gaps, ids))}"""


def defaults_section(
    rows: dict[str, dict], defaults: dict[str, Any], ablation_rows: list[dict]
) -> str:
    recipe = ", ".join(f"`{k}={v}`" for k, v in RQ_VAE_TUNED.items())
    vae = VAEConfig.model_validate(defaults.get("vae") or {})
    epochs = defaults.get("vae_epochs") or vae.epochs
    optimizer = defaults.get("vae_optimizer") or vae.optimizer
    ablation = id_table(ablation_rows) if ablation_rows else "(ablation not run)"
    return f"""## 1. The library defaults vs RQ-kmeans

`rq-vae-defaults` = vector-quantize-pytorch's `ResidualVQ` with its defaults ({vae_text(vae)})
inside an MLP auto-encoder ({" → ".join(str(h) for h in vae.hidden_sizes)} → {vae.latent_dim}),
trained {epochs} epochs with `{optimizer}`; `rq-vae-tuned` = the defaults
plus the recipe in `semid.quantizers.config.RQ_VAE_TUNED` ({recipe}).

{downstream_table(rows, HEADLINE, "rq-kmeans")}

## 2. One knob at a time, from the defaults

Downstream, every knob of the grid (each row = the defaults with one change):

{downstream_table(rows, KNOBS, "rq-kmeans")}

{knob_summary(rows)}

ID level, more knobs and combinations (ml-latest-small, 2 × 256; `F` = FAISS k-means init of
every level on the full data, `std` = input standardisation):

{ablation}"""


def vae_text(vae: VAEConfig) -> str:
    """The codebook settings of an RQ-VAE cell's config, in words."""
    dead = (
        f"dead codes replaced below {vae.threshold_ema_dead_code:g} uses"
        if vae.threshold_ema_dead_code
        else "no dead-code replacement"
    )
    init = "FAISS k-means" if vae.faiss_kmeans_init else "k-means" if vae.kmeans_init else "random"
    return (
        f"EMA codebooks, decay {vae.decay:g}, commitment weight {vae.commitment_weight:g}, "
        f"{init} init, {dead}, {'the' if vae.rotation_trick else 'no'} rotation trick"
    )


def regime_section(
    rows: dict[str, dict],
    paper_rows: dict[str, dict],
    id_rows: list[dict],
    effect: dict[str, dict[str, Any]],
) -> str:
    return f"""## 3. Collisions: the paper's regime vs 3 levels vs a disambiguation token

Downstream, with and without the disambiguation token (without it, items sharing an ID cannot be
told apart: only the lowest-index item of each ID is decodable):

With the token (p against `rq-kmeans`):

{downstream_table(rows, REGIME_TOKEN, "rq-kmeans")}

Without it, the paper's regime (p against `rq-kmeans-no-disambiguation`). For comparison, the
paper reported (62k movies, its own generator) search Recall@30 0.002 for RQ-VAE vs 0.046 for
RQ-kmeans, and 0.024 vs 0.049 for recommendation:

{downstream_table(paper_rows, REGIME_PAPER, "rq-kmeans-no-disambiguation")}

{chr(10).join(regime_sentences(rows, id_rows, effect))}

{id_level_text(id_rows)}"""


def id_level_text(id_rows: list[dict]) -> str:
    """The quantizer benchmark's table of every quantizer, catalogue and shape (if run)."""
    if not id_rows:
        return "(ID-level quantizer benchmark not run)"

    def listed(key: str) -> str:
        return ", ".join(dict.fromkeys(str(r.get(key)) for r in id_rows))

    return f"""The quantizers benchmarked ({listed("quantizer")}) on the catalogues
{listed("catalogue")}, shapes {listed("shape")} (ID level; "recall cap" = distinct IDs / items,
the highest Recall any generator can reach on uniformly drawn targets without a disambiguation
token):

{id_table(id_rows)}"""


def search_vs_rec_section(rows: dict[str, dict], query_sets: str = "") -> str:
    return f"""## 4. Search vs recommendation

Every evaluation set of the cells, mean ± std over seeds (title alone = the query made of the
test item's title only; real requests = the human-written TREC ToT requests), with coverage
(distinct items across all top-{K} lists) and the references:

{query_sets}

Where the held-out targets sit in each ID space (code = the levels without the disambiguation
token; targets reachable = share a decoder can return at all):

{targets_table(rows, HEADLINE + ["rq-vae-defaults-no-disambiguation"])}

Recommendation split by item popularity:

{head_torso_rows(rows, HEADLINE)}

{chr(10).join(search_vs_rec_sentences(rows))}"""
