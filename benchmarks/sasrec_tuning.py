"""SASRec's epochs and hidden size chosen on the validation split, under the run protocol
(seen items excluded, the same users and targets as the generator).

    python benchmarks/sasrec_tuning.py --run-dir runs/NAME     # a finished run's splits
    python benchmarks/sasrec_tuning.py --run-dir runs/NAME --grid 40:64 80:128

A baseline left undertrained flattens the generator's lead, so the default preset's
``eval.sasrec_epochs`` / ``eval.sasrec_dim`` are the row with the best validation Recall@30
here. Prints a table and writes benchmarks/results/sasrec_tuning.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from semid.data.dataset import Dataset, Splits
from semid.evaluation.evaluate import eval_inputs, score_sets
from semid.evaluation.sasrec import SASRec
from semid.io import write_json
from semid.pipeline import load_state, set_threads

OUT = Path(__file__).resolve().parent / "results" / "sasrec_tuning.json"
GRID = ["20:64", "40:64", "80:64", "40:128", "80:128"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--grid", nargs="*", default=GRID, help="EPOCHS:DIM pairs.")
    args = parser.parse_args()
    cfg, paths = load_state(args.run_dir)
    set_threads(cfg.train.num_threads)
    dataset = Dataset.load(paths["data"])
    splits = Splits.load(paths["splits"])
    inputs = eval_inputs(splits, cfg.eval, cfg.seed)
    train = splits.sequences["train"].to_list()
    rows = []
    for pair in args.grid:
        epochs, dim = (int(x) for x in pair.split(":"))
        start = time.perf_counter()
        model = SASRec(
            max_len=cfg.data.max_history, dim=dim, epochs=epochs, random_state=cfg.seed
        ).fit(train, dataset.n_items)
        ranked = model.recommend(inputs.histories, cfg.eval.beam_size, exclude_seen=True)
        metrics, _ = score_sets("sasrec", "rec", ranked, inputs, cfg.eval.ks)
        rows.append(
            {
                "epochs": epochs,
                "dim": dim,
                "valid R@30": round(metrics["rec_valid"]["recall@30"], 4),
                "valid NDCG@30": round(metrics["rec_valid"]["ndcg@30"], 4),
                "test R@30": round(metrics["rec"]["recall@30"], 4),
                "train seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: (r["valid R@30"], r["valid NDCG@30"]))
    write_json(
        OUT,
        {
            "run": args.run_dir.name,
            "users": int(inputs.rec_sets["rec"].stop - inputs.rec_sets["rec"].start),
            "exclude_seen": True,
            "chosen_on": "valid R@30 (ties: valid NDCG@30)",
            "chosen": {"epochs": best["epochs"], "dim": best["dim"]},
            "rows": rows,
        },
    )
    print(pl.DataFrame(rows))
    print(f"chosen on validation: epochs={best['epochs']} dim={best['dim']}; wrote {OUT}")


if __name__ == "__main__":
    main()
