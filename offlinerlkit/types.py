"""Small shared value types: transition batches and environment specs.

`Batch` is the one container that flows from the replay buffer into `learn()`. Field names follow
the paper's vocabulary (`obs`, `action`, `reward`, `next_obs`, `done`); the batch dimension is
implied by the leading axis.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional, Protocol

import numpy as np
import torch
from torch import Tensor


class DataclassInstance(Protocol):
    """Any dataclass instance (a config): what functions generic over configs accept."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


#: COCOA's anchor function: a frozen, deterministic map from states `[N, S]` to their anchors
#: `[N, S]` (built in `anchor/anchor_fn.py`, called by the policies through `policy/anchors.py`).
AnchorFn = Callable[[Tensor], Tensor]

#: Keys of the transition dict returned by the dataset loaders (D4RL `qlearning_dataset` names).
TRANSITION_KEYS = ("observations", "actions", "next_observations", "rewards", "terminals")


@dataclass(frozen=True)
class Batch:
    """A minibatch of transitions, as float32 tensors on one device.

    Shapes: obs, next_obs `[B, obs_dim]`; action `[B, action_dim]`; reward, done `[B, 1]`
    (done is 0.0 / 1.0). `obs_anchor`, `next_obs_anchor` `[B, obs_dim]`: COCOA's anchors of
    `obs` and `next_obs` when the buffer holds them precomputed (see
    `ReplayBuffer.set_anchors`), else None (the policy computes them).
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    done: Tensor
    obs_anchor: Optional[Tensor] = None
    next_obs_anchor: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def device(self) -> torch.device:
        return self.obs.device

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every field moved to `device`."""
        return Batch(**{f.name: _apply(getattr(self, f.name), lambda t: t.to(device))
                        for f in fields(self)})

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        """Concatenate batches along the batch axis, in order (e.g. real rows first, then model rows).

        A field that some batch lacks (a precomputed anchor) is None in the result.
        """
        out: dict[str, Optional[Tensor]] = {}
        for f in fields(Batch):
            parts = [getattr(b, f.name) for b in batches]
            out[f.name] = None if any(p is None for p in parts) else torch.cat(parts, 0)
        return Batch(**out)  # type: ignore[arg-type]

    @staticmethod
    def from_numpy(
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        device: torch.device | str = "cpu",
    ) -> Batch:
        """Build a batch from numpy arrays; 1-D rewards/dones become `[B, 1]` columns."""

        def as_tensor(x: np.ndarray, column: bool) -> Tensor:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
            return t.reshape(-1, 1) if column else t

        return Batch(
            obs=as_tensor(obs, False),
            action=as_tensor(action, False),
            reward=as_tensor(reward, True),
            next_obs=as_tensor(next_obs, False),
            done=as_tensor(done, True),
        )

    @staticmethod
    def from_transitions(data: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
        """Build a batch from a D4RL-style transition dict (see `TRANSITION_KEYS`)."""
        return Batch.from_numpy(
            data["observations"],
            data["actions"],
            data["rewards"],
            data["next_observations"],
            data["terminals"],
            device=device,
        )


def _apply(x: Optional[Tensor], fn: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
    return None if x is None else fn(x)


@dataclass(frozen=True)
class EnvSpec:
    """Sizes derived from the task or the data; passed explicitly, never written into configs."""

    obs_dim: int
    action_dim: int
    max_action: float = 1.0

    @staticmethod
    def from_transitions(data: Mapping[str, np.ndarray], max_action: float = 1.0) -> EnvSpec:
        """Read the observation and action sizes off a transition dict."""
        return EnvSpec(
            obs_dim=int(data["observations"].shape[1]),
            action_dim=int(data["actions"].shape[1]),
            max_action=float(max_action),
        )
