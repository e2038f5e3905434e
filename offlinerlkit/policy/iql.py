"""Implicit Q-Learning (Kostrikov et al., 2022) with COCOA's anchor plumbing (spec 7.3)."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor

from offlinerlkit.modules.actor import GaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.nets.optim import LRSchedule, OptimizerFactory, adam
from offlinerlkit.policy.anchors import AnchorFn, Anchors, check_anchor_wiring
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy.common import polyak_update, scalars_to_floats
from offlinerlkit.types import Batch


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """`mean(|tau_e - 1(u < 0)| * u^2)` for `u = diff` (IQL's value loss; any shape -> scalar).

    The weight is `tau_e` where `u >= 0` and `1 - tau_e` where `u < 0` (at `u = 0` the term is 0
    either way).
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def advantage_weights(advantage: Tensor, temperature: float, max_weight: float) -> Tensor:
    """`min(exp(beta * A), max_weight)`: IQL's advantage-weighted-regression weights (same shape)."""
    return torch.exp(temperature * advantage).clamp(max=max_weight)


class IQLPolicy(BasePolicy):
    """Implicit Q-Learning (IQL) as in OfflineRL-Kit / COCOA (spec 7.3), plain or with anchors.

    Networks: actor `pi(a|s)` (`GaussianActor`), twin critics `Q_1, Q_2` held as one
    `CriticEnsemble` with 2 members plus a frozen target copy `Q'` (Polyak `tau`), and a value
    network `V` (a 1-member `CriticEnsemble` called with `action=None`; no target). One update on
    a batch `(s, a, r, s', d)`, in this order:

    1. V step: `q = min_j Q'_j(s, a)` (no grad), `u = q - V(s)`,
       `L_V = mean(|tau_e - 1(u < 0)| * u^2)`; step V.
    2. Actor loss with the updated V: `w = min(exp(beta * (q - V(s))), 100)` (no grad),
       `L_pi = -mean(w * log pi(a|s))`; not stepped yet.
    3. Q step: `y = r + gamma * (1 - d) * V(s')` (no grad), `L_Qj = mean((Q_j(s, a) - y)^2)`;
       step the critics.
    4. Step the actor with `L_pi`; then `Q' <- (1 - tau) Q' + tau Q` (the Q targets only).

    Computing `L_pi` before the Q step (COCOA's order) gives the same result as upstream's order
    (Q step first), because neither `Q'` nor `V` changes in between.

    Both critics are trained by one optimiser over the 2-member ensemble, on
    `L_Q1 + L_Q2`. This equals the original's two separate per-critic Adams: each member's
    parameters get the gradient of its own loss only (the losses are member-separable), and Adam
    (with or without weight decay) updates every parameter element-wise from its own gradient
    history, so one Adam over both members takes exactly the two separate Adams' steps. (This
    would not hold for an optimiser or a gradient clipping that couples parameters, e.g.
    clipping by the global norm.)

    Anchors (COCOA, spec 5 and 7.5): with anchor functions, the anchors of `s` and of `s'` are
    computed once per update and passed to the actor, both Q critics, their targets and V; none
    of them computes its own. With one function shared by the actor and the critics (the usual
    case) that is one call on `s` and `s'` stacked, or none when the batch carries precomputed
    anchors (`Batch.obs_anchor`, the trainer's `anchor_cache`); with two different functions the
    actor's runs on `s` and the critics' on `s` and `s'` stacked. Anchors carry no gradient.
    `act_tensor` computes the actor anchors of its input. A plain IQL has `IdentityEncoder`
    networks and no anchor functions.

    Optimisers and schedule (the `BasePolicy` convention): built here with `optimizer` from the
    learning rates, registered as `actor_optim`, `critic_q_optim`, `critic_v_optim`. The
    original anneals the actor lr with a cosine over the epochs (`--lr_decay`): the script
    passes `actor_lr_schedule=CosineSchedule(epochs)`; the scheduler is registered as
    `actor_scheduler` in `schedulers` (so it is checkpointed) and the trainer steps it once per
    epoch (`step_schedulers`).

    Init (spec 6.6): the builders create every linear layer of the actor, Q and V with
    `init="orthogonal"` (gain sqrt(2), zero bias); the policy does not re-initialise.

    Shapes: batch fields `obs, next_obs [B, S]`, `action [B, A]`, `reward, done [B, 1]`;
    `Q(s, a)` `[2, B, 1]`, `V(s)` `[1, B, 1]`; anchors `[B, S]` or None.

    Args:
        actor: the Gaussian actor (IQL head: `tanh` mean, state-independent log std).
        critic_q: the twin Q critics, a `CriticEnsemble` with `num_members=2`.
        critic_v: the value network, a `CriticEnsemble` with `num_members=1` and no action input.
        actor_lr: the actor's learning rate.
        critic_q_lr: the learning rate of both Q critics (one optimiser).
        critic_v_lr: V's learning rate.
        actor_lr_schedule: the actor's learning-rate schedule (stepped per epoch by the
            trainer), None for a constant rate.
        optimizer: builds the three optimisers (`adam`: fused Adam where available).
        actor_anchor_fn: the actor's anchor function (COCOA), None for a plain actor.
        critic_anchor_fn: the anchor function of the Q critics, their targets and V, None for
            plain critics. Pass the same object as `actor_anchor_fn` to compute anchors once.
        gamma: discount `gamma`.
        tau: Polyak coefficient of the Q targets.
        expectile: expectile `tau_e` of the value loss, in (0, 1).
        temperature: inverse temperature `beta` of the advantage weights.
        max_weight: upper clamp of the advantage weights.
        device: where the networks live.
    """

    def __init__(
        self,
        actor: GaussianActor,
        critic_q: CriticEnsemble,
        critic_v: CriticEnsemble,
        *,
        actor_lr: float = 3e-4,
        critic_q_lr: float = 3e-4,
        critic_v_lr: float = 3e-4,
        actor_lr_schedule: Optional[LRSchedule] = None,
        optimizer: OptimizerFactory = adam,
        actor_anchor_fn: Optional[AnchorFn] = None,
        critic_anchor_fn: Optional[AnchorFn] = None,
        gamma: float = 0.99,
        tau: float = 0.005,
        expectile: float = 0.7,
        temperature: float = 3.0,
        max_weight: float = 100.0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(device=device)
        if critic_q.num_members != 2:
            raise ValueError(f"IQL uses twin Q critics: critic_q needs num_members=2, got "
                             f"{critic_q.num_members}")
        if critic_v.num_members != 1:
            raise ValueError(f"the IQL value network needs num_members=1, got {critic_v.num_members}")
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if temperature < 0.0 or max_weight <= 0.0:
            raise ValueError(f"need temperature >= 0 and max_weight > 0, got {temperature} and "
                             f"{max_weight}")
        check_anchor_wiring("actor", actor, actor_anchor_fn)
        check_anchor_wiring("Q critics", critic_q, critic_anchor_fn)
        check_anchor_wiring("value network", critic_v, critic_anchor_fn)

        self.actor = actor.to(self.device)
        self.critic_q = critic_q.to(self.device)
        self.critic_v = critic_v.to(self.device)
        self.critic_q_target = copy.deepcopy(self.critic_q).requires_grad_(False)
        self.actor_optim = self.add_optimizer("actor", self.actor.parameters(), actor_lr,
                                              optimizer=optimizer, schedule=actor_lr_schedule)
        self.critic_q_optim = self.add_optimizer("critic_q", self.critic_q.parameters(),
                                                 critic_q_lr, optimizer=optimizer)
        self.critic_v_optim = self.add_optimizer("critic_v", self.critic_v.parameters(),
                                                 critic_v_lr, optimizer=optimizer)
        self.anchors = Anchors(actor_anchor_fn, critic_anchor_fn)
        self.gamma, self.tau = float(gamma), float(tau)
        self.expectile, self.temperature = float(expectile), float(temperature)
        self.max_weight = float(max_weight)
        self.max_action = float(actor.max_action)

        self.nets = {"actor": self.actor, "critic_q": self.critic_q,
                     "critic_q_target": self.critic_q_target, "critic_v": self.critic_v}

    def act_tensor(self, obs: Tensor, *, deterministic: bool,
                   generator: Optional[torch.Generator] = None) -> Tensor:
        """The mean (deterministic) or a sample of `pi(.|obs)`, clipped to the action box."""
        with torch.no_grad():
            dist = self.actor(obs, self.anchors.actor(obs))
            action = dist.mode() if deterministic else dist.sample(generator)
            return action.clamp(-self.max_action, self.max_action)

    def learn(self, batch: Batch) -> dict[str, float]:
        obs, action, next_obs = batch.obs, batch.action, batch.next_obs
        # anchors of s (actor and critics) and of s' (V(s') only), in one call
        anchor, next_pair = self.anchors.of_batch(batch, next_actor=False)
        next_anchor = next_pair.critic

        # --- V step: expectile regression of V(s) on min_j Q'_j(s, a) ---
        with torch.no_grad():
            q_target = self.critic_q_target(obs, action, anchor.critic).min(0).values  # [B, 1]
        v = self.critic_v(obs, None, anchor.critic)[0]  # [B, 1]
        v_loss = expectile_loss(q_target - v, self.expectile)
        self.critic_v_optim.zero_grad()
        v_loss.backward()
        self.critic_v_optim.step()

        # --- actor loss (advantage-weighted regression), with the updated V ---
        with torch.no_grad():
            v = self.critic_v(obs, None, anchor.critic)[0]  # [B, 1]
            weight = advantage_weights(q_target - v, self.temperature, self.max_weight)  # [B, 1]
        log_prob = self.actor(obs, anchor.actor).log_prob(action)  # [B, 1]
        actor_loss = -(weight * log_prob).mean()

        # --- Q step: regress both critics on r + gamma (1 - d) V(s') ---
        q = self.critic_q(obs, action, anchor.critic)  # [2, B, 1]
        with torch.no_grad():
            next_v = self.critic_v(next_obs, None, next_anchor)[0]  # [B, 1]
            y = batch.reward + self.gamma * (1.0 - batch.done) * next_v  # [B, 1]
        q_losses = (q - y).square().mean(dim=(1, 2))  # [2]: one MSE per critic
        self.critic_q_optim.zero_grad()
        q_losses.sum().backward()
        self.critic_q_optim.step()

        # --- actor step, then Polyak averaging of the Q targets ---
        self.actor_optim.zero_grad()
        actor_loss.backward()
        self.actor_optim.step()
        polyak_update(self.critic_q_target, self.critic_q, self.tau)

        return scalars_to_floats({"loss/actor": actor_loss, "loss/q1": q_losses[0],
                                  "loss/q2": q_losses[1], "loss/v": v_loss})
