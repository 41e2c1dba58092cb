""":class:`LLMQueryGenerator`: an LLM's queries for each item (see :mod:`.llm_queries`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from semid.data.llm_cache import CACHE_VERSION, GroupCommit, QueryCache
from semid.data.llm_client import (
    Endpoint,
    LLMRequestError,
    RequestStats,
)
from semid.data.llm_prompt import (
    AnswerError,
    CatalogueItem,
    catalogue_items,
    check_prompt,
    parse_answer,
    prompt_sha256,
    read_prompt,
    render_prompt,
)
from semid.data.llm_settings import LLMSettings
from semid.errors import ConfigError
from semid.io import stable_hash

log = logging.getLogger(__name__)

SPLITS = ("paraphrase", "random")
ORIGINAL, PARAPHRASE = "original", "paraphrase"

ABORT_AFTER_FAILURES = 20
"""Stop the run when this many items failed in a row before any succeeded (a broken setup)."""
_REASK = (
    "That answer is not valid: {error}. Answer again with only the JSON object "
    '{{"queries": [...], "paraphrases": [...]}}, each list with exactly {n} different, '
    "non-empty strings, none of them mentioning the title."
)


# ----------------------------------------------------------------------------- the generator


@dataclass
class ItemFailure:
    """An item that never produced a valid answer."""

    item_id: int
    item_idx: int
    title: str
    error: str


@dataclass
class GenerationSummary:
    """What a run did: counts, throughput, token usage, failures and the files written.

    ``items`` = ``cached`` (reused from the cache) + ``generated`` (answered now) + ``failed``;
    ``requests`` counts every HTTP request, including ``retries`` and ``reasks``.
    """

    items: int = 0
    cached: int = 0
    generated: int = 0
    failed: int = 0
    queries: int = 0
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0
    json_mode: bool | None = None
    failures: list[ItemFailure] = field(default_factory=list)
    output: Path | None = None
    meta_path: Path | None = None
    failures_path: Path | None = None
    cache_path: Path | None = None

    @property
    def items_per_s(self) -> float:
        """Items answered by the endpoint per second of this run (cached items excluded)."""
        return (self.generated + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0


class LLMQueryGenerator:
    """Paper-style queries from an LLM: ``n_queries`` originals and a paraphrase of each.

    Implements the query-generator interface of :mod:`semid.data.queries`.

    Parameters
    ----------
    settings : LLMSettings
        Endpoint, model and retry policy.
    prompt_template : str or None
        Template text with ``$title``, ``$year``, ``$genres``, ``$tags``, ``$description``,
        ``$n_queries`` (default: the shipped ``prompts/paper_queries.txt``).
    cache_path : Path or None
        JSONL cache of finished items; a rerun with the same prompt/model/``n_queries``
        reuses it and only asks for the rest. None keeps results in memory only.
    n_queries : int
        Original queries per item; as many paraphrases come with them.
    split : {"paraphrase", "random"}
        ``paraphrase``: train = originals, test = paraphrases (the paper). ``random``: half of
        each item's queries, drawn with the seed, go to test.
    progress : bool
        Show a progress bar (items/s and ETA).

    Attributes
    ----------
    summary_ : GenerationSummary
        Counts and failures of the last :meth:`generate` call.
    """

    def __init__(
        self,
        settings: LLMSettings,
        prompt_template: str | None = None,
        cache_path: Path | None = None,
        n_queries: int = 10,
        split: str = "paraphrase",
        progress: bool = True,
    ) -> None:
        self.settings = settings
        self.prompt_template = prompt_template
        self.cache_path = cache_path
        self.n_queries = n_queries
        self.split = split
        self.progress = progress

    def _check(self) -> str:
        if not isinstance(self.n_queries, int) or self.n_queries < 1:
            raise ConfigError(f"--n-queries {self.n_queries}: must be at least 1")
        if self.split not in SPLITS:
            raise ConfigError(f"--split {self.split}: use one of {', '.join(SPLITS)}")
        template = read_prompt() if self.prompt_template is None else self.prompt_template
        check_prompt(template)
        return template

    def fingerprint(self) -> str:
        """What cached results depend on: the prompt template, the model and ``n_queries``."""
        template = read_prompt() if self.prompt_template is None else self.prompt_template
        return stable_hash(
            {
                "prompt": prompt_sha256(template),
                "model": self.settings.model,
                "n_queries": self.n_queries,
                "v": CACHE_VERSION,
            }
        )

    def generate(self, items: pl.DataFrame, per_item: int = 20, seed: int = 0) -> pl.DataFrame:
        """Queries for ``items``: up to ``per_item`` per item, half originals, half paraphrases.

        Returns
        -------
        pl.DataFrame
            ``query`` (str), ``item_idx`` (i32), ``group`` ("original"/"paraphrase") and
            ``split`` ("train"/"test", by the ``split`` rule), item by item. Failed items have
            no rows; they are listed in ``summary_.failures``.
        """
        if per_item < 1:
            raise ConfigError(f"queries.per_item={per_item}: must be at least 1")
        results = self.collect(items)
        n_orig = min(self.n_queries, math.ceil(per_item / 2))
        n_para = min(self.n_queries, per_item - n_orig)
        rows: dict[str, list[Any]] = {"query": [], "item_idx": [], "group": [], "split": []}
        for item in catalogue_items(items):
            record = results.get(item.item_id)
            if record is None:
                continue
            texts = record["queries"][:n_orig] + record["paraphrases"][:n_para]
            groups = [ORIGINAL] * n_orig + [PARAPHRASE] * n_para
            if self.split == "paraphrase":
                test = [g == PARAPHRASE for g in groups]
            else:
                rng = random.Random(f"{seed}:{item.item_id}")
                chosen = set(rng.sample(range(len(texts)), len(texts) // 2))
                test = [i in chosen for i in range(len(texts))]
            rows["query"] += texts
            rows["item_idx"] += [item.item_idx] * len(texts)
            rows["group"] += groups
            rows["split"] += ["test" if t else "train" for t in test]
        schema = {"query": pl.String, "item_idx": pl.Int32, "group": pl.String,
                  "split": pl.String}  # fmt: skip
        return pl.DataFrame(rows, schema=schema)

    def collect(self, items: pl.DataFrame) -> dict[int, dict[str, Any]]:
        """Validated answers by item id: cached ones, then new ones from the endpoint.

        Sets ``summary_``. Each answer is ``{"queries": [...], "paraphrases": [...], ...}``.
        """
        template = self._check()
        catalogue = catalogue_items(items)
        summary = GenerationSummary(items=len(catalogue), cache_path=self.cache_path)
        self.summary_ = summary
        cache = QueryCache(self.cache_path, self.fingerprint()) if self.cache_path else None
        started = time.monotonic()
        try:
            done = cache.open() if cache else {}
            wanted = {item.item_id for item in catalogue}
            results = {k: v for k, v in done.items() if k in wanted}
            todo = [item for item in catalogue if item.item_id not in results]
            summary.cached = len(results)
            if todo:
                with tqdm(
                    total=len(catalogue),
                    initial=len(results),
                    unit="item",
                    desc="LLM queries",
                    smoothing=0.05,
                    disable=not self.progress,
                ) as bar:
                    _run_sync(self._run(template, todo, cache, results, bar))
        finally:
            summary.elapsed_s = time.monotonic() - started
            summary.failures.sort(key=lambda f: f.item_idx)
            if cache:
                cache.close()
        return results

    async def _run(
        self,
        template: str,
        todo: list[CatalogueItem],
        cache: QueryCache | None,
        results: dict[int, dict[str, Any]],
        bar: tqdm,
    ) -> None:
        summary = self.summary_
        stats = RequestStats()
        endpoint = Endpoint(self.settings, stats, random.Random())
        writer = GroupCommit(cache) if cache is not None else None
        pending: Iterator[CatalogueItem] = iter(todo)

        async def worker() -> None:
            for item in pending:
                record, error = await self._answer_item(endpoint, template, item)
                if record is not None:
                    if writer is not None:
                        await writer.write(record)
                    results[item.item_id] = record
                    summary.generated += 1
                else:
                    summary.failures.append(
                        ItemFailure(item.item_id, item.item_idx, item.title, error)
                    )
                    summary.failed += 1
                    if summary.generated == 0 and summary.failed >= ABORT_AFTER_FAILURES:
                        raise ConfigError(
                            f"the first {summary.failed} items all failed (last: {error}); "
                            "check --base-url, --model and the prompt"
                        )
                _copy_stats(stats, summary)
                bar.set_postfix(failed=summary.failed, retries=stats.retries, refresh=False)
                bar.update(1)

        tasks = [
            asyncio.ensure_future(worker())
            for _ in range(min(len(todo), self.settings.concurrency))
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await endpoint.aclose()
            if writer is not None:
                await writer.drain()  # answers already paid for reach the cache
                writer.close()
            _copy_stats(stats, summary)
            summary.json_mode = endpoint.json_mode

    async def _answer_item(
        self, endpoint: Endpoint, template: str, item: CatalogueItem
    ) -> tuple[dict[str, Any] | None, str]:
        """A validated record for ``item``, or None and the last error."""
        messages = [{"role": "user", "content": render_prompt(template, item, self.n_queries)}]
        answers = self.settings.max_reasks + 1
        error = ""
        for answer in range(answers):
            try:
                content, finish = await endpoint.complete(messages)
            except LLMRequestError as exc:
                return None, str(exc)
            try:
                queries, paraphrases = parse_answer(content, self.n_queries, item.title)
            except AnswerError as exc:
                reason = str(exc)
                if finish == "length":
                    reason += " (the answer was cut off: finish_reason=length)"
                error = f"invalid answer: {reason}"
                if answer + 1 < answers:
                    endpoint.stats.reasks += 1
                    messages = [
                        *messages,
                        {"role": "assistant", "content": content[:8000]},
                        {"role": "user", "content": _REASK.format(error=reason, n=self.n_queries)},
                    ]
                continue
            record = {
                "item_id": item.item_id,
                "title": item.title,
                "model": self.settings.model,
                "queries": queries,
                "paraphrases": paraphrases,
            }
            return record, ""
        return None, f"{error} (after {answers} answer{'s' if answers > 1 else ''})"


def _copy_stats(stats: RequestStats, summary: GenerationSummary) -> None:
    summary.requests = stats.requests
    summary.retries = stats.retries
    summary.reasks = stats.reasks
    summary.prompt_tokens = stats.prompt_tokens
    summary.completion_tokens = stats.completion_tokens


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion, also from code already inside an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
