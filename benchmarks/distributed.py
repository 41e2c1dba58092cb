"""Data-parallel generator training on CPU: 1 process vs N processes (gloo, torchrun).

    python benchmarks/distributed.py [--preset smoke] [--processes 2] [--runs-dir /tmp/semid-dist]

Runs the preset once in one process, then again under ``torchrun --nproc_per_node N`` with the
same global batch (the stages before the model come from the first run's cache; the model and
its evaluation are rebuilt with ``--force``). Each process uses the preset's torch threads, so
N processes use N times the cores. Records both training throughputs and the difference of
every generative metric, and the machine's load average (the numbers mean little on a machine
shared with other jobs: say so when quoting them). Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from semid.io import read_json, write_json

OUT = Path(__file__).resolve().parent / "results" / "distributed.json"


def semid_run(runs_dir: Path, name: str, preset: str, processes: int, extra: list[str]) -> float:
    cmd = ["-m", "semid", "run", "--preset", preset, "--name", name, "--runs-dir", str(runs_dir)]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd = [*launcher, "--nproc_per_node", str(processes), *cmd]
        cmd += ["--force", "model", "--force", "evaluate"]
    else:
        cmd = [sys.executable, *cmd]
    start = time.perf_counter()
    subprocess.run([*cmd, *extra], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return time.perf_counter() - start


def flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}/")
        elif isinstance(value, float) and ("recall" in key or "ndcg" in key):
            out[f"{prefix}{key}"] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/semid-dist"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    extra = [x for o in args.overrides for x in ("--set", o)]
    load_before = os.getloadavg()
    rows = {}
    for processes, name in ((1, "one"), (args.processes, f"p{args.processes}")):
        wall = semid_run(args.runs_dir, name, args.preset, processes, extra)
        log = read_json(args.runs_dir / name / "model" / "training_log.json")
        rows[name] = {
            "processes": log.get("processes", 1),
            "steps": log["steps"],
            "examples_per_step": round(log["examples_seen"] / max(log["steps"], 1), 1),
            "train_seconds": log["seconds"],
            "examples_per_second": log["examples_per_second"],
            "final_loss": log["loss_curve"][-1]["loss"],
            "wall_seconds": round(wall, 1),
            "metrics": flat(read_json(args.runs_dir / name / "metrics.json")["generative"]),
        }
    one, many = rows["one"], rows[f"p{args.processes}"]
    diff = {k: round(many["metrics"][k] - v, 4) for k, v in one["metrics"].items()}
    out = {
        "preset": args.preset,
        "overrides": args.overrides,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "CPU only, gloo backend, 1 torch thread per process; the machine was shared "
            "with other jobs, so throughputs are indicative only",
        },
        "runs": rows,
        "speedup": round(many["examples_per_second"] / one["examples_per_second"], 2),
        "final_loss_difference": round(many["final_loss"] - one["final_loss"], 4),
        "metric_difference": diff,
        "max_abs_metric_difference": max((abs(v) for v in diff.values()), default=0.0),
    }
    write_json(OUT, out)
    for key in ("speedup", "final_loss_difference", "max_abs_metric_difference"):
        print(f"{key}: {out[key]}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
