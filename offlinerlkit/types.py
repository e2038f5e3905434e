"""Small shared value types: transition batches and environment specs.

`Batch` is the one container that flows from the replay buffer into `learn()`. Field names follow
the paper's vocabulary (`obs`, `action`, `reward`, `next_obs`, `done`); the batch dimension is
implied by the leading axis.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

#: Keys of the transition dict returned by the dataset loaders (D4RL `qlearning_dataset` names).
TRANSITION_KEYS = ("observations", "actions", "next_observations", "rewards", "terminals")


@dataclass(frozen=True)
class Batch:
    """A minibatch of transitions, as float32 tensors on one device.

    Shapes: obs, next_obs `[B, obs_dim]`; action `[B, action_dim]`; reward, done `[B, 1]`
    (done is 0.0 / 1.0).
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    done: Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def device(self) -> torch.device:
        return self.obs.device

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every field moved to `device`."""
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        """Concatenate batches along the batch axis, in order (e.g. real rows first, then model rows)."""
        return Batch(
            **{f.name: torch.cat([getattr(b, f.name) for b in batches], 0) for f in fields(Batch)}
        )

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
