"""Multi-process runs (``torchrun`` / ``accelerate launch``): who builds, who waits, who writes.

Processes, the process group and every collective come from Hugging Face ``accelerate`` (its
:class:`~accelerate.PartialState`, which calls ``torch.distributed.init_process_group``); this
module only asks it questions. A plain ``semid run`` (no launcher, ``WORLD_SIZE`` unset or 1)
never imports accelerate here and every answer is the single-process one.

Under a launcher every process runs the whole pipeline. Stages that train one model together
(the generator) are built by all processes, each on its share of every global batch; every
other stage is built by rank 0 while the others wait at a barrier and then read the cached
result. Only rank 0 writes artefacts, manifests and reports.
"""

from __future__ import annotations

import datetime
import os
from functools import lru_cache

# Rank 0 may build a long stage (embeddings, evaluation) while the others wait at a barrier.
TIMEOUT_HOURS = float(os.environ.get("SEMID_DIST_TIMEOUT_HOURS", "24"))


def launched() -> bool:
    """Whether this process was started by a multi-process launcher (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def state():
    """accelerate's process state (initialises the process group once, under a launcher)."""
    import torch
    from accelerate import PartialState

    kwargs = {}
    if launched():
        kwargs["timeout"] = datetime.timedelta(hours=TIMEOUT_HOURS)
    return PartialState(cpu=not torch.cuda.is_available(), **kwargs)


def rank() -> int:
    return state().process_index if launched() else 0


def world_size() -> int:
    return state().num_processes if launched() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes artefacts."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if launched():
        state().wait_for_everyone()


def agree(value):
    """Rank 0's ``value`` on every process (accelerate's ``broadcast_object_list``)."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    state()
    return broadcast_object_list([value])[0]
