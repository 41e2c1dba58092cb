"""Write docs/rq-vae-study.md from measured results only (see ``semid.reports.evidence``).

Usage::

    python benchmarks/rq_vae_evidence.py --study results/rq-vae-study-cpu \
        --table3 results/paper-table3-cpu

It also writes ``evidence.json`` (every number the page uses) under
``docs/results/rq-vae-study-cpu/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semid.reports.evidence import write_evidence_page

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=ROOT / "results" / "rq-vae-study-cpu")
    parser.add_argument("--table3", type=Path, default=ROOT / "results" / "paper-table3-cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "rq-vae-study.md")
    args = parser.parse_args()
    evidence = ROOT / "docs" / "results" / "rq-vae-study-cpu" / "evidence.json"
    write_evidence_page(
        args.study, args.out, evidence, ROOT / "benchmarks" / "results", args.table3
    )
    print(f"wrote {args.out} and {evidence}")


if __name__ == "__main__":
    main()
