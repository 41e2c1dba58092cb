"""semid: semantic IDs for joint generative search and recommendation."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from semid.serving import SemidModel


def load(run_dir, device: str = "cpu", precision: str = "auto") -> SemidModel:
    """Load a trained run directory; see :class:`semid.serving.SemidModel`."""
    from semid.serving import load as _load

    return _load(run_dir, device, precision)
