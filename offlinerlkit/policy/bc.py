"""Behaviour cloning: regress the dataset action with a deterministic tanh actor."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.nets.optim import LRSchedule, OptimizerFactory, adam
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.types import Batch


class BCPolicy(BasePolicy):
    """Behaviour cloning, `min E[(pi(s) - a)^2]` (OfflineRL-Kit's BC).

    Metrics: `loss/actor`.

    Args:
        actor: the deterministic actor.
        actor_lr: its learning rate (optimiser `actor_optim`).
        actor_lr_schedule: its learning-rate schedule, None for a constant rate.
        optimizer: builds the optimiser (`adam`: fused Adam where available).
        device: where the networks live.
    """

    def __init__(self, actor: DeterministicActor, *, actor_lr: float = 1e-4,
                 actor_lr_schedule: Optional[LRSchedule] = None,
                 optimizer: OptimizerFactory = adam,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device=device)
        self.actor = actor.to(self.device)
        self.actor_optim = self.add_optimizer("actor", self.actor.parameters(), actor_lr,
                                              optimizer=optimizer, schedule=actor_lr_schedule)
        self.nets = {"actor": self.actor}

    def act_tensor(self, obs: Tensor, *, deterministic: bool = True) -> Tensor:
        del deterministic  # the BC actor is deterministic
        with torch.no_grad():
            return self.actor(obs)

    def learn(self, batch: Batch) -> dict[str, float]:
        loss = (self.actor(batch.obs) - batch.action).pow(2).mean()
        self.actor_optim.zero_grad()
        loss.backward()
        self.actor_optim.step()
        return {"loss/actor": loss.item()}
