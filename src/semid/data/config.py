"""Config of the data stage: which catalogue, how interactions become sequences, queries."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer


def omit_new_defaults(model: BaseModel, dumped: Any, names: Iterable[str]) -> Any:
    """``dumped`` (a dump of ``model``) without the fields ``names`` that hold their default.

    Fields added after stage caches existed use this, so that configs which do not set them
    dump, hash and key exactly as before.
    """
    if not isinstance(dumped, dict):
        return dumped
    fields = type(model).model_fields
    for name in names:
        if name in dumped and getattr(model, name) == fields[name].get_default(
            call_default_factory=True
        ):
            del dumped[name]
    return dumped


class DataConfig(BaseModel):
    """Where the catalogue comes from and how interactions are split."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        "ml-latest-small",
        description="MovieLens name (ml-latest-small, ml-100k, ml-1m, ml-10m, ml-20m, ml-25m) "
        "or 'custom' for an imported catalogue.",
    )
    path: Path | None = Field(
        None, description="Local folder with the dataset files; default: the bundled copy."
    )
    rating_threshold: float | None = Field(
        None, description="Keep only ratings >= this value; None keeps every rating (implicit)."
    )
    max_history: int = Field(20, ge=1, description="Histories are truncated to the last N items.")
    min_user_interactions: int = Field(
        3, ge=3, description="Leave-last-out needs train, valid and test items per user."
    )
    drop_short_users: bool = Field(
        False, description="Drop users below min_user_interactions instead of failing."
    )
    max_tags: int = Field(5, ge=0, description="Most frequent tags appended to an item's text.")
    max_items: int | None = Field(
        None,
        ge=10,
        description="Keep only the N most interacted items (quick experiments); needs "
        "interactions (a catalogue without them: sample_items).",
    )
    max_users: int | None = Field(
        None, ge=2, description="Keep only the first N users by id (quick experiments)."
    )
    sample_items: int | None = Field(
        None,
        ge=10,
        description="Keep a seeded random subset of N catalogue items (before every other "
        "filter; interactions with the other items are dropped). Rule: items are ordered by a "
        "SplitMix64 hash of (sample_seed, item_id) and the first N are kept, so the order "
        "depends neither on the run seed nor on the file's row order, and for one catalogue "
        "and sample_seed a smaller sample is contained in every larger one (nested sizes for "
        "a scaling study). Works without interactions, unlike max_items.",
    )
    sample_seed: int = Field(
        0,
        description="Seed of the sample_items order; independent of the run seed, so every "
        "run seed sees the same subset.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        dumped = omit_new_defaults(self, handler(self), ("sample_items", "sample_seed"))
        if self.sample_items is None and isinstance(dumped, dict):
            dumped.pop("sample_seed", None)  # no sample: its seed changes nothing
        return dumped


class QueryConfig(BaseModel):
    """Where search queries come from and how they are split into train and test."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        "template",
        description="template: offline generator; file: a JSONL query file; or any "
        "registered query generator (semid.data.queries.QUERY_GENERATORS).",
    )
    file: Path | None = Field(
        None, description='JSONL file of {"query": str, "movieId": int} (source=file).'
    )
    per_item: int = Field(10, ge=2, description="Queries generated per item.")
    test_per_item: int = Field(
        2, ge=1, description="Of each item's queries, how many are held out for testing."
    )
    title_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Template queries: this share of queries contains the item's title (an "
        "upper bound with specific=false; with specific=true, items whose metadata cannot be "
        "specific get more title queries).",
    )
    specific: bool = Field(
        True,
        description="Template queries: every query names the title or states attributes "
        "(genres, decade, year, era, tags) that at most max_items_per_query items share; false: "
        "the generic queries of earlier versions ('recommend me a drama').",
    )
    max_items_per_query: int = Field(
        5,
        ge=1,
        description="Template queries with specific=true: a non-title query's attribute "
        "combination matches at most this many catalogue items.",
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        from semid.data.queries import QUERY_GENERATORS

        return value if value == "file" else QUERY_GENERATORS.validate(value)
