"""Why RQ-KMeans' second level collapses on small catalogues, seed by seed.

    python benchmarks/rq_kmeans_level2.py --run-dir RESULTS/2.4k__rq-kmeans__s0 [--seeds 0 1 2]

Fits RQ-KMeans' two levels (``semid.quantizers.rq_kmeans.fit_kmeans``, as the quantizer does,
level seed = seed + level) on the run's item embeddings and reports, per seed: level-1
singletons, level-2 perplexity, the largest level-2 code's share of the items, that code's
centroid norm against the median residual norm, and the share of items whose 2-level code is
unique. A centroid near the origin is the nearest one for any residual nearly orthogonal to
all the others, so with few items per code it absorbs a large share of them. Prints a table and
writes benchmarks/results/rq_kmeans_level2.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from semid.embeddings import load_embeddings
from semid.io import write_json
from semid.pipeline import load_state
from semid.quantizers.diagnostics import bucket_sizes, level_usage
from semid.quantizers.rq_kmeans import fit_kmeans, nearest

OUT = Path(__file__).resolve().parent / "results" / "rq_kmeans_level2.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    args = parser.parse_args()
    cfg, paths = load_state(args.run_dir)
    x = load_embeddings(paths["embeddings"]).spaces["item"].astype(np.float32)
    k = cfg.quantizer.codebook_size
    rows = []
    for seed in args.seeds:
        first = fit_kmeans(x, k, seed=seed)
        a1 = nearest(x, first)
        residual = x - first[a1]
        second = fit_kmeans(residual, k, seed=seed + 1)
        a2 = nearest(residual, second)
        counts = np.bincount(a2, minlength=k)
        big = int(counts.argmax())
        sizes = bucket_sizes(np.stack([a1, a2], axis=1))
        rows.append(
            {
                "seed": seed,
                "items": len(x),
                "codes per level": k,
                "level-1 singletons": int((np.bincount(a1, minlength=k) == 1).sum()),
                "level-2 perplexity": round(level_usage(a2[:, None], [k])[0]["perplexity"], 1),
                "largest level-2 code: share of items": round(counts[big] / len(x), 4),
                "its centroid norm": round(float(np.linalg.norm(second[big])), 3),
                "median residual norm": round(
                    float(np.median(np.linalg.norm(residual, axis=1))), 3
                ),
                "unique 2-level codes: share of items": round(
                    float((sizes == 1).sum()) / len(x), 4
                ),
            }
        )
    write_json(OUT, {"run": args.run_dir.name, "rows": rows})
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(pl.DataFrame(rows))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
