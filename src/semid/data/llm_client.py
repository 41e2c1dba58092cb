"""One chat-completions endpoint over ``httpx``: retries, back-off, ``Retry-After``, stats."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from semid.data.llm_settings import ENV_API_KEY, ENV_API_KEY_FALLBACK, LLMSettings
from semid.errors import ConfigError, SemidError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 300.0


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


class Endpoint:
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
