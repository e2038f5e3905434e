"""The torch device and CPU threads a run uses (foundation helpers of the run scripts)."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["configure_threads", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when available, else CPU; anything else is checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = "auto, cpu" + (", cuda, cuda:<index>" if torch.cuda.is_available() else "") + (
        ", mps" if torch.backends.mps.is_available() else "")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use one of: {valid}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for CUDA, but torch sees no GPU here; "
                         f"use one of: {valid}")
    if device.type not in ("cpu", "cuda", "mps") or (
            device.type == "mps" and not torch.backends.mps.is_available()):
        raise ValueError(f"--device {name} is not available here; use one of: {valid}")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s) here "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def configure_threads(threads: Optional[int]) -> None:
    """Limit torch's intra-op CPU threads when asked (the original set OMP_NUM_THREADS=1)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
