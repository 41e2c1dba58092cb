"""Search queries written by an LLM behind any OpenAI-compatible chat-completions endpoint.

The paper generated 20 queries per movie with gemini-2.0-flash from the movie's metadata: 10
queries that avoid the title and describe content, themes and genres, then a paraphrase of each;
10 for training and 10 for testing. :class:`LLMQueryGenerator` does the same against any server
that speaks ``POST {base_url}/chat/completions`` (Gemini's OpenAI-compatible endpoint, OpenAI,
vLLM, Ollama, llama.cpp server, ...).

One request per item asks for both lists as one JSON object, ``{"queries": [...],
"paraphrases": [...]}``: half the price of two calls, and paraphrase *i* stays tied to query *i*.
Every answer is validated (exactly ``n_queries`` distinct non-empty strings per list, none
containing the title); a bad answer is sent back with the validation error, at most
``max_reasks`` times.

Robustness at catalogue scale:

- bounded concurrency (``concurrency`` requests in flight);
- retries with exponential back-off and jitter on timeouts, connection errors, 408, 429 and 5xx;
  ``Retry-After`` is honoured and a 429 pauses every worker, not only the one that got it;
- an append-only JSONL cache with one validated item per line, flushed and fsynced per line, so
  an interrupted run resumes where it stopped and never pays for an item twice (a truncated last
  line left by a kill is dropped); cached results are keyed by item id and a fingerprint of the
  prompt template, the model and ``n_queries``;
- items that never produce a valid answer are reported with their last error, never dropped
  silently; a wrong key, URL or model (HTTP 401/403/404) stops the run at once.

Client choice: ``httpx`` with ``asyncio`` rather than the ``openai`` package. The run needs exact
control of every attempt (which errors are retried, how long to wait, a shared pause on 429, a
count of requests, retries and re-asks for the summary), and the ``openai`` client retries on
its own policy underneath, which would stack with ours and hide attempts. With ``httpx`` each
attempt is one plain POST; the request is the documented chat-completions JSON, so servers that
implement only that route work too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from semid import __version__
from semid.data.llm_cache import QueryCache
from semid.data.llm_client import (
    LLMRequestError,
    backoff_delay,
    retry_after_seconds,
)
from semid.data.llm_generator import (
    ABORT_AFTER_FAILURES,
    GenerationSummary,
    ItemFailure,
    LLMQueryGenerator,
)
from semid.data.llm_prompt import (
    AnswerError,
    CatalogueItem,
    check_prompt,
    default_prompt_path,
    parse_answer,
    prompt_sha256,
    read_prompt,
    render_prompt,
    title_variants,
)
from semid.data.llm_settings import LLMSettings
from semid.errors import ConfigError
from semid.io import atomic_path, write_json

# The generator, prompt, client, cache and settings live in their own modules (llm_*.py);
# importable from here too.
__all__ = [
    "ABORT_AFTER_FAILURES",
    "AnswerError",
    "CatalogueItem",
    "GenerationSummary",
    "ItemFailure",
    "LLMQueryGenerator",
    "LLMRequestError",
    "LLMSettings",
    "QueryCache",
    "backoff_delay",
    "check_prompt",
    "default_prompt_path",
    "generate_query_file",
    "parse_answer",
    "read_prompt",
    "render_prompt",
    "retry_after_seconds",
    "title_variants",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- query files


def sidecar(out: Path, suffix: str) -> Path:
    """``FILE.<suffix>`` next to the output file (``.meta.json``, ``.cache.jsonl``, ...)."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def generate_query_file(
    items: pl.DataFrame,
    out: Path,
    settings: LLMSettings,
    prompt_template: str | None = None,
    *,
    prompt_file: Path | None = None,
    cache_path: Path | None = None,
    n_queries: int = 10,
    split: str = "paraphrase",
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    id_key: str = "movieId",
) -> GenerationSummary:
    """Generate queries for a catalogue and write them as a project query file.

    Writes, each atomically:

    - ``out``: JSONL, one ``{"query", "movieId", "group", "split"}`` per line, usable as
      ``semid run --set queries.source=file --set queries.file=OUT``;
    - ``OUT.meta.json``: model, base URL (never the key), prompt hash, split rule, counts;
    - ``OUT.failures.json``: items that never produced valid queries, with their last error.

    Finished items are appended to ``cache_path`` (default ``OUT.cache.jsonl``) as they come,
    so rerunning after an interruption only asks for the rest.

    Parameters
    ----------
    items : pl.DataFrame
        The item table (``item_idx``, ``item_id``, ``title``, optional ``year``, ``genres``,
        ``tags``, ``description``).
    prompt_template, prompt_file : str, Path or None
        Template text, or a file to read it from (default: the shipped paper prompt).
    n_queries : int
        Originals per item; the file holds ``2 * n_queries`` queries per item.
    split : {"paraphrase", "random"}
        How each item's queries divide into train and test.
    seed : int
        Seeds the ``random`` split.
    limit : int or None
        Only the first ``limit`` items (to try a prompt or model on a few).
    progress : bool
        Show a progress bar (items/s and ETA).
    id_key : {"movieId", "item_id"}
        The id key of the output lines (``semid`` reads either).

    Returns
    -------
    GenerationSummary
        Counts, token usage, throughput, failures and the paths written.
    """
    if id_key not in ("movieId", "item_id"):
        raise ConfigError(f"id_key={id_key!r}: use movieId or item_id")
    out = Path(out)
    template = _template(prompt_template, prompt_file)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit {limit}: must be at least 1")
        items = items.head(limit)
    cache_path = sidecar(out, ".cache.jsonl") if cache_path is None else Path(cache_path)
    generator = LLMQueryGenerator(settings, template, cache_path, n_queries, split, progress)
    frame = generator.generate(items, per_item=2 * n_queries, seed=seed)
    summary = generator.summary_
    summary.queries = frame.height
    summary.failures_path = sidecar(out, ".failures.json")
    write_json(
        summary.failures_path,
        {"failed": summary.failed, "items": [vars(f) for f in summary.failures]},
    )
    if frame.height == 0:
        return summary
    _write_lines(frame, items, out, id_key)
    summary.output = out
    summary.meta_path = sidecar(out, ".meta.json")
    run = {"template": template, "prompt_file": prompt_file, "n_queries": n_queries}
    run |= {"split": split, "seed": seed, "cache": cache_path}
    write_json(summary.meta_path, _meta(settings, summary, frame, run))
    return summary


def _template(prompt_template: str | None, prompt_file: Path | None) -> str:
    """The prompt template: given as text, read from a file, or the shipped paper prompt."""
    if prompt_template is not None and prompt_file is not None:
        raise ConfigError("pass prompt_template or prompt_file, not both")
    if prompt_file is not None:
        return read_prompt(prompt_file)
    return read_prompt() if prompt_template is None else prompt_template


def _write_lines(frame: pl.DataFrame, items: pl.DataFrame, out: Path, id_key: str) -> None:
    """The query file: one ``{"query", id_key, "group", "split"}`` object per line."""
    index = dict(zip(items["item_idx"].to_list(), items["item_id"].to_list(), strict=True))
    ids = [index[i] for i in frame["item_idx"].to_list()]
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for (query, _, group, part), item_id in zip(frame.iter_rows(), ids, strict=True):
            record = {"query": query, id_key: int(item_id), "group": group, "split": part}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _meta(
    settings: LLMSettings, summary: GenerationSummary, frame: pl.DataFrame, run: dict[str, Any]
) -> dict[str, Any]:
    """``OUT.meta.json``: the endpoint (never the key), the run's settings and its counts.

    ``run``: ``template``, ``prompt_file``, ``n_queries``, ``split``, ``seed`` and ``cache``.
    """

    def counts(col: str) -> dict:
        return dict(frame[col].value_counts(sort=True).iter_rows())

    return {
        "generator": "semid.data.llm_queries",
        "semid_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": settings.model,
        "base_url": settings.public_base_url,
        "temperature": settings.temperature,
        "json_mode": settings.json_mode if summary.json_mode is None else summary.json_mode,
        "prompt_file": str(run["prompt_file"] or "default (paper_queries.txt)"),
        "prompt_sha256": prompt_sha256(run["template"]),
        "n_queries": run["n_queries"],
        "split": run["split"],
        "split_rule": (
            "train = originals, test = paraphrases"
            if run["split"] == "paraphrase"
            else "a seeded random half of each item's queries is test"
        ),
        "seed": run["seed"],
        "items": {
            "requested": summary.items,
            "with_queries": summary.items - summary.failed,
            "failed": summary.failed,
        },
        "queries": {
            "total": frame.height,
            "by_split": counts("split"),
            "by_group": counts("group"),
        },
        "cache": str(run["cache"]),
        "failures": str(summary.failures_path),
    }
