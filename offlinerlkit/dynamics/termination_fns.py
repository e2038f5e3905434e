"""Termination functions of the D4RL MuJoCo robots, for transitions predicted by learned dynamics.

Each function maps a batch `(obs [B, S], action [B, A], next_obs [B, S])` to a bool `done [B, 1]`
computed from `next_obs` alone (COCOA spec 3.10), with tensor operations only, on the inputs'
device. Leading dimensions other than `B` are kept (`[..., S] -> [..., 1]`).

They reproduce the simulators' own healthy checks (gymnasium `-v4`, same as D4RL's `-v2`) on the
observation: height is `next_obs[..., 0]` and the torso angle `next_obs[..., 1]`. One check cannot
be seen from an observation: Hopper's simulator also requires `|qvel| < 100`, but observations
clip velocities to ±10. Gymnasium's `-v5` classes (Minari's datasets) make the same checks with
the same defaults; `get_termination_fn` of a task checks its simulator's version and keyword
arguments against `CHECKED_SIMULATORS`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from offlinerlkit.utils.tasks import TaskError, TaskInfo, parse_task, robot_of

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


#: Per robot: the gymnasium environment name, the versions whose termination rule the function
#: above reproduces (checked against gymnasium's source), and the keyword arguments that rule
#: depends on with the defaults it assumes.
CHECKED_SIMULATORS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "halfcheetah": ("HalfCheetah", ("v4", "v5"),
                    {"exclude_current_positions_from_observation": True}),
    "hopper": ("Hopper", ("v4", "v5"), {
        "terminate_when_unhealthy": True, "healthy_state_range": (-100.0, 100.0),
        "healthy_z_range": (0.7, math.inf), "healthy_angle_range": (-0.2, 0.2),
        "exclude_current_positions_from_observation": True}),
    "walker2d": ("Walker2d", ("v4", "v5"), {
        "terminate_when_unhealthy": True, "healthy_z_range": (0.8, 2.0),
        "healthy_angle_range": (-1.0, 1.0), "exclude_current_positions_from_observation": True}),
}


def _same_setting(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        try:
            return tuple(float(v) for v in value) == default
        except (TypeError, ValueError):
            return False
    return value == default


def check_simulator(task: TaskInfo) -> None:
    """Raise `TaskError` unless the robot's termination function reproduces `task`'s simulator.

    The simulator (`task.gym_id`) must be one of the robot's `CHECKED_SIMULATORS` versions, and
    its keyword arguments must leave the healthy checks at their defaults.
    """
    name, versions, defaults = CHECKED_SIMULATORS[task.robot]
    checked = [f"{name}-{v}" for v in versions]
    if task.gym_id not in checked:
        raise TaskError(f"the {task.robot} termination function is checked against {checked}, "
                        f"not {task.gym_id} (task {task.name}); model rollouts cannot use it")
    kwargs: Mapping[str, Any] = task.env_kwargs
    changed = {k: kwargs[k] for k in defaults if k in kwargs and not _same_setting(kwargs[k], defaults[k])}
    if changed:
        raise TaskError(f"{task.name} records {task.gym_id} with {changed}; the {task.robot} "
                        f"termination function reproduces only the defaults {defaults}")


def get_termination_fn(task: str | TaskInfo) -> TerminationFn:
    """The termination function of a task's robot, checked against the task's simulator.

    Args:
        task: a task name (`hopper-medium-v2`, `minari:mujoco/hopper/medium-v0`), its
            `TaskInfo`, or a robot name (`hopper`). A task's simulator version and keyword
            arguments are checked (`check_simulator`).

    Raises:
        TaskError: the task's robot has no termination function here (the message lists the
            supported robots), or its simulator is not one the function reproduces.
    """
    if isinstance(task, str) and task.strip().lower().startswith("minari:"):
        task = parse_task(task)
    if isinstance(task, TaskInfo):
        check_simulator(task)
        return _TERMINATION_FNS[task.robot]
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
