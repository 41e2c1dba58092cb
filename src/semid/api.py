"""HTTP service over a trained run: ``semid serve RUN_DIR`` (FastAPI + uvicorn).

Endpoints: ``POST /search``, ``POST /recommend``, ``GET /items/{item_id}``, ``GET /health``;
the OpenAPI schema is at ``/openapi.json`` and interactive docs at ``/docs``.

Requests are micro-batched: a single worker takes the first waiting request, collects whatever
else arrives during the next ``max_wait_ms`` milliseconds (up to ``max_batch`` requests), and
decodes requests that share a task, K, filter and mode in one beam-search call on a worker
thread. The model is therefore only ever used by one thread, and under load every forward pass
serves many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from semid import __version__
from semid.errors import DataError
from semid.serving import ItemFilter, SemidModel, Task

MAX_K = 200


# --------------------------------------------------------------------------- request models


class FilterFields(BaseModel):
    """Decode-time filter and ranking mode shared by /search and /recommend."""

    model_config = ConfigDict(extra="forbid")

    genres: list[str] | None = Field(
        None, description="Only items having at least one of these genres.", examples=[None]
    )
    year_min: int | None = Field(None, description="Only items released in or after this year.")
    year_max: int | None = Field(None, description="Only items released in or before this year.")
    allow: list[int] | None = Field(
        None,
        min_length=1,
        max_length=100_000,
        description="Only these catalogue item ids.",
        examples=[None],
    )
    exact: bool = Field(
        False, description="Score every (allowed) item instead of beam search (small catalogues)."
    )

    @model_validator(mode="after")
    def _years_in_order(self) -> FilterFields:
        if (
            self.year_min is not None
            and self.year_max is not None
            and self.year_min > self.year_max
        ):
            raise ValueError(f"year_min={self.year_min} is after year_max={self.year_max}")
        return self

    def item_filter(self) -> ItemFilter | None:
        return ItemFilter.make(self.allow, self.genres, self.year_min, self.year_max)


class SearchRequest(FilterFields):
    """A text query."""

    query: str = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="Search text.",
        examples=["a heartwarming animated movie about toys"],
    )
    k: int = Field(10, ge=1, le=MAX_K, description=f"Items to return (1..{MAX_K}).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value


class RecommendRequest(FilterFields):
    """A user's history of catalogue item ids, oldest first."""

    history: list[int] = Field(
        ...,
        min_length=1,
        max_length=10_000,
        description="Catalogue item ids, oldest first.",
        examples=[[1, 2, 3]],
    )
    k: int = Field(10, ge=1, le=MAX_K, description=f"Items to return (1..{MAX_K}).")


class Hit(BaseModel):
    """One ranked item."""

    rank: int
    item_id: int
    title: str
    score: float = Field(description="Log-likelihood of the item's semantic ID.")
    year: int | None = None
    genres: list[str] | None = None


class Results(BaseModel):
    """Ranked items for one request."""

    k: int
    results: list[Hit]


class Item(BaseModel):
    """One catalogue item and its semantic IDs."""

    item_id: int
    title: str
    year: int | None = None
    genres: list[str] | None = None
    tags: list[str] | None = None
    semantic_ids: dict[str, str] = Field(description="The item's ID in each ID space.")


class Health(BaseModel):
    """Service status."""

    status: str
    version: str
    items: int
    id_spaces: list[str]
    max_k: int
    batching: dict[str, Any]


# --------------------------------------------------------------------------- micro-batching


@dataclass
class _Job:
    task: Task
    payload: Any
    k: int
    item_filter: ItemFilter | None
    exact: bool
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects concurrent requests for ``max_wait_ms`` and decodes them together.

    Parameters
    ----------
    model : SemidModel
        The loaded model; only the batcher's worker calls it, one batch at a time.
    max_batch : int
        Most requests decoded in one call.
    max_wait_ms : float
        How long the worker waits for more requests after the first one arrives.
    """

    def __init__(self, model: SemidModel, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise DataError(f"max_batch={max_batch}: must be at least 1")
        if max_wait_ms < 0:
            raise DataError(f"max_wait_ms={max_wait_ms}: must be >= 0")
        self.model = model
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.requests = 0
        self.batches = 0
        self.decode_calls = 0
        self.largest_batch = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(
        self, task: Task, payload: Any, k: int, item_filter: ItemFilter | None, exact: bool
    ) -> pl.DataFrame:
        """Queue one request and wait for its ranked items."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(task, payload, k, item_filter, exact, future))
        return await future

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_ms,
            "requests": self.requests,
            "batches": self.batches,
            "decode_calls": self.decode_calls,
            "largest_batch": self.largest_batch,
        }

    async def _collect(self) -> list[_Job]:
        queue = self._queue
        assert queue is not None
        jobs = [await queue.get()]
        deadline = time.perf_counter() + self.max_wait_ms / 1000
        while len(jobs) < self.max_batch:
            while len(jobs) < self.max_batch and not queue.empty():
                jobs.append(queue.get_nowait())
            remaining = deadline - time.perf_counter()
            if len(jobs) >= self.max_batch or remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.001))
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            self.requests += len(jobs)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(jobs))
            groups: dict[tuple, list[_Job]] = defaultdict(list)
            for job in jobs:
                if not job.future.done():
                    groups[(job.task, job.k, job.item_filter, job.exact)].append(job)
            for (task, k, item_filter, exact), group in groups.items():
                await self._decode(task, k, item_filter, exact, group)

    async def _decode(
        self, task: Task, k: int, item_filter: ItemFilter | None, exact: bool, group: list[_Job]
    ) -> None:
        """Decode a group in one call; if it fails, retry its requests one by one so that one
        bad request only fails itself."""
        self.decode_calls += 1
        try:
            frames = await asyncio.to_thread(
                self.model.rank_batch,
                task,
                [job.payload for job in group],
                k,
                item_filter,
                exact,
                len(group),
            )
        except Exception as exc:
            if len(group) > 1:
                for job in group:
                    await self._decode(task, k, item_filter, exact, [job])
                return
            if not group[0].future.done():
                group[0].future.set_exception(exc)
            return
        for job, frame in zip(group, frames, strict=True):
            if not job.future.done():
                job.future.set_result(frame)


# --------------------------------------------------------------------------- the app


def _results(frame: pl.DataFrame, k: int) -> Results:
    return Results(k=k, results=[Hit(**row) for row in frame.to_dicts()])


def create_app(model: SemidModel, max_batch: int = 32, max_wait_ms: float = 5.0) -> FastAPI:
    """The FastAPI application serving ``model`` (see the module docstring)."""
    batcher = MicroBatcher(model, max_batch, max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="semid",
        version=__version__,
        description="Generative search and recommendation over semantic IDs. Scores are "
        "log-likelihoods of each item's ID under the trained generator (higher is better).",
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.batcher = batcher

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health", response_model=Health, summary="Service status")
    async def health() -> Health:
        return Health(
            status="ok",
            version=__version__,
            items=model.n_items,
            id_spaces=sorted(model.retriever.id_codes),
            max_k=MAX_K,
            batching=batcher.stats(),
        )

    @app.post("/search", response_model=Results, summary="Generative search")
    async def search(body: SearchRequest) -> Results:
        item_filter = body.item_filter()
        model.allowed_rows(item_filter)  # validates the filter before queueing
        frame = await batcher.submit("search", body.query, body.k, item_filter, body.exact)
        return _results(frame, body.k)

    @app.post("/recommend", response_model=Results, summary="Generative recommendation")
    async def recommend(body: RecommendRequest) -> Results:
        item_filter = body.item_filter()
        model.allowed_rows(item_filter)
        model.item_rows(body.history)  # unknown ids -> 422 before queueing
        frame = await batcher.submit("rec", body.history, body.k, item_filter, body.exact)
        return _results(frame, body.k)

    @app.get(
        "/items/{item_id}",
        response_model=Item,
        summary="One catalogue item",
        responses={404: {"description": "Unknown item id"}},
    )
    async def item(
        item_id: Annotated[int, PathParam(description="Catalogue item id.")],
    ) -> Any:
        try:
            return Item(**model.item(item_id))
        except DataError as exc:
            return JSONResponse(status_code=404, content={"detail": str(exc)})

    return app


@contextlib.contextmanager
def background_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0
) -> Iterator[str]:
    """Run ``app`` with uvicorn on a thread; yields its base URL (``port=0``: a free port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """Load ``run_dir`` and serve it until interrupted."""
    import torch
    import uvicorn

    if threads is not None:
        torch.set_num_threads(threads)
    model = SemidModel.load(run_dir, device)
    uvicorn.run(create_app(model, max_batch, max_wait_ms), host=host, port=port)
