import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from semid.errors import ConfigError
from semid.evaluation.metrics import metric_table
from semid.grid import CELL_DONE_FILE, CELL_FAILED_FILE, config_hash, expand_grid, write_grid_json
from semid.io import read_json, write_json, write_parquet
from semid.reports.breakdowns import flatten_diagnostics, target_collisions
from semid.reports.stats import (
    compare_to_baseline,
    head_items,
    head_torso_recall,
    hits_at_k,
    holm,
    mean_std,
    paired_bootstrap,
    paired_ttest,
)
from semid.reports.study import write_study_report

K = 30


def test_mean_std_is_the_sample_std_over_seeds():
    values = [0.21, 0.25, 0.2]
    assert mean_std(values) == pytest.approx((np.mean(values), np.std(values, ddof=1)))
    mean, std = mean_std([0.3])
    assert mean == 0.3 and math.isnan(std)
    assert all(math.isnan(x) for x in mean_std([]))


def test_paired_ttest_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 200).astype(float), rng.integers(0, 2, 200).astype(float)
    test = paired_ttest(a, b, "examples")
    expected = stats.ttest_rel(a, b)
    assert test.pvalue == pytest.approx(expected.pvalue)
    assert test.statistic == pytest.approx(expected.statistic)
    assert test.mean_diff == pytest.approx(a.mean() - b.mean()) and test.n == 200
    same = paired_ttest(a, a, "examples")
    assert math.isnan(same.pvalue) and same.mean_diff == 0


def _frame(inputs, targets, ranks):
    return pl.DataFrame({"input": inputs, "target": targets, "rank": ranks})


def test_compare_uses_seeds_with_three_seeds_and_the_bootstrap_beside_it():
    rng = np.random.default_rng(1)
    inputs = [f"q{i}" for i in range(50)]
    targets = list(range(50))
    row, base, row_vals, base_vals = {}, {}, {}, {}
    for seed in ("s0", "s1", "s2"):
        r = rng.choice([0, 3, 40, -1], 50).tolist()
        b = rng.choice([1, 50, -1], 50).tolist()
        row[seed], base[seed] = _frame(inputs, targets, r), _frame(inputs, targets, b)
        row_vals[seed], base_vals[seed] = hits_at_k(r, K).mean(), hits_at_k(b, K).mean()
    seeds_test, boot = compare_to_baseline(row, base, row_vals, base_vals, K)
    seeds = list(row_vals)
    expected = stats.ttest_rel([row_vals[s] for s in seeds], [base_vals[s] for s in seeds])
    assert seeds_test.kind == "seeds" and seeds_test.n == 3 and seeds_test.seeds == 3
    assert seeds_test.pvalue == pytest.approx(expected.pvalue)
    assert boot.kind == "bootstrap" and boot.n == 150 and boot.seeds == 3
    per_seed = [hits_at_k(row[s]["rank"].to_numpy(), K).mean() for s in seeds]
    per_seed_b = [hits_at_k(base[s]["rank"].to_numpy(), K).mean() for s in seeds]
    assert boot.mean_diff == pytest.approx(np.mean(per_seed) - np.mean(per_seed_b))

    shuffled = {s: f.reverse() for s, f in base.items()}  # other inputs order: not pairable
    assert [t.kind for t in compare_to_baseline(row, shuffled, row_vals, base_vals, K)] == ["seeds"]
    two = {s: row[s] for s in ("s0", "s1")}
    only = compare_to_baseline(two, base, {s: row_vals[s] for s in two}, base_vals, K)
    assert [t.kind for t in only] == ["bootstrap"] and only[0].seeds == 2
    one_seed = compare_to_baseline({"s0": None}, {"s0": None}, {"s0": 0.1}, {"s0": 0.2}, K)
    assert [t.kind for t in one_seed] == ["none"]


def test_bootstrap_identical_runs_give_p_one_and_a_clearly_better_run_a_small_p():
    rng = np.random.default_rng(3)
    base = [rng.integers(0, 2, 300).astype(float) for _ in range(2)]
    same = paired_bootstrap(base, [b.copy() for b in base], n_resamples=2000)
    assert same.pvalue == 1.0 and same.mean_diff == 0 and same.n == 600 and same.seeds == 2
    better = [np.maximum(b, rng.random(300) < 0.3) for b in base]  # ~+15 points of recall
    test = paired_bootstrap(better, base, n_resamples=2000)
    assert test.pvalue == pytest.approx(1 / 2001) and test.mean_diff > 0.1
    assert test.ci[0] > 0 < test.ci[1]
    # a small, noisy difference is not significant, and the test is symmetric
    noisy = [np.where(rng.random(300) < 0.02, 1 - b, b) for b in base]
    forward, backward = paired_bootstrap(noisy, base), paired_bootstrap(base, noisy)
    assert forward.pvalue > 0.05 and forward.pvalue == pytest.approx(backward.pvalue, abs=0.01)
    # the statistic averages seeds (a seed with fewer examples weighs the same)
    uneven = paired_bootstrap([np.ones(10), np.zeros(1000)], [np.zeros(10), np.zeros(1000)])
    assert uneven.mean_diff == pytest.approx(0.5)


def test_holm_matches_statsmodels_and_leaves_nan_out():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected)
    # hand-computed: sorted 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.2*1 with running max
    np.testing.assert_allclose(expected, [0.04, 0.09, 0.09, 0.025, 0.2])
    with_nan = holm([0.01, float("nan"), 0.04])
    assert math.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], multipletests([0.01, 0.04], method="holm")[1])


def test_head_is_the_popular_prefix_covering_the_share():
    train = [[0, 0, 1], [0, 2, 3], [0, 1, 1]]  # counts 0:4, 1:3, 2:1, 3:1 (9 interactions)
    assert head_items(train, 0.4) == {0}  # 4 >= 3.6
    assert head_items(train, 0.5) == {0, 1}  # 4 < 4.5 <= 7
    assert head_items(train, 0.85) == {0, 1, 2}  # tie 2/3 broken by index
    assert head_items(train, 1.0) == {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="head-share"):
        head_items(train, 0.0)
    frame = pl.DataFrame({"target": [0, 1, 2, 4], "rank": [0, 5, 40, -1]})
    split = head_torso_recall(frame, {0, 1}, K)
    assert split == {"head": (1.0, 2), "torso": (0.0, 2)}


def test_flatten_diagnostics_keeps_scalars_and_short_lists():
    flat = flatten_diagnostics(
        {
            "codebook_usage": [0.9, 0.75],
            "collision_rate": 0.05,
            "coherence": {"genre": 0.7},
            "per_item": list(range(100)),
            "name": "rq",
        }
    )
    assert flat == {
        "codebook_usage": "0.9 / 0.75",
        "collision_rate": "0.05",
        "coherence.genre": "0.7",
        "name": "rq",
    }


# --- a crafted results folder ----------------------------------------------------------------

SPACES = {"content": 0.5, "search": 0.7, "rec": 0.3}  # probability of a hit per example
SEEDS = [0, 1, 2]
N_Q, N_U, N_ITEMS = 60, 40, 20


def _ranks(rng, p, n):
    return np.where(rng.random(n) < p, rng.integers(0, K, n), -1)


def _write_cell(out, cache, cell, seed, space, hit_p):
    cfg = cell.config
    run_dir = out / cell.name
    rng = np.random.default_rng([seed, list(SPACES).index(space)])
    q_inputs = [f"query {i}" for i in range(N_Q)]
    users = [str(u) for u in range(N_U)]
    q_targets = np.random.default_rng(seed).integers(0, N_ITEMS, N_Q)
    u_targets = np.random.default_rng(seed + 100).integers(0, N_ITEMS, N_U)
    if space == "rec":  # scored on other inputs: the test falls back to seeds
        q_inputs = q_inputs[::-1]
        q_targets = q_targets[::-1]
    rows, metrics = [], {}
    for method, task, inputs, targets, p in [
        ("generative", "search", q_inputs, q_targets, hit_p),
        ("generative", "rec", users, u_targets, hit_p / 2),
        ("popularity", "rec", users, u_targets, 0.2),
    ]:
        ranks = _ranks(
            rng if method == "generative" else np.random.default_rng(seed), p, len(inputs)
        )
        metrics.setdefault(method, {})[task] = metric_table(ranks, [10, 30])
        rows.append(
            pl.DataFrame(
                {
                    "method": method,
                    "task": task,
                    "input": inputs,
                    "target": np.asarray(targets, dtype=np.int64),
                    "rank": ranks.astype(np.int64),
                }
            )
        )
    write_parquet(run_dir / "predictions.parquet", pl.concat(rows))
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
    splits = cache / "splits" / f"s{seed}"
    if not splits.exists():
        # items 0..4 are the head for every seed: 5 x 10 of 100 interactions = 50%
        train = [[i] * 10 for i in range(5)] + [[i] * 5 for i in range(5, 15)]
        write_parquet(splits / "sequences.parquet", pl.DataFrame({"train": train}))
    ids = cache / "ids" / f"{space}-s{seed}"
    write_json(
        ids / "item" / "diagnostics.json",
        {"codebook_usage": [0.5, 0.25], "collision_rate": hit_p / 10},
    )
    write_json(
        run_dir / "manifest.json",
        {
            "stages": {
                "splits": {
                    "path": str(splits),
                    "cached": seed > 0,
                    "seconds": 2.0,
                    "peak_rss_mb": 100,
                },
                "ids": {"path": str(ids), "cached": False, "seconds": 3.0, "peak_rss_mb": 200},
            }
        },
    )
    write_json(run_dir / CELL_DONE_FILE, {"config_hash": config_hash(cfg), "seconds": 5})
    return metrics, pl.concat(rows)


@pytest.fixture
def study_dir(tmp_path):
    spec = {
        "name": "crafted",
        "description": "A crafted study.",
        "base": {"preset": "smoke"},
        "axes": {"embedding.space": list(SPACES), "seed": SEEDS},
        "baseline": {"embedding.space": "content"},
    }
    grid = expand_grid(spec)
    out, cache = tmp_path / "res", tmp_path / "cache"
    write_grid_json(grid, out, cache)
    written = {}
    for cell in grid.cells:
        space, seed = cell.config.embedding.space, cell.config.seed
        if cell.name == "search__s2":  # a failed cell
            write_json(out / cell.name / CELL_FAILED_FILE, {"error": "out of memory"})
            continue
        written[(space, seed)] = _write_cell(out, cache, cell, seed, space, SPACES[space])
    return out, written


def test_report_numbers_come_from_the_runs(study_dir):
    out, written = study_dir
    path = write_study_report(out)
    text = path.read_text()
    study = read_json(out / "study.json")
    rows = {r["group"]: r for r in study["rows"]}
    assert study["k"] == 30 and list(rows) == ["content", "search", "rec"]
    for space in SPACES:
        seeds = [s for s in SEEDS if (space, s) in written]
        vals = [written[(space, s)][0]["generative"]["search"]["recall@30"] for s in seeds]
        assert rows[space]["mean"]["search recall@30"] == pytest.approx(np.mean(vals))
        assert rows[space]["std"]["search recall@30"] == pytest.approx(np.std(vals, ddof=1))
        assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}" in text
    assert rows["content"]["is_baseline"] and rows["content"]["tests"] == {}

    # search vs content: same inputs, two seeds (search__s2 failed) -> bootstrap within seeds
    def hits(space, task):
        return [
            hits_at_k(
                written[(space, s)][1]
                .filter((pl.col("method") == "generative") & (pl.col("task") == task))["rank"]
                .to_numpy(),
                K,
            )
            for s in (0, 1)
        ]

    expected = paired_bootstrap(hits("search", "rec"), hits("content", "rec"))
    test = rows["search"]["tests"]["rec"]
    assert test["kind"] == "bootstrap" and test["n"] == 2 * N_U and test["seeds"] == 2
    assert test["pvalue"] == pytest.approx(expected.pvalue)
    assert test["mean_diff"] == pytest.approx(expected.mean_diff)
    # rec vs content on search: other inputs, three seeds -> t-test over the seeds
    per_seed = [
        [written[(space, s)][0]["generative"]["search"]["recall@30"] for s in SEEDS]
        for space in ("rec", "content")
    ]
    seeds_test = rows["rec"]["tests"]["search"]
    assert seeds_test["kind"] == "seeds" and seeds_test["n"] == 3
    assert seeds_test["pvalue"] == pytest.approx(stats.ttest_rel(*per_seed).pvalue)
    assert rows["rec"]["other_tests"]["rec"][0]["kind"] == "bootstrap"
    # Holm over the table's four headline comparisons
    headline = [rows[g]["tests"][t] for g in ("search", "rec") for t in ("search", "rec")]
    adjusted = holm([t["pvalue"] for t in headline])
    assert [t["pvalue_holm"] for t in headline] == pytest.approx(adjusted.tolist())
    assert all(r["n_seeds"] == len(r["seeds"]) for r in rows.values())
    assert rows["search"]["n_seeds"] == 2 and rows["search"]["non_seed_differences"] == []
    assert "Holm" in text and "training seeds" in text and "‡" in text

    # head/torso: items 0..4 are the head; recompute the generator's head recall for `search`
    head_rows = {(r["group"], r["method"]): r for r in study["head_torso"]}
    head_recalls = []
    for s in (0, 1):
        frame = written[("search", s)][1].filter(
            (pl.col("method") == "generative") & (pl.col("task") == "rec")
        )
        in_head = frame["target"].is_in(list(range(5))).to_numpy()
        head_recalls.append(hits_at_k(frame["rank"].to_numpy(), K)[in_head].mean())
    assert head_rows[("search", "generative")]["head"][0] == pytest.approx(np.mean(head_recalls))
    assert ("content", "popularity") in head_rows

    assert "out of memory" in text and "## Failed cells" in text
    assert "0.5 / 0.25" in text  # diagnostics
    # identical reference rows merged (search has one seed fewer: its own row)
    assert "| popularity | content, rec | 3 |" in text and "| popularity | search | 2 |" in text
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = read_json(out / "results.json")
    assert sum(c["status"] == "done" for c in results["cells"]) == 8
    parquet = pl.read_parquet(out / "results.parquet")
    assert set(parquet["method"]) == {"generative", "popularity"}
    assert parquet.filter(pl.col("cell") == "search__s1")["recall@30"].is_not_null().all()


def test_report_at_another_cutoff(study_dir):
    out, written = study_dir
    write_study_report(out, k=10, head_share=0.8)
    study = read_json(out / "study.json")
    content = next(r for r in study["rows"] if r["group"] == "content")
    vals = [written[("content", s)][0]["generative"]["rec"]["recall@10"] for s in SEEDS]
    assert content["mean"]["rec recall@10"] == pytest.approx(np.mean(vals))
    assert study["head_share"] == 0.8


def test_target_collisions_counts_shared_codes_and_unreachable_targets():
    # items 0,1,2 share code (0, 0); item 3 has (0, 1); item 4 has (1, 0)
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [1, 0, 0]])
    targets = np.array([0, 1, 3, 4])
    hits = np.array([1.0, 0.0, 1.0, 0.0])
    with_token = target_collisions(codes, 2, True, targets, hits)
    assert with_token["shared_code_share"] == 0.5
    assert with_token["items_per_code"] == (3 + 3 + 1 + 1) / 4
    assert with_token["reachable_share"] == 1.0
    assert with_token["recall_shared"] == 0.5 and with_token["recall_unique"] == 0.5
    # without the token only the lowest-index item of a code is decodable: item 1 is not
    without_token = target_collisions(codes[:, :2], 2, False, targets, hits)
    assert without_token["reachable_share"] == 0.75


def test_cost_table_shows_what_a_cached_stage_cost_when_built(study_dir):
    out, _ = study_dir
    splits_s1 = out.parent / "cache" / "splits" / "s1"
    write_json(splits_s1 / "_stage.json", {"stage": "splits", "seconds": 7.0})
    text = write_study_report(out).read_text()
    cost = text.split("## Cost")[1]
    # content__s1: splits reused (built in 7 s), ids computed by the cell (3 s)
    assert "| content__s1 | done | — | (7) |" in cost
    assert "| 3 | 10 |" in cost  # this cell 3 s, with the cached stage 10 s


NAMED_SEEDS = {f"s{i}": {"embedding.seed": i, "quantizer.seed": i, "train.seed": i} for i in (0, 1)}


@pytest.mark.parametrize(("seed_axis", "values"), [("train.seed", [0, 1]), ("seed", NAMED_SEEDS)])
def test_rows_average_train_seed_runs_two_seeds_hand_computed(tmp_path, seed_axis, values):
    """A grid over ``train.seed``, or over named seeds that reseed every trained stage
    (embedding, quantizer, generator), no group_over: rows are its cells over the two seeds,
    and the reseeding keys are no difference beyond the seed."""
    spec = {
        "name": "train-seeds",
        "base": {"preset": "smoke"},
        "axes": {"embedding.space": ["content", "search"], seed_axis: values},
        "baseline": {"embedding.space": "content"},
    }
    grid = expand_grid(spec)
    out = tmp_path / "res"
    write_grid_json(grid, out, tmp_path / "cache")
    hits_per_cell = {"content__s0": 2, "content__s1": 3, "search__s0": 5, "search__s1": 7}
    for cell in grid.cells:
        run_dir = out / cell.name
        ranks = np.where(np.arange(10) < hits_per_cell[cell.name], 0, -1)
        frame = pl.DataFrame(
            {
                "method": "generative",
                "task": "search",
                "input": [f"q{i}" for i in range(10)],
                "target": np.arange(10, dtype=np.int64),
                "rank": ranks.astype(np.int64),
            }
        )
        write_parquet(run_dir / "predictions.parquet", frame)
        write_json(run_dir / "metrics.json", {"generative": {"search": metric_table(ranks, [30])}})
        write_json(run_dir / "config.json", cell.config.model_dump(mode="json"))
        write_json(run_dir / CELL_DONE_FILE, {"config_hash": config_hash(cell.config)})
    text = write_study_report(out).read_text()
    rows = {r["group"]: r for r in read_json(out / "study.json")["rows"]}
    assert list(rows) == ["content", "search"]
    assert rows["content"]["n_seeds"] == 2 and rows["content"]["seeds"] == ["s0", "s1"]
    assert rows["content"]["mean"]["search recall@30"] == pytest.approx(0.25)
    assert rows["content"]["std"]["search recall@30"] == pytest.approx(math.sqrt(0.005))
    assert rows["search"]["mean"]["search recall@30"] == pytest.approx(0.6)
    assert rows["search"]["std"]["search recall@30"] == pytest.approx(math.sqrt(0.02))
    assert rows["search"]["non_seed_differences"] == []
    test = rows["search"]["tests"]["search"]
    assert test["kind"] == "bootstrap" and test["seeds"] == 2 and test["n"] == 20
    assert test["mean_diff"] == pytest.approx(0.35)
    assert "0.2500 ± 0.0707" in text and "0.6000 ± 0.1414" in text
    assert f"Rows average over training seeds (`{seed_axis}`" in text


def test_cost_table_columns_include_stages_outside_the_pipeline_list(tmp_path):
    from semid.reports.breakdowns import recorded_stages
    from semid.reports.cells import CellResult, Study
    from semid.runs import STAGES

    manifest = {"stages": {"ids": {}, "text_vectors": {}, "model": {}}}
    cell = CellResult("c", "c", {}, "0", tmp_path, "done", manifest=manifest)
    names = recorded_stages(Study(tmp_path, {}, [cell]))
    # text_vectors goes right after ids, where the manifest lists it; the rest keep their order
    assert names == [
        *STAGES[: STAGES.index("ids") + 1],
        "text_vectors",
        *STAGES[STAGES.index("ids") + 1 :],
    ]
