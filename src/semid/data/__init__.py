"""The data stage: catalogues, user sequences and search queries.

- :func:`load_dataset` — any MovieLens layout, an imported catalogue or a saved dataset folder.
- :func:`make_splits` — leave-last-out sequences and the train/test search queries.
- :func:`load_query_file` — a JSONL query file mapped onto a catalogue.
- :func:`query_ambiguity` — how ambiguous a query set is, and its ceiling on Recall@K.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from semid.data.ambiguity import query_ambiguity
from semid.data.config import DataConfig, QueryConfig
from semid.data.dataset import Dataset, Splits
from semid.data.importer import build_dataset, import_catalogue, load_internal
from semid.data.movielens import MOVIELENS_NAMES, detect_layout, load_movielens, resolve_path
from semid.data.queries import (
    QueryGenerator,
    TemplateQueryGenerator,
    load_query_file,
    register_query_generator,
)
from semid.data.splits import leave_last_out, make_splits, order_ties, split_queries, tie_stats
from semid.data.tables import read_table

log = logging.getLogger(__name__)

__all__ = [
    "MOVIELENS_NAMES",
    "DataConfig",
    "Dataset",
    "QueryConfig",
    "QueryGenerator",
    "Splits",
    "TemplateQueryGenerator",
    "build_dataset",
    "detect_layout",
    "import_catalogue",
    "leave_last_out",
    "load_dataset",
    "load_query_file",
    "make_splits",
    "order_ties",
    "query_ambiguity",
    "register_query_generator",
    "split_queries",
    "tie_stats",
]


def load_dataset(cfg: DataConfig, items_only: bool = False) -> Dataset:
    """Load the catalogue and interactions named by ``cfg``, filtered as it says.

    The folder is ``cfg.path`` or, without one, the bundled/cached copy of ``cfg.dataset``;
    its layout (MovieLens CSV, ``.dat``, ml-100k, a saved dataset, generic tables) is detected
    from the files present. ``items_only`` (runs that need no interactions) also accepts a
    ``movies.csv`` alone (zero interactions).
    """
    start = time.perf_counter()
    layout = detect_layout(resolve_path(cfg.dataset, cfg.path), items_only=items_only)
    options: dict[str, Any] = {
        "rating_threshold": cfg.rating_threshold,
        "max_items": cfg.max_items,
        "max_users": cfg.max_users,
        "max_tags": cfg.max_tags,
        "sample_items": cfg.sample_items,
        "sample_seed": cfg.sample_seed,
    }
    if layout.kind == "internal":
        dataset = load_internal(layout.folder, **options)
    elif layout.kind == "generic":
        assert layout.interactions is not None  # a generic layout has both tables
        dataset = build_dataset(
            read_table(layout.items),
            read_table(layout.interactions),
            items_source=str(layout.items),
            interactions_source=str(layout.interactions),
            **options,
        )
    else:
        dataset = load_movielens(layout, **options)
    log.info(
        "%s (%s): %d items, %d users, %d interactions in %.1fs",
        layout.folder,
        layout.kind,
        dataset.items.height,
        dataset.interactions["user_id"].n_unique(),
        dataset.interactions.height,
        time.perf_counter() - start,
    )
    return dataset
