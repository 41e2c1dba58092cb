"""Load test of ``semid serve``: latency percentiles and throughput, with and without batching.

Starts the HTTP service on a free local port (a separate process), sends a bounded number of
requests at several concurrency levels, and reports p50 / p95 / p99 latency, throughput and the
mean number of requests decoded per batch. Each setting runs twice: micro-batching off
(``max_batch=1``) and on.

    python benchmarks/serve_load.py runs/NAME --requests 200 --concurrency 1 8 32

Queries are the run's held-out search queries (item titles when the run has none); ``--task rec``
sends the run's user histories instead. Results: a printed table and
``benchmarks/results/serve_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from semid.io import write_json

RESULTS = Path(__file__).parent / "results" / "serve_load.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workload(run_dir: Path, task: str, n: int, seed: int) -> list[dict]:
    """Request bodies: held-out queries or user histories of the run, sampled with a seed."""
    rng = np.random.default_rng(seed)
    folder = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    items = pl.read_parquet(folder / "items.parquet")
    splits = None
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        stages = json.loads(manifest.read_text())["stages"]
        if "splits" in stages and Path(stages["splits"]["path"]).is_dir():
            splits = Path(stages["splits"]["path"])
    if task == "search":
        if splits is not None:
            queries = pl.read_parquet(splits / "queries.parquet").filter(pl.col("split") == "test")
            texts = queries["query"].to_list()
        else:
            texts = items["title"].to_list()
        picked = rng.choice(len(texts), size=n, replace=len(texts) < n)
        return [{"query": texts[i]} for i in picked]
    if splits is None:
        raise SystemExit(f"{run_dir}: --task rec needs the run's splits stage (manifest.json)")
    ids = items["item_id"].to_numpy()
    trains = pl.read_parquet(splits / "sequences.parquet")["train"].to_list()
    picked = rng.choice(len(trains), size=n, replace=len(trains) < n)
    return [{"history": ids[np.asarray(trains[i][-20:])].tolist()} for i in picked]


class Server:
    """``semid.api.serve`` in a child process on a free port."""

    def __init__(self, run_dir: Path, max_batch: int, max_wait_ms: float, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = (
            "from semid.api import serve; "
            f"serve({str(run_dir)!r}, '127.0.0.1', {self.port}, {max_batch}, {max_wait_ms}, "
            f"'cpu', {threads})"
        )
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("server did not start within 180 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def fire(url: str, path: str, bodies: list[dict], concurrency: int) -> tuple[list, float]:
    """Send every body with at most ``concurrency`` in flight; per-request seconds and wall."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one(body: dict) -> None:
            async with gate:
                start = time.perf_counter()
                response = await client.post(path, json=body)
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return latencies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--task", choices=["search", "rec"], default="search")
    parser.add_argument("--requests", type=int, default=200, help="Requests per setting.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    path = "/search" if args.task == "search" else "/recommend"
    bodies = [
        b | {"k": args.k} for b in workload(args.run_dir, args.task, args.requests, args.seed)
    ]
    rows = []
    for mode, max_batch, wait in [
        ("unbatched", 1, 0.0),
        ("micro-batched", args.max_batch, args.max_wait_ms),
    ]:
        with Server(args.run_dir, max_batch, wait, args.threads) as server:
            asyncio.run(fire(server.url, path, bodies[:10], 2))  # warm-up
            n_items = httpx.get(server.url + "/health").json()["items"]
            for concurrency in args.concurrency:
                before = httpx.get(server.url + "/health").json()["batching"]
                latencies, wall = asyncio.run(fire(server.url, path, bodies, concurrency))
                after = httpx.get(server.url + "/health").json()["batching"]
                ms = np.asarray(latencies) * 1000
                batches = after["batches"] - before["batches"]
                rows.append(
                    {
                        "mode": mode,
                        "concurrency": concurrency,
                        "requests": len(bodies),
                        "throughput_rps": round(len(bodies) / wall, 2),
                        "p50_ms": round(float(np.percentile(ms, 50)), 1),
                        "p95_ms": round(float(np.percentile(ms, 95)), 1),
                        "p99_ms": round(float(np.percentile(ms, 99)), 1),
                        "mean_batch": round((after["requests"] - before["requests"]) / batches, 2),
                        "max_batch": max_batch,
                        "max_wait_ms": wait,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    header = (
        f"{'mode':<14}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'batch':>7}"
    )
    print(f"\n{args.task}, k={args.k}, {n_items} items, server threads={args.threads}")
    print(header)
    for r in rows:
        print(
            f"{r['mode']:<14}{r['concurrency']:>5}{r['throughput_rps']:>9.1f}{r['p50_ms']:>9.1f}"
            f"{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['mean_batch']:>7.1f}"
        )
    result = {
        "run_dir": str(args.run_dir),
        "task": args.task,
        "k": args.k,
        "items": n_items,
        "server_threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
