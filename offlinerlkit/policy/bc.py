"""Behaviour cloning: regress the dataset action with a deterministic tanh actor."""
from __future__ import annotations

import torch
from torch import Tensor

from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.types import Batch


class BCPolicy(BasePolicy):
    """Behaviour cloning, `min E[(pi(s) - a)^2]` (OfflineRL-Kit's BC).

    Args:
        actor: the deterministic actor.
        actor_optim: its optimiser.
        device: where the networks live.
    """

    def __init__(self, actor: DeterministicActor, actor_optim: torch.optim.Optimizer, *,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device=device)
        self.actor = actor.to(self.device)
        self.actor_optim = actor_optim
        self.nets = {"actor": self.actor}
        self.optims = {"actor_optim": self.actor_optim}

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
