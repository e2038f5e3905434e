"""Supervised training pairs: the shape check shared by the dynamics and seeker fitting loops."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["training_pairs"]


def training_pairs(inputs: np.ndarray | Tensor, targets: np.ndarray | Tensor, in_dim: int,
                   out_dim: int, device: torch.device, *,
                   names: tuple[str, str] = ("inputs", "targets")) -> tuple[Tensor, Tensor]:
    """`inputs` `[N, in_dim]` and `targets` `[N, out_dim]` as float32 tensors on `device`.

    Raises ValueError, naming both shapes (and `names`), when either is not 2-D, the row counts
    differ or a width is not the model's.
    """
    x = torch.as_tensor(inputs, dtype=torch.float32).to(device)
    y = torch.as_tensor(targets, dtype=torch.float32).to(device)
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0] or (
        x.shape[1] != in_dim or y.shape[1] != out_dim
    ):
        raise ValueError(f"expected {names[0]} [N, {in_dim}] and {names[1]} [N, {out_dim}], "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y
