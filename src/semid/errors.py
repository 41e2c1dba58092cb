"""User-facing errors: one clear line naming the file or option and the problem."""

from __future__ import annotations

from typing import Any


class SemidError(Exception):
    """An error caused by the user's input or config, reported as one line without a traceback."""


class DataError(SemidError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(SemidError):
    """A config value is invalid or the combination of values is impossible."""


def first_error(exc: Any, sep: str = ".") -> tuple[str, str]:
    """The option path and message of a pydantic ``ValidationError``'s first error."""
    err = exc.errors()[0]
    return sep.join(str(part) for part in err["loc"]), err["msg"]
