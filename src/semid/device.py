"""Which torch device a ``device`` option means (one rule for every stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from semid.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str, option: str = "device") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without CUDA names ``option``."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{option}={device}: CUDA is not available on this machine")
    return torch.device(device)
