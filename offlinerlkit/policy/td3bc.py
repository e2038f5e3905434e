"""TD3+BC (Fujimoto & Gu, 2021) with COCOA's anchor plumbing; its COCOA variant is an extension.

TD3+BC is not one of the COCOA paper's algorithms. Its anchor + delta variant follows the same
recipe as the paper's four (anchors computed once per state batch, passed to every network).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.nets.ensemble_mlp import EnsembleMLP
from offlinerlkit.nets.optim import LRSchedule, OptimizerFactory, adam
from offlinerlkit.policy.anchors import AnchorFn, AnchorPair, Anchors, check_anchor_wiring
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy.common import polyak_update, scalars_to_floats
from offlinerlkit.types import Batch

__all__ = ["StateNormalizer", "TD3BCActor", "TD3BCPolicy"]


class StateNormalizer(nn.Module):
    """`s -> (s - mean) / std` with the dataset's statistics (TD3+BC's state normalisation).

    The statistics are buffers, so they travel with the policy's checkpoints and its final
    `policy.pth`. Shapes: mean, std `[S]`; input `[..., S]`.

    Args:
        mean: per-dimension mean of the dataset's observations.
        std: per-dimension standard deviation (the caller adds TD3+BC's `eps`).
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"mean and std must be [S] vectors of one size, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("std must be positive")
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    @classmethod
    def fit(cls, observations: np.ndarray, *, eps: float = 1e-3) -> StateNormalizer:
        """Mean and (population) std + `eps` over the rows of `observations` `(N, S)`."""
        obs = np.asarray(observations, dtype=np.float64)
        return cls(torch.as_tensor(obs.mean(0)), torch.as_tensor(obs.std(0) + eps))

    def forward(self, obs: Tensor) -> Tensor:
        return (obs - self.mean) / self.std


class TD3BCActor(nn.Module):
    """Deterministic actor `a = max_action * tanh(net(enc(s, anchor)))`.

    Shapes: obs (and anchor) `[B, S]` -> action `[B, A]`.

    Args:
        encoder: `IdentityEncoder(S)` (plain) or `AnchorDeltaEncoder(S, 0, ...)` (COCOA).
        hidden_dims: backbone widths (`Linear -> ReLU` blocks), then a linear layer to `A`.
        action_dim: action size `A`.
        max_action: half-width of the symmetric action box.
    """

    def __init__(self, encoder: nn.Module, hidden_dims: Sequence[int], action_dim: int, *,
                 max_action: float = 1.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = EnsembleMLP(encoder.output_dim, hidden_dims, action_dim)
        self.max_action = float(max_action)

    def forward(self, obs: Tensor, anchor: Optional[Tensor] = None) -> Tensor:
        return self.max_action * torch.tanh(self.net(self.encoder(obs, anchor))[0])


class TD3BCPolicy(BasePolicy):
    """TD3+BC, plain or with anchors.

    Networks: deterministic actor `pi` with a frozen target copy `pi'`; twin critics `Q_1, Q_2`
    (one `CriticEnsemble` of 2 members) with a frozen target copy `Q'`. With a `normalizer`,
    every state (the batch's `s`, `s'`, their anchors, and the observations `act_tensor` gets)
    is standardised before the networks see it; anchor functions get raw states. One update on a
    batch `(s, a, r, s', d)`:

    1. Critic step: `eps = clip(N(0, sigma^2), -c, c) * max_action`,
       `a' = clip(pi'(s') + eps, -max_action, max_action)`,
       `y = r + gamma * (1 - d) * min_j Q'_j(s', a')` (no grad),
       `L_Q = sum_j mean((Q_j(s, a) - y)^2)`; step the critics.
    2. Every `policy_freq`-th update (counted from 1): `lambda = alpha / mean|Q_1(s, pi(s))|`
       (detached), `L_pi = -lambda * mean(Q_1(s, pi(s))) + mean((pi(s) - a)^2)`; step the actor;
       then `pi' <- (1 - tau) pi' + tau pi` and `Q' <- (1 - tau) Q' + tau Q`.

    Anchors: computed once per update for `s` and `s'` (or taken from the batch's precomputed
    ones); they carry no gradient.

    Metrics: `loss/critic1`, `loss/critic2` every update; `loss/actor` and `misc/lambda` on
    actor updates.

    Args:
        actor: the deterministic actor (`TD3BCActor`).
        critics: the twin critics, a `CriticEnsemble` with `num_members=2`.
        actor_lr: the actor's learning rate (optimiser `actor_optim`).
        critic_lr: the critics' learning rate (one optimiser, `critic_optim`).
        actor_lr_schedule: the actor's learning-rate schedule, None for a constant rate (CORL's
            and OfflineRL-Kit's TD3+BC).
        optimizer: builds the optimisers (`adam`: fused Adam where available).
        normalizer: the dataset's state statistics, None to use raw states.
        actor_anchor_fn: the actor's anchor function (COCOA), None for a plain actor.
        critic_anchor_fn: the critics' anchor function, None for plain critics.
        alpha: the weight `alpha` of the Q term relative to the BC term.
        gamma: discount.
        tau: Polyak coefficient of both targets.
        policy_noise: std `sigma` of the target policy smoothing noise (times `max_action`).
        noise_clip: clip `c` of that noise (times `max_action`).
        policy_freq: actor and target updates happen every this many critic updates.
        device: where the networks live.
    """

    def __init__(
        self,
        actor: TD3BCActor,
        critics: CriticEnsemble,
        *,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        actor_lr_schedule: Optional[LRSchedule] = None,
        optimizer: OptimizerFactory = adam,
        normalizer: Optional[StateNormalizer] = None,
        actor_anchor_fn: Optional[AnchorFn] = None,
        critic_anchor_fn: Optional[AnchorFn] = None,
        alpha: float = 2.5,
        gamma: float = 0.99,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_freq: int = 2,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(device=device)
        if critics.num_members != 2:
            raise ValueError(f"TD3+BC uses twin critics: num_members=2, got {critics.num_members}")
        if policy_freq < 1:
            raise ValueError(f"policy_freq must be at least 1, got {policy_freq}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if policy_noise < 0.0 or noise_clip < 0.0:
            raise ValueError("policy_noise and noise_clip must be non-negative")
        check_anchor_wiring("actor", actor, actor_anchor_fn)
        check_anchor_wiring("critics", critics, critic_anchor_fn)
        self.actor = actor.to(self.device)
        self.critics = critics.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optim = self.add_optimizer("actor", self.actor.parameters(), actor_lr,
                                              optimizer=optimizer, schedule=actor_lr_schedule)
        self.critic_optim = self.add_optimizer("critic", self.critics.parameters(), critic_lr,
                                               optimizer=optimizer)
        self.normalizer = normalizer.to(self.device) if normalizer is not None else None
        self.anchors = Anchors(actor_anchor_fn, critic_anchor_fn)
        self.alpha, self.gamma, self.tau = float(alpha), float(gamma), float(tau)
        self.max_action = float(actor.max_action)
        self.policy_noise = float(policy_noise) * self.max_action
        self.noise_clip = float(noise_clip) * self.max_action
        self.policy_freq = int(policy_freq)
        self.total_updates = 0

        self.nets = {"actor": self.actor, "actor_target": self.actor_target,
                     "critics": self.critics, "critics_target": self.critics_target}
        if self.normalizer is not None:
            self.nets["normalizer"] = self.normalizer

    # --- state normalisation ---
    def _norm(self, x: Optional[Tensor]) -> Optional[Tensor]:
        return x if x is None or self.normalizer is None else self.normalizer(x)

    def _norm_pair(self, pair: AnchorPair) -> AnchorPair:
        actor = self._norm(pair.actor)
        return AnchorPair(actor, actor if pair.critic is pair.actor else self._norm(pair.critic))

    def act_tensor(self, obs: Tensor, *, deterministic: bool = True) -> Tensor:
        """`pi(obs)` for raw observations (the actor is deterministic)."""
        del deterministic
        with torch.no_grad():
            anchor = self.anchors.actor(obs)
            return self.actor(self._norm(obs), self._norm(anchor))

    def learn(self, batch: Batch) -> dict[str, float]:
        raw_anchor, raw_next = self.anchors.of_batch(batch)
        anchor, next_anchor = self._norm_pair(raw_anchor), self._norm_pair(raw_next)
        obs, next_obs, action = self._norm(batch.obs), self._norm(batch.next_obs), batch.action

        # --- critic step ---
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip,
                                                                         self.noise_clip)
            next_action = (self.actor_target(next_obs, next_anchor.actor) + noise).clamp(
                -self.max_action, self.max_action)
            next_q = self.critics_target(next_obs, next_action, next_anchor.critic).min(0).values
            y = batch.reward + self.gamma * (1.0 - batch.done) * next_q  # [B, 1]
        q = self.critics(obs, action, anchor.critic)  # [2, B, 1]
        critic_losses = (q - y).square().mean(dim=(1, 2))  # [2]
        self.critic_optim.zero_grad()
        critic_losses.sum().backward()
        self.critic_optim.step()
        metrics: dict[str, Tensor | float] = {"loss/critic1": critic_losses[0],
                                              "loss/critic2": critic_losses[1]}

        # --- delayed actor step and target updates ---
        self.total_updates += 1
        if self.total_updates % self.policy_freq == 0:
            pi = self.actor(obs, anchor.actor)
            q1 = self.critics(obs, pi, anchor.critic)[0]  # [B, 1]
            lmbda = self.alpha / q1.abs().mean().detach()
            actor_loss = -lmbda * q1.mean() + (pi - action).square().mean()
            self.actor_optim.zero_grad()
            actor_loss.backward()
            self.actor_optim.step()
            polyak_update(self.actor_target, self.actor, self.tau)
            polyak_update(self.critics_target, self.critics, self.tau)
            metrics.update({"loss/actor": actor_loss, "misc/lambda": lmbda})
        return scalars_to_floats(metrics)

    # --- state ---
    def extra_state(self) -> dict[str, Any]:
        return {"total_updates": self.total_updates}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.total_updates = int(state.get("total_updates", 0))
