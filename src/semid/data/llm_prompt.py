"""The LLM query generator's prompt and the validation of its answers."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import string
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from semid.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("title", "year", "genres", "tags", "description", "n_queries")
MIN_TITLE_CHARS = 4
"""Titles shorter than this that are a single word ("Up", "It", "Her") are not checked in
queries: they are ordinary words a description cannot avoid."""
_ARTICLES = frozenset(
    ("the", "a", "an", "les", "la", "le", "l", "il", "lo", "gli", "das", "der", "die", "ein",
     "eine", "el", "los", "las", "un", "une", "una", "det", "den")
)  # fmt: skip


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
    return Path(str(resources.files("semid") / "prompts" / "paper_queries.txt"))


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
