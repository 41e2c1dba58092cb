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

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import string
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import polars as pl
from tqdm.auto import tqdm

from semid import __version__
from semid.errors import ConfigError, DataError, SemidError
from semid.io import atomic_path, stable_hash, write_json

log = logging.getLogger(__name__)

ENV_BASE_URL = "SEMID_LLM_BASE_URL"
ENV_MODEL = "SEMID_LLM_MODEL"
ENV_API_KEY = "SEMID_LLM_API_KEY"
ENV_API_KEY_FALLBACK = "OPENAI_API_KEY"

SPLITS = ("paraphrase", "random")
ORIGINAL, PARAPHRASE = "original", "paraphrase"
PROMPT_FIELDS = ("title", "year", "genres", "tags", "description", "n_queries")
CACHE_VERSION = 1

MIN_TITLE_CHARS = 4
"""Titles shorter than this that are a single word ("Up", "It", "Her") are not checked in
queries: they are ordinary words a description cannot avoid."""
ABORT_AFTER_FAILURES = 20
"""Stop the run when this many items failed in a row before any succeeded (a broken setup)."""
MAX_RETRY_AFTER_S = 300.0
_REASK = (
    "That answer is not valid: {error}. Answer again with only the JSON object "
    '{{"queries": [...], "paraphrases": [...]}}, each list with exactly {n} different, '
    "non-empty strings, none of them mentioning the title."
)
_ARTICLES = frozenset(
    ("the", "a", "an", "les", "la", "le", "l", "il", "lo", "gli", "das", "der", "die", "ein",
     "eine", "el", "los", "las", "un", "une", "una", "det", "den")
)  # fmt: skip


# ----------------------------------------------------------------------------- settings


@dataclass
class LLMSettings:
    """How to reach the endpoint and how hard to try.

    Parameters
    ----------
    base_url : str
        The OpenAI-compatible API root, e.g. ``https://api.openai.com/v1`` or
        ``http://localhost:11434/v1``; requests go to ``{base_url}/chat/completions``.
    model : str
        Model name as the endpoint knows it.
    api_key : str or None
        Sent as ``Authorization: Bearer KEY``; never written to any file or log.
    timeout : float
        Seconds to wait for connecting, and between bytes of the response.
    max_retries : int
        Retries of one request after a timeout, connection error, 408, 429 or 5xx.
    concurrency : int
        Requests in flight at once.
    temperature : float
        Sampling temperature.
    max_reasks : int
        How many times an invalid answer is sent back with its validation error.
    json_mode : bool
        Send ``response_format={"type": "json_object"}``; dropped automatically for the rest of
        the run if the endpoint rejects it with HTTP 400 and accepts the request without it.
    backoff_base, backoff_max : float
        Back-off before retry *k* is ``min(backoff_max, backoff_base * 2**(k-1))`` seconds,
        jittered to between half and all of it.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 6
    concurrency: int = 8
    temperature: float = 0.7
    max_reasks: int = 2
    json_mode: bool = True
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not re.match(r"^https?://\S+$", self.base_url):
            raise ConfigError(
                f"--base-url {self.base_url!r}: expected an http(s) URL such as "
                "https://api.openai.com/v1"
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("--model: the model name is empty")
        self.timeout = _number("timeout", self.timeout, float, 1e-3)
        self.max_retries = _number("max-retries", self.max_retries, int, 0)
        self.concurrency = _number("concurrency", self.concurrency, int, 1)
        self.temperature = _number("temperature", self.temperature, float, 0.0)
        self.max_reasks = _number("max-reasks", self.max_reasks, int, 0)
        self.backoff_base = _number("backoff-base", self.backoff_base, float, 0.0)
        self.backoff_max = _number("backoff-max", self.backoff_max, float, 0.0)
        if not isinstance(self.json_mode, bool):
            raise ConfigError(f"json_mode={self.json_mode!r}: expected true or false")

    @property
    def chat_url(self) -> str:
        """Where requests go: ``{base_url}/chat/completions``."""
        root = self.base_url.rstrip("/")
        return root if root.endswith("/chat/completions") else f"{root}/chat/completions"

    @property
    def public_base_url(self) -> str:
        """The base URL without credentials or query string, safe to write into files."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> LLMSettings:
        """Settings from explicit ``options`` (CLI), then ``config``, then the environment.

        ``None`` means "not given" at every level. The environment supplies ``base_url``
        (``SEMID_LLM_BASE_URL``), ``model`` (``SEMID_LLM_MODEL``) and ``api_key``
        (``SEMID_LLM_API_KEY``, else ``OPENAI_API_KEY``).
        """
        env = os.environ if env is None else env
        names = [f.name for f in fields(cls)]
        unknown = sorted((set(config or {}) | set(options)) - set(names))
        if unknown:
            raise ConfigError(
                f"LLM settings: unknown key(s) {', '.join(unknown)} (known: {', '.join(names)})"
            )
        values: dict[str, Any] = {}
        for name in names:
            for source in (options, config or {}):
                if source.get(name) is not None:
                    values[name] = source[name]
                    break
        fallbacks = {
            "base_url": (ENV_BASE_URL,),
            "model": (ENV_MODEL,),
            "api_key": (ENV_API_KEY, ENV_API_KEY_FALLBACK),
        }
        for name, variables in fallbacks.items():
            if values.get(name) is None:
                values[name] = next((env[v] for v in variables if env.get(v)), None)
        if not values["base_url"]:
            raise ConfigError(
                f"no LLM endpoint: pass --base-url URL or set {ENV_BASE_URL} "
                "(e.g. https://generativelanguage.googleapis.com/v1beta/openai/)"
            )
        if not values["model"]:
            raise ConfigError(
                f"no LLM model: pass --model NAME or set {ENV_MODEL} (e.g. gemini-2.0-flash)"
            )
        return cls(**values)


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name} {value!r}: expected a number") from None
    if isinstance(value, bool) or number < minimum or (kind is float and math.isnan(number)):
        raise ConfigError(f"--{name} {value!r}: must be at least {minimum:g}")
    return number


# ----------------------------------------------------------------------------- items and prompt


@dataclass(frozen=True)
class CatalogueItem:
    """What the prompt knows about one item."""

    item_idx: int
    item_id: int
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str | None = None


def catalogue_items(items: pl.DataFrame) -> list[CatalogueItem]:
    """The rows of an item table (``item_idx``, ``item_id``, ``title``; optional ``year``,
    ``genres``, ``tags``, ``description``) as :class:`CatalogueItem` objects."""
    missing = [c for c in ("item_idx", "item_id", "title") if c not in items.columns]
    if missing:
        raise DataError(f"items: missing column(s) {', '.join(missing)} for LLM queries")
    if items["item_id"].is_duplicated().any():
        dup = items.filter(pl.col("item_id").is_duplicated())["item_id"][0]
        raise DataError(f"items: item_id {dup} appears more than once")
    columns = {
        name: items[name].to_list() if name in items.columns else [None] * items.height
        for name in ("item_idx", "item_id", "title", "year", "genres", "tags", "description")
    }
    out = []
    for idx, item_id, title, year, genres, tags, description in zip(*columns.values(), strict=True):
        out.append(
            CatalogueItem(
                item_idx=int(idx),
                item_id=int(item_id),
                title=str(title or "").strip(),
                year=int(year) if year is not None else None,
                genres=tuple(_as_list(genres)),
                tags=tuple(_as_list(tags)),
                description=str(description).strip() if description else None,
            )
        )
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def default_prompt_path() -> Path:
    """The shipped prompt template, ``semid/prompts/paper_queries.txt``."""
    return Path(str(resources.files("semid").joinpath("prompts", "paper_queries.txt")))


def read_prompt(path: Path | None = None) -> str:
    """Read and check a prompt template (the shipped one when ``path`` is None)."""
    path = default_prompt_path() if path is None else Path(path)
    try:
        template = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--prompt {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--prompt {path}: cannot read ({exc})") from None
    check_prompt(template, f"--prompt {path}")
    return template


def check_prompt(template: str, source: str = "prompt") -> None:
    """Raise :class:`ConfigError` if ``template`` uses unknown ``$placeholders`` or no $title."""
    used: set[str] = set()
    for match in string.Template.pattern.finditer(template):
        if match.group("invalid") is not None:
            line = template.count("\n", 0, match.start("invalid")) + 1
            raise ConfigError(f"{source}: line {line}: a lone '$' (write $$ for a dollar sign)")
        name = match.group("named") or match.group("braced")
        if name:
            used.add(name)
    unknown = sorted(used - set(PROMPT_FIELDS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown placeholder(s) {', '.join('$' + u for u in unknown)} "
            f"(available: {', '.join('$' + f for f in PROMPT_FIELDS)})"
        )
    if "title" not in used:
        raise ConfigError(f"{source}: the template never uses $title")


def render_prompt(template: str, item: CatalogueItem, n_queries: int) -> str:
    """The prompt of one item: ``$title``, ``$year``, ``$genres``, ``$tags``,
    ``$description`` and ``$n_queries`` filled in (missing values read "unknown"/"none")."""
    return string.Template(template).substitute(
        title=item.title or "unknown",
        year=item.year if item.year is not None else "unknown",
        genres=", ".join(item.genres) or "unknown",
        tags=", ".join(item.tags) or "none",
        description=item.description or "none",
        n_queries=n_queries,
    )


def prompt_sha256(template: str) -> str:
    """Hex SHA-256 of a prompt template (recorded in the output's metadata)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- answer validation


class AnswerError(ValueError):
    """The model's answer is not what the prompt asked for (the message is sent back to it)."""


_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n?(.*?)\n?```$", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def _normalise(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: words separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", plain).split())


def title_variants(title: str) -> list[str]:
    """Normalised forms of a title that no query may contain.

    The main title and any alternative title in parentheses (``"Amélie (Le Fabuleux destin
    d'Amélie Poulain)"``), each without a leading article; single words shorter than
    :data:`MIN_TITLE_CHARS` are left out.
    """
    main = re.sub(r"\s*\(.*\)\s*$", "", title).strip() or title
    alternatives = re.findall(r"\(([^()]*)\)", title)
    variants: list[str] = []
    for text in (main, *alternatives):
        words = _normalise(re.sub(r"^\s*a\.?k\.?a\.?\s+", "", text, flags=re.I)).split()
        if len(words) > 1 and words[0] in _ARTICLES:
            words = words[1:]
        variant = " ".join(words)
        if (len(words) > 1 or len(variant) >= MIN_TITLE_CHARS) and variant not in variants:
            variants.append(variant)
    return variants


def _json_object(content: str) -> dict[str, Any]:
    text = _THINK.sub("", content).strip()
    if not text:
        raise AnswerError("the answer is empty")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        start, end = text.find("{"), text.rfind("}")
        try:
            obj = json.loads(text[start : end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            obj = None
        if obj is None:
            raise AnswerError(
                f"the answer is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
    if not isinstance(obj, dict):
        raise AnswerError(
            f'expected a JSON object with keys "queries" and "paraphrases", got a '
            f"{type(obj).__name__}"
        )
    return obj


def _string_list(obj: dict[str, Any], key: str, n: int) -> list[str]:
    value = obj.get(key)
    if value is None:
        raise AnswerError(f'the JSON object has no "{key}" list')
    if not isinstance(value, list):
        raise AnswerError(f'"{key}" must be a list of strings, got a {type(value).__name__}')
    if len(value) != n:
        raise AnswerError(f'"{key}" must have exactly {n} entries, got {len(value)}')
    out = []
    for i, entry in enumerate(value, start=1):
        if not isinstance(entry, str):
            raise AnswerError(f'"{key}" entry {i} must be a string, got {json.dumps(entry)[:80]}')
        text = " ".join(entry.split())
        if not text:
            raise AnswerError(f'"{key}" entry {i} is empty')
        out.append(text)
    return out


def parse_answer(content: str, n_queries: int, title: str) -> tuple[list[str], list[str]]:
    """Validate a model answer; return its ``queries`` and ``paraphrases``.

    Accepts the JSON object bare, in a Markdown code fence, or surrounded by prose. Raises
    :class:`AnswerError` (one line, meant to be sent back to the model) unless both lists hold
    exactly ``n_queries`` non-empty strings, all ``2 * n_queries`` distinct (ignoring case and
    spacing), none containing the title (see :func:`title_variants`).
    """
    obj = _json_object(content)
    queries = _string_list(obj, "queries", n_queries)
    paraphrases = _string_list(obj, "paraphrases", n_queries)
    seen: dict[str, str] = {}
    labelled = [(f"query {i}", q) for i, q in enumerate(queries, 1)] + [
        (f"paraphrase {i}", p) for i, p in enumerate(paraphrases, 1)
    ]
    variants = title_variants(title)
    for label, text in labelled:
        key = _normalise(text)
        if key in seen:
            raise AnswerError(f"{seen[key]} and {label} are the same: {text!r}")
        seen[key] = label
        padded = f" {key} "
        for variant in variants:
            if f" {variant} " in padded:
                raise AnswerError(f"{label} mentions the title {title!r}: {text!r}")
    return queries, paraphrases


# ----------------------------------------------------------------------------- the endpoint


class LLMRequestError(SemidError):
    """A request failed for good (retries exhausted, or a non-retryable HTTP error)."""


@dataclass
class RequestStats:
    """Counters of one run."""

    requests: int = 0
    retries: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(raw_ms) / 1000)
    raw = headers.get("retry-after")
    if not raw:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(raw))
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(
    attempt: int, settings: LLMSettings, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    ``retry_after`` (from the server) is honoured, capped at :data:`MAX_RETRY_AFTER_S`, plus up
    to 10% jitter; otherwise exponential back-off with "equal jitter": a uniform draw between
    half and all of ``min(backoff_max, backoff_base * 2 ** (attempt - 1))``.
    """
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S) * (1.0 + 0.1 * rng.random())
    ceiling = min(settings.backoff_max, settings.backoff_base * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
    if not message:
        message = response.text.strip() or response.reason_phrase
    return " ".join(str(message).split())[:300]


class _Endpoint:
    """One chat-completions endpoint: retries, back-off, the shared 429 pause, JSON mode."""

    def __init__(self, settings: LLMSettings, stats: RequestStats, rng: random.Random) -> None:
        self.settings = settings
        self.stats = stats
        self.rng = rng
        self.json_mode = settings.json_mode
        self._pause_until = 0.0
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=settings.concurrency,
            ),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        """The answer's text and finish reason; raises :class:`LLMRequestError` when it gives up."""
        settings = self.settings
        attempt = 0
        json_mode = self.json_mode
        while True:
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            body: dict[str, Any] = {
                "model": settings.model,
                "messages": messages,
                "temperature": settings.temperature,
            }
            if json_mode:
                body["response_format"] = {"type": "json_object"}
            retry_after = None
            self.stats.requests += 1
            try:
                response = await self.client.post(settings.chat_url, json=body)
            except httpx.TimeoutException:
                error = f"timed out after {settings.timeout:g} s"
            except httpx.TransportError as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                error = f"connection error ({detail})"
            else:
                status = response.status_code
                if status == 200:
                    if self.json_mode and not json_mode:  # worked without: keep it off
                        self.json_mode = False
                        log.warning(
                            "%s rejects response_format=json_object; sending requests without it",
                            settings.public_base_url,
                        )
                    return self._answer(response)
                error = f"HTTP {status}: {_error_message(response)}"
                if status in (401, 403):
                    raise ConfigError(
                        f"{settings.public_base_url}: the endpoint refused the request ({error}); "
                        f"check --api-key / {ENV_API_KEY} / {ENV_API_KEY_FALLBACK}"
                    )
                if status == 404:
                    raise ConfigError(
                        f"{settings.chat_url}: {error}; check --base-url (it usually ends in /v1, "
                        "or /v1beta/openai/ for Gemini) and --model"
                    )
                if status == 400 and json_mode:
                    json_mode = False  # maybe JSON mode is unsupported: try once without it
                    continue
                if status not in (408, 429) and status < 500:
                    raise LLMRequestError(error)
                retry_after = retry_after_seconds(response.headers)
            attempt += 1
            if attempt > settings.max_retries:
                raise LLMRequestError(f"{error} (gave up after {attempt} attempts)")
            self.stats.retries += 1
            delay = backoff_delay(attempt, settings, self.rng, retry_after)
            if error.startswith("HTTP 429"):
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
            log.debug("retry %d in %.2f s: %s", attempt, delay, error)
            await asyncio.sleep(delay)

    def _answer(self, response: httpx.Response) -> tuple[str, str | None]:
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice.get("message", {}).get("content") or ""
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMRequestError(
                f"malformed chat-completions response: {response.text.strip()[:200]!r}"
            ) from None
        usage = payload.get("usage") or {}
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content), finish


# ----------------------------------------------------------------------------- the cache


class QueryCache:
    """Append-only JSONL of validated per-item results; one line per item, fsynced.

    Lines whose ``fingerprint`` differs (another prompt, model or ``n_queries``) are ignored,
    as is a truncated last line (it is cut off before new lines are appended). The file is
    locked while open, so two runs cannot write it at once.
    """

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._fh: IO[bytes] | None = None

    def open(self) -> dict[int, dict[str, Any]]:
        """Lock the file and return its valid records by item id."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+b")
        try:
            _lock(fh, self.path)
            fh.seek(0)
            data = fh.read()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                log.warning("%s: dropped a truncated last line (an interrupted write)", self.path)
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
                data = data[:keep]
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        records: dict[int, dict[str, Any]] = {}
        other = bad = 0
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                item_id = int(record["item_id"])
                ok = isinstance(record["queries"], list) and isinstance(record["paraphrases"], list)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if not ok:
                bad += 1
            elif record.get("fingerprint") != self.fingerprint:
                other += 1
            else:
                records[item_id] = record
        if bad:
            log.warning("%s: skipped %d unreadable line(s)", self.path, bad)
        if other:
            log.info(
                "%s: %d cached result(s) from another prompt/model/n_queries are not reused",
                self.path,
                other,
            )
        return records

    def append(self, *records: dict[str, Any]) -> None:
        """Write each record as one line; flushed and fsynced before returning."""
        if self._fh is None:
            raise RuntimeError("QueryCache.append before open")
        lines = [
            json.dumps({**record, "fingerprint": self.fingerprint}, ensure_ascii=False) + "\n"
            for record in records
        ]
        self._fh.write("".join(lines).encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _GroupCommit:
    """Cache appends off the event loop; records finished meanwhile share one fsync.

    ``await write(record)`` returns once the record's line is on disk, so an item counts as
    done only when a kill can no longer lose it; fsync (milliseconds) bounds throughput only
    per batch, not per item.
    """

    def __init__(self, cache: QueryCache) -> None:
        self.cache = cache
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="semid-cache")
        self.pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.flushing = False
        self.task: asyncio.Task[None] | None = None

    async def write(self, record: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.pending.append((record, done))
        if not self.flushing:
            self.flushing = True
            self.task = loop.create_task(self._flush())
        await done

    async def drain(self) -> None:
        """Wait until every record handed over so far is on disk (also when cancelled)."""
        while self.task is not None and not self.task.done():
            await asyncio.wait({self.task})

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await loop.run_in_executor(
                        self.pool, self.cache.append, *[record for record, _ in batch]
                    )
                except Exception as exc:  # disk full, ...: every waiter sees it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self.flushing = False

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _lock(fh: IO[bytes], path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"{path}: another process is using this cache (is another `semid queries generate` "
            "still running?)"
        ) from None


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
        endpoint = _Endpoint(self.settings, stats, random.Random())
        writer = _GroupCommit(cache) if cache is not None else None
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
        self, endpoint: _Endpoint, template: str, item: CatalogueItem
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
    if prompt_template is not None and prompt_file is not None:
        raise ConfigError("pass prompt_template or prompt_file, not both")
    if prompt_file is not None:
        prompt_template = read_prompt(prompt_file)
    template = read_prompt() if prompt_template is None else prompt_template
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
    index = dict(zip(items["item_idx"].to_list(), items["item_id"].to_list(), strict=True))
    ids = [index[i] for i in frame["item_idx"].to_list()]
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for (query, _, group, part), item_id in zip(frame.iter_rows(), ids, strict=True):
            record = {"query": query, id_key: int(item_id), "group": group, "split": part}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary.output = out
    summary.meta_path = sidecar(out, ".meta.json")
    counts = lambda col: dict(frame[col].value_counts(sort=True).iter_rows())  # noqa: E731
    write_json(
        summary.meta_path,
        {
            "generator": "semid.data.llm_queries",
            "semid_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": settings.model,
            "base_url": settings.public_base_url,
            "temperature": settings.temperature,
            "json_mode": settings.json_mode if summary.json_mode is None else summary.json_mode,
            "prompt_file": str(prompt_file) if prompt_file else "default (paper_queries.txt)",
            "prompt_sha256": prompt_sha256(template),
            "n_queries": n_queries,
            "split": split,
            "split_rule": (
                "train = originals, test = paraphrases"
                if split == "paraphrase"
                else "a seeded random half of each item's queries is test"
            ),
            "seed": seed,
            "items": {
                "requested": summary.items,
                "with_queries": summary.items - summary.failed,
                "failed": summary.failed,
            },  # fmt: skip
            "queries": {
                "total": frame.height,
                "by_split": counts("split"),
                "by_group": counts("group"),
            },  # fmt: skip
            "cache": str(cache_path),
            "failures": str(summary.failures_path),
        },
    )
    return summary
