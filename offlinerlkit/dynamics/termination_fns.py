"""Termination functions of the D4RL MuJoCo robots, for transitions predicted by learned dynamics.

Each function maps a batch `(obs [B, S], action [B, A], next_obs [B, S])` to a bool `done [B, 1]`
computed from `next_obs` alone (COCOA spec 3.10), with tensor operations only, on the inputs'
device. Leading dimensions other than `B` are kept (`[..., S] -> [..., 1]`).

They reproduce the simulators' own healthy checks (gymnasium `-v4`, same as D4RL's `-v2`) on the
observation: height is `next_obs[..., 0]` and the torso angle `next_obs[..., 1]`. One check cannot
be seen from an observation: Hopper's simulator also requires `|qvel| < 100`, but observations
clip velocities to ±10.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from offlinerlkit.utils.tasks import TaskError, robot_of

#: `fn(obs [B, S], action [B, A], next_obs [B, S]) -> done`, a bool tensor `[B, 1]`.
TerminationFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _all_within(x: Tensor, low: float, high: float) -> Tensor:
    """`[..., S] -> [..., 1]`: every component strictly inside `(low, high)` (NaN is not)."""
    return ((x > low) & (x < high)).all(dim=-1, keepdim=True)


def halfcheetah_termination_fn(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    """HalfCheetah: done iff some component of `next_obs` is outside `(-100, 100)` (or NaN).

    The simulator itself never terminates; this only flags diverged model predictions.
    """
    return ~_all_within(next_obs, -100.0, 100.0)


def hopper_termination_fn(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper: alive iff `next_obs` is finite, `|next_obs[1:]| < 100`, height > 0.7 and
    `|angle| < 0.2`.

    Upstream OfflineRL-Kit took `abs` of a boolean here; this uses the angle's absolute value, as
    the simulator does.
    """
    height, angle = next_obs[..., 0:1], next_obs[..., 1:2]  # [..., 1] each
    alive = (
        torch.isfinite(next_obs).all(dim=-1, keepdim=True)
        & (next_obs[..., 1:].abs() < 100.0).all(dim=-1, keepdim=True)
        & (height > 0.7)
        & (angle.abs() < 0.2)
    )
    return ~alive


def walker2d_termination_fn(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    """Walker2d: alive iff `next_obs` lies in `(-100, 100)`, `0.8 < height < 2.0` and
    `-1 < angle < 1`."""
    height, angle = next_obs[..., 0:1], next_obs[..., 1:2]  # [..., 1] each
    alive = (
        _all_within(next_obs, -100.0, 100.0)
        & (height > 0.8)
        & (height < 2.0)
        & (angle > -1.0)
        & (angle < 1.0)
    )
    return ~alive


def never_terminate(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    """Never done: all-False `[..., 1]` (the reverse dynamics' rule, COCOA spec 3.9)."""
    return torch.zeros((*next_obs.shape[:-1], 1), dtype=torch.bool, device=next_obs.device)


_TERMINATION_FNS: dict[str, TerminationFn] = {
    "halfcheetah": halfcheetah_termination_fn,
    "hopper": hopper_termination_fn,
    "walker2d": walker2d_termination_fn,
}


def get_termination_fn(task: str) -> TerminationFn:
    """The termination function of a task's robot.

    Args:
        task: a D4RL task name (`hopper-medium-v2`) or a robot name (`hopper`).

    Raises:
        TaskError: the task's robot has no termination function here; the message lists the
            supported robots.
    """
    try:
        robot = robot_of(task)
    except (TaskError, AttributeError):
        robot = None
    if robot not in _TERMINATION_FNS:
        raise TaskError(
            f"no termination function for task {task!r}: supported robots are "
            f"{sorted(_TERMINATION_FNS)} (task names like 'hopper-medium-v2')"
        )
    return _TERMINATION_FNS[robot]
