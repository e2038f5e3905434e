"""Helpers every policy's update uses: target averaging, metric conversion, gradient masking."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import reduce
from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["check_num_real", "no_param_grad", "polyak_update", "scalars_to_floats"]


@contextmanager
def no_param_grad(module: nn.Module) -> Iterator[None]:
    """Temporarily stop autograd from computing gradients for `module`'s parameters.

    Gradients still flow *through* the module to its inputs (e.g. from Q to the actor's action),
    but no weight gradient is computed or accumulated: the actor loss needs only `dQ/da`
    (SPEED.md item 4). The original flags are restored on exit.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """`theta_target <- (1 - tau) * theta_target + tau * theta_online`, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(1.0 - tau).add_(o, alpha=tau)


def check_num_real(num_real: int, batch_size: int) -> int:
    """Validate the number of leading real rows of a mixed (real first, then model) batch."""
    if isinstance(num_real, bool) or not 0 <= int(num_real) <= batch_size:
        raise ValueError(f"num_real must be an int in [0, {batch_size}] (the leading real rows of "
                         f"the batch), got {num_real!r}")
    return int(num_real)


def scalars_to_floats(metrics: Mapping[str, Union[Tensor, float]]) -> dict[str, float]:
    """Python floats for a dict of scalar tensors and numbers (one device sync for all tensors).

    The tensors are stacked in their common (promoted) dtype, so each value is the same Python
    float that `tensor.item()` gives (float32 and float64 alike).
    """
    tensors = {k: v for k, v in metrics.items() if isinstance(v, Tensor)}
    values: list[float] = []
    if tensors:
        dtype = reduce(torch.promote_types, (t.dtype for t in tensors.values()))
        values = torch.stack([t.detach().reshape(()).to(dtype) for t in tensors.values()]).tolist()
    as_float = dict(zip(tensors, values))
    return {k: float(as_float[k] if k in as_float else v) for k, v in metrics.items()}
