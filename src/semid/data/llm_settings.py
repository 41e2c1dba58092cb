"""Where and how to reach the LLM endpoint: :class:`LLMSettings` (arguments, then environment)."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from semid.errors import ConfigError

log = logging.getLogger(__name__)

ENV_BASE_URL = "SEMID_LLM_BASE_URL"
ENV_MODEL = "SEMID_LLM_MODEL"
ENV_API_KEY = "SEMID_LLM_API_KEY"
ENV_API_KEY_FALLBACK = "OPENAI_API_KEY"


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
