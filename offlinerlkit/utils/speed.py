"""Opt-in accelerator options for policy training: TF32, bf16 autocast, torch.compile, CUDA graphs.

All are off by default because they change numerics (TF32 and bf16 round matrix products;
compiled kernels fuse and reorder float operations), so a default run reproduces the
reference numbers. They are fields of every policy script's configuration (`RunConfig`):

| flag | effect |
|---|---|
| `--tf32` | TF32 tensor-core matmuls and convolutions on CUDA (Ampere and newer) |
| `--bf16` | every training step runs under `torch.autocast(..., dtype=torch.bfloat16)` (CUDA, or CPUs with bf16 units); model rollouts included |
| `--compile` | `torch.compile` on every network of the policy, in place (state-dict keys unchanged) |
| `--cuda_graphs` | `--compile` in mode `reduce-overhead`: the networks' forward/backward replay CUDA graphs (CUDA only; the optimiser step stays eager) |
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Protocol

import torch

log = logging.getLogger(__name__)


class SpeedConfig(Protocol):
    """The configuration fields read here (see `RunConfig`)."""

    tf32: bool
    bf16: bool
    compile: bool
    cuda_graphs: bool


def check_speed_options(cfg: SpeedConfig, device: torch.device) -> None:
    """Refuse combinations that cannot work on `device`, naming the flag to drop."""
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(f"--cuda_graphs needs a CUDA device (this run uses {device}); "
                         "drop it, or use --compile for CPU kernels")
    if cfg.tf32 and device.type != "cuda":
        log.warning("--tf32 only affects CUDA matmuls; this run uses %s", device)


def apply_speed_options(policy: Any, cfg: SpeedConfig, device: torch.device) -> None:
    """Set TF32 and compile the policy's networks (`policy.nets`) as `cfg` asks."""
    check_speed_options(cfg, device)
    if cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.compile or cfg.cuda_graphs:
        mode = "reduce-overhead" if cfg.cuda_graphs else None
        for name, net in policy.nets.items():
            net.compile(mode=mode)
            log.info("compiled network %s (mode %s)", name, mode or "default")


def step_context(cfg: SpeedConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The context every training step runs in: bf16 autocast when asked, else nothing."""
    if cfg.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
