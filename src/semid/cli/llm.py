"""``semid queries generate --llm``: write a search-query file with an LLM endpoint.

Mounted by :mod:`semid.cli.main` as ``semid queries generate``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from semid.cli.common import data_config
from semid.errors import ConfigError, SemidError

if TYPE_CHECKING:
    from semid.data.llm_queries import LLMSettings

log = logging.getLogger(__name__)
console = Console(stderr=True)

_LLM_PANEL = "LLM endpoint (--llm)"
_RUN_PANEL = "Robustness and cost (--llm)"


def _read_llm_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from semid.config import read_yaml

    data = read_yaml(Path(path), f"--llm-config {path}")
    return data.get("llm", data) if isinstance(data.get("llm"), dict) else data


_OutOpt = Annotated[Path, typer.Option("--out", "-o", help="JSONL query file to write.")]
_LlmOpt = Annotated[
    bool,
    typer.Option(
        "--llm",
        help="Ask an OpenAI-compatible LLM endpoint (required; offline queries: "
        "`semid queries template`).",
    ),
]
_DatasetOpt = Annotated[
    str, typer.Option(help="Dataset name, or a folder of the catalogue's files.")
]
_PathOpt = Annotated[Path | None, typer.Option(help="Folder of the dataset's files.")]
_MaxItemsOpt = Annotated[int | None, typer.Option(help="Only the N most interacted items.")]
_MaxTagsOpt = Annotated[int, typer.Option(help="Most frequent tags shown to the model.")]
_LimitOpt = Annotated[
    int | None, typer.Option(help="Only the first N items (try a prompt or model cheaply).")
]
_SeedOpt = Annotated[int, typer.Option(help="Seed of the random split.")]
_BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="API root, e.g. https://api.openai.com/v1 (env: SEMID_LLM_BASE_URL).",
        rich_help_panel=_LLM_PANEL,
    ),
]
_ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Model name, e.g. gemini-2.0-flash (env: SEMID_LLM_MODEL).", rich_help_panel=_LLM_PANEL
    ),
]
_ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        help="API key; better set SEMID_LLM_API_KEY or OPENAI_API_KEY in the environment.",
        rich_help_panel=_LLM_PANEL,
    ),
]
_LlmConfigOpt = Annotated[
    Path | None,
    typer.Option(
        help="YAML file of LLM settings (base_url, model, concurrency, timeout, ...); "
        "options given here win over it, it wins over the environment.",
        rich_help_panel=_LLM_PANEL,
    ),
]
_PromptOpt = Annotated[
    Path | None,
    typer.Option(
        help="Prompt template file ($title $year $genres $tags $description $n_queries); "
        "default: the shipped paper prompt.",
        rich_help_panel=_LLM_PANEL,
    ),
]
_NQueriesOpt = Annotated[
    int,
    typer.Option(
        help="Original queries per item; as many paraphrases come with them.",
        rich_help_panel=_LLM_PANEL,
    ),
]
_SplitOpt = Annotated[
    str,
    typer.Option(
        help="paraphrase: train = originals, test = paraphrases (the paper); random: a seeded "
        "random half of each item's queries is test.",
        rich_help_panel=_LLM_PANEL,
    ),
]
_TemperatureOpt = Annotated[
    float | None,
    typer.Option(help="Sampling temperature (default 0.7).", rich_help_panel=_LLM_PANEL),
]
_JsonModeOpt = Annotated[
    bool | None,
    typer.Option(
        "--json-mode/--no-json-mode",
        help="Send response_format=json_object (default on; dropped if rejected).",
        rich_help_panel=_LLM_PANEL,
    ),
]
_ConcurrencyOpt = Annotated[
    int | None, typer.Option(help="Requests in flight (default 8).", rich_help_panel=_RUN_PANEL)
]
_TimeoutOpt = Annotated[
    float | None,
    typer.Option(help="Request timeout in seconds (default 60).", rich_help_panel=_RUN_PANEL),
]
_MaxRetriesOpt = Annotated[
    int | None,
    typer.Option(
        help="Retries per request on timeouts, connection errors, 429, 5xx (default 6).",
        rich_help_panel=_RUN_PANEL,
    ),
]
_MaxReasksOpt = Annotated[
    int | None,
    typer.Option(
        help="Times an invalid answer is sent back with its error (default 2).",
        rich_help_panel=_RUN_PANEL,
    ),
]
_CacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Cache of finished items (default: OUT.cache.jsonl); rerun to resume.",
        rich_help_panel=_RUN_PANEL,
    ),
]
_ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]


def generate(
    out: _OutOpt,
    llm: _LlmOpt = False,
    dataset: _DatasetOpt = "ml-latest-small",
    path: _PathOpt = None,
    max_items: _MaxItemsOpt = None,
    max_tags: _MaxTagsOpt = 5,
    limit: _LimitOpt = None,
    seed: _SeedOpt = 0,
    base_url: _BaseUrlOpt = None,
    model: _ModelOpt = None,
    api_key: _ApiKeyOpt = None,
    llm_config: _LlmConfigOpt = None,
    prompt: _PromptOpt = None,
    n_queries: _NQueriesOpt = 10,
    split: _SplitOpt = "paraphrase",
    temperature: _TemperatureOpt = None,
    json_mode: _JsonModeOpt = None,
    concurrency: _ConcurrencyOpt = None,
    timeout: _TimeoutOpt = None,
    max_retries: _MaxRetriesOpt = None,
    max_reasks: _MaxReasksOpt = None,
    cache: _CacheOpt = None,
    progress: _ProgressOpt = True,
) -> None:
    """Write a search-query file with an LLM: {"query", "movieId", "group", "split"} per line.

    Every item gets --n-queries queries that avoid its title plus a paraphrase of
    each, from any OpenAI-compatible endpoint (Gemini, OpenAI, vLLM, Ollama, llama.cpp).
    Finished items are cached as they arrive: rerun the same command after an interruption
    and only the rest is asked for. Exit status 1 if any item failed (see OUT.failures.json).

    Use the file with: semid run --set queries.source=file --set queries.file=OUT
    """
    from semid.data import load_dataset

    if not llm:
        raise ConfigError(
            "semid queries generate: pass --llm to use an LLM endpoint (offline template "
            "queries: semid queries template)"
        )
    from semid.data.llm_queries import LLMSettings, generate_query_file

    settings = LLMSettings.resolve(
        config=_read_llm_config(llm_config),
        base_url=base_url,
        model=model,
        api_key=api_key,
        temperature=temperature,
        json_mode=json_mode,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        max_reasks=max_reasks,
    )
    data_cfg = data_config(dataset, path, max_items=max_items, max_tags=max_tags)
    items = load_dataset(data_cfg).items
    _print_endpoint(min(limit or items.height, items.height), settings)
    try:
        summary = generate_query_file(
            items,
            out,
            settings,
            prompt_file=prompt,
            cache_path=cache,
            n_queries=n_queries,
            split=split,
            seed=seed,
            id_key=_id_key(data_cfg),
            limit=limit,
            progress=progress,
        )
    except KeyboardInterrupt:
        raise _interrupted(cache or out.with_name(out.name + ".cache.jsonl")) from None
    _print_summary(summary)
    if not summary.ok:
        raise typer.Exit(1)


def _print_endpoint(n_items: int, settings: LLMSettings) -> None:
    """Say how many items go to which model and endpoint, how many requests at a time."""
    console.print(
        f"[bold]{n_items}[/bold] items -> {settings.model} at "
        f"{settings.public_base_url} (concurrency {settings.concurrency})"
    )


def _interrupted(cache: Path) -> typer.Exit:
    """Ctrl-C: say where the finished items are kept; the exit (status 130) to raise."""
    console.print(
        f"[yellow]interrupted[/yellow]: finished items are kept in {cache}; run the same "
        "command again to continue"
    )
    return typer.Exit(130)


def _id_key(data_cfg: Any) -> str:
    """``movieId`` for MovieLens data (by name or by folder layout), else ``item_id``."""
    from semid.data.movielens import MOVIELENS_NAMES, detect_layout

    if data_cfg.dataset in MOVIELENS_NAMES:
        return "movieId"
    if data_cfg.path is not None and Path(data_cfg.path).is_dir():
        with contextlib.suppress(SemidError):
            return (
                "movieId"
                if detect_layout(data_cfg.path).kind.startswith("movielens")
                else "item_id"
            )
    return "item_id"


def _print_summary(summary: Any) -> None:
    table = Table(title="LLM query generation", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("items", summary.items),
        ("reused from cache", summary.cached),
        ("generated now", summary.generated),
        ("failed", summary.failed),
        ("queries written", summary.queries),
        ("requests / retries / re-asks",
         f"{summary.requests} / {summary.retries} / {summary.reasks}"),
        ("tokens in / out", f"{summary.prompt_tokens} / {summary.completion_tokens}"),
        ("time", f"{summary.elapsed_s:.1f} s ({summary.items_per_s:.1f} items/s)"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    if summary.output is not None:
        console.print(f"wrote {summary.output} (+ .meta.json); cache: {summary.cache_path}")
    if summary.failures:
        console.print(
            f"[red]{summary.failed} item(s) failed[/red] (all listed in {summary.failures_path}); "
            "rerun the same command to retry only them:"
        )
        for failure in summary.failures[:10]:
            console.print(f"  {failure.item_id} {failure.title!r}: {failure.error}")
        if summary.failed > 10:
            console.print(f"  ... and {summary.failed - 10} more")
