"""Soft actor-critic (spec §7.1): the core shared by MOPO, CQL and MOBILE."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor

from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.dist import TanhNormal
from offlinerlkit.nets.optim import LRSchedule, OptimizerFactory, adam
from offlinerlkit.policy.anchors import (
    AnchorFn,
    AnchorPair,
    Anchors,
    check_anchor_wiring,
    repeat_rows,
)
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy.common import no_param_grad, polyak_update, scalars_to_floats
from offlinerlkit.types import Batch

__all__ = ["SAC_DEFAULTS", "SACHyperparams", "SACPolicy", "repeat_dist"]


@dataclass(frozen=True)
class SACHyperparams:
    """The SAC core's hyper-parameters, declared once for SAC, MOPO, CQL and MOBILE.

    Defaults are the original `run_mopo.py`'s (spec 7.1).

    Args:
        actor_lr: actor learning rate.
        critic_lr: critic learning rate (one optimiser over the critic ensemble).
        alpha_lr: `log_alpha` learning rate (auto-alpha only).
        gamma: discount.
        tau: Polyak coefficient of the target critics.
        alpha: fixed entropy coefficient (used only when `auto_alpha` is False).
        auto_alpha: learn `log_alpha` (the original's default).
        target_entropy: entropy target; None means `-A`.
        actor_lr_schedule: the actor's learning-rate schedule (e.g. `CosineSchedule(epochs)`),
            None for a constant rate.
        optimizer: builds every optimiser of the policy (`adam`: fused Adam where available).
    """

    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4
    gamma: float = 0.99
    tau: float = 0.005
    alpha: float = 0.2
    auto_alpha: bool = True
    target_entropy: Optional[float] = None
    actor_lr_schedule: Optional[LRSchedule] = None
    optimizer: OptimizerFactory = adam

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")


#: The original's SAC hyper-parameters (the constructors' default).
SAC_DEFAULTS = SACHyperparams()


class SACPolicy(BasePolicy):
    """Soft actor-critic with a twin-critic ensemble and automatic entropy tuning (spec §7.1).

    One update on a batch `(s, a, r, s', d)` of `B` rows, in this order:

    1. target (no grad): `a' ~ pi(.|s')`,
       `y = r + gamma (1 - d) (min_j Q'_j(s', a') - alpha log pi(a'|s'))`;
    2. critic step on `sum_j mean_B (Q_j(s, a) - y)^2` (one Adam over the ensemble);
    3. actor step on `mean_B (alpha log pi(a~|s) - min_j Q_j(s, a~))`, `a~ ~ pi(.|s)`, with the
       critics' weights excluded from autograd (only `dQ/da` is needed);
    4. auto-alpha step on `-mean_B log_alpha (log pi(a~|s) + H_target)`, `H_target = -A` by
       default, then `alpha = clamp(exp(log_alpha), 0, 1)`;
    5. Polyak update of the target critics, `tau`.

    **One optimiser for both critics.** The original has an Adam per critic. The critic loss is
    member-separable (`L = sum_j L_j(theta_j)`, so `dL/dtheta_j = dL_j/dtheta_j`) and Adam's
    update is element-wise, so one Adam over the stacked ensemble parameters produces exactly the
    per-critic updates (tested in `tests/test_policy_sac.py`).

    **Alpha.** `alpha` is always derived from the current `log_alpha` (`log_alpha` starts at 0, so
    `alpha = 1` at the first step, as in the original). SAC, MOPO and MOBILE clamp it to
    `[0, 1]`; CQL does not. With `auto_alpha=False` the fixed `alpha` is used and nothing is
    learned.

    **Anchors (COCOA).** `actor_anchor_fn` / `critic_anchor_fn` map states to anchors; they are
    evaluated once per update on `s` and `s'` stacked (never per network call; not at all when the
    batch carries precomputed anchors, `Batch.obs_anchor`) and passed to the networks. None means
    a plain network (`IdentityEncoder`).

    Shapes: obs `[B, S]`, action `[B, A]`, reward and done `[B, 1]`; the critics return
    `[2, B, 1]`.

    Metrics: `loss/critic1`, `loss/critic2`, `loss/actor`, `train/actor/target_Q` (mean of
    `min_j Q_j(s, a~)` in the actor loss), and with auto-alpha `loss/alpha`, `alpha`.

    State: `nets` = actor, critics, critics_target; `optims` = actor_optim, critic_optim (and
    alpha_optim); `extra_state()` = log_alpha (and the generator's state when one is given).

    Optimisers and schedule (the `BasePolicy` convention): built here from `hp`, registered as
    `actor_optim`, `critic_optim`, `alpha_optim` and, with `hp.actor_lr_schedule`, scheduler
    `actor_scheduler` (checkpoints written before this convention call it `actor`; they load).

    Args:
        actor: the tanh-Gaussian actor.
        critics: the critic ensemble (2 members); the target copy is made here.
        hp: the SAC core's hyper-parameters (learning rates, discount, Polyak rate, entropy
            weight, actor schedule, optimiser factory).
        actor_anchor_fn: the actor's anchor function (COCOA), None for a plain actor.
        critic_anchor_fn: the critics' anchor function (COCOA), None for plain critics.
        generator: optional torch generator for every random draw of `learn` and `act_tensor`
            (on the policy's device); None uses torch's global generator.
        device: where the networks live.
    """

    #: Clamp `alpha = exp(log_alpha)` to [0, 1] (SAC, MOPO, MOBILE); CQL turns it off.
    clamp_alpha: bool = True
    #: Required ensemble size (None: any); the SAC family logs `loss/critic1`, `loss/critic2`.
    required_num_critics: Optional[int] = 2
    #: MOPO's and MOBILE's scripts registered the actor's scheduler as `actor` before
    renamed_state = {"schedulers": {"actor": "actor_scheduler"}}

    def __init__(
        self,
        actor: TanhGaussianActor,
        critics: CriticEnsemble,
        *,
        hp: SACHyperparams = SAC_DEFAULTS,
        actor_anchor_fn: Optional[AnchorFn] = None,
        critic_anchor_fn: Optional[AnchorFn] = None,
        generator: Optional[torch.Generator] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> None:
        super().__init__(device=device)
        num = self.required_num_critics
        if num is not None and critics.num_members != num:
            raise ValueError(f"{type(self).__name__} needs a critic ensemble of {num} members, got "
                             f"{critics.num_members}")
        check_anchor_wiring("actor", actor, actor_anchor_fn)
        check_anchor_wiring("critics", critics, critic_anchor_fn)
        self.anchors = Anchors(actor_anchor_fn, critic_anchor_fn)
        self.actor = actor.to(self.device)
        self.critics = critics.to(self.device)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optim = self.add_optimizer("actor", self.actor.parameters(), hp.actor_lr,
                                              optimizer=hp.optimizer,
                                              schedule=hp.actor_lr_schedule)
        self.critic_optim = self.add_optimizer("critic", self.critics.parameters(), hp.critic_lr,
                                               optimizer=hp.optimizer)
        self.hp = hp
        self.gamma, self.tau = float(hp.gamma), float(hp.tau)
        self.action_dim = int(actor.mu.output_dim)
        self.generator = generator
        self.nets = {"actor": self.actor, "critics": self.critics,
                     "critics_target": self.critics_target}

        self.auto_alpha = bool(hp.auto_alpha)
        self._fixed_alpha = float(hp.alpha)
        self.target_entropy = float(-self.action_dim if hp.target_entropy is None
                                    else hp.target_entropy)
        self.log_alpha: Optional[Tensor] = None
        if self.auto_alpha:
            self.log_alpha = torch.zeros(1, device=self.device, requires_grad=True)
            self.alpha_optim = self.add_optimizer("alpha", [self.log_alpha], hp.alpha_lr,
                                                  optimizer=hp.optimizer)

    # --- acting ---
    @property
    def alpha(self) -> Union[Tensor, float]:
        """The entropy coefficient in use now (a detached `[1]` tensor with auto-alpha)."""
        if self.log_alpha is None:
            return self._fixed_alpha
        alpha = self.log_alpha.detach().exp()
        return alpha.clamp(0.0, 1.0) if self.clamp_alpha else alpha

    def act_tensor(self, obs: Tensor, *, deterministic: bool = True,
                   anchor: Optional[Tensor] = None) -> Tensor:
        """Actions `[B, A]`: `tanh(mu)` when deterministic, else a sample.

        `anchor`: the actor's anchors of `obs` when already known (model rollouts whose rows
        carry them); None computes them.
        """
        if anchor is None or self.anchors.actor_fn is None:
            anchor = self.anchors.actor(obs)
        with torch.no_grad():
            dist = self.actor(obs, anchor)
            return dist.mode() if deterministic else dist.rsample(self.generator)[0]

    # --- the update ---
    def learn(self, batch: Batch) -> dict[str, float]:
        anchors, next_anchors = self.anchors.of_batch(batch)

        # --- target (no grad) ---
        with torch.no_grad():
            next_q = self._next_q(batch.next_obs, next_anchors, deterministic_backup=False)
            target_q = batch.reward + self.gamma * (1.0 - batch.done) * next_q  # [B, 1]

        # --- critic step ---
        q = self.critics(batch.obs, batch.action, anchors.critic)  # [2, B, 1]
        critic_losses = (q - target_q).pow(2).mean(dim=(1, 2))  # [2]
        self.critic_optim.zero_grad()
        critic_losses.sum().backward()
        self.critic_optim.step()

        # --- actor and alpha steps ---
        actor_loss, log_prob, q_pi = self._actor_step(batch.obs, anchors)
        metrics: dict[str, Union[Tensor, float]] = {
            "loss/critic1": critic_losses[0], "loss/critic2": critic_losses[1],
            "train/actor/target_Q": q_pi.mean(), "loss/actor": actor_loss,
        }
        metrics.update(self._alpha_step(log_prob))

        # --- target critics ---
        polyak_update(self.critics_target, self.critics, self.tau)
        return scalars_to_floats(metrics)

    # --- pieces shared by the SAC family ---
    def _sample(self, dist: TanhNormal) -> tuple[Tensor, Tensor]:
        return dist.rsample(self.generator)

    def _next_q(self, next_obs: Tensor, next_anchors: AnchorPair, *, deterministic_backup: bool,
                max_q_backup_repeats: int = 0, next_dist: Optional[TanhNormal] = None) -> Tensor:
        """`min_j Q'_j(s', a')` with `a' ~ pi(.|s')` (minus `alpha log pi` unless deterministic).

        With `max_q_backup_repeats = R > 0`: `R` actions per `s'`, a per-critic max over them, then
        the min over critics (no entropy term). The actor trunk runs once per state; only the
        Gaussian sample is drawn per repeat. Call without grad. Returns `[B, 1]`.
        """
        if next_dist is None:
            next_dist = self.actor(next_obs, next_anchors.actor)
        if max_q_backup_repeats > 0:
            r = int(max_q_backup_repeats)
            action, _ = self._sample(repeat_dist(next_dist, r))  # [B*R, A]
            q = self.critics_target(next_obs.repeat_interleave(r, 0), action,
                                    repeat_rows(next_anchors.critic, r))  # [E, B*R, 1]
            q = q.view(q.shape[0], -1, r).amax(2)  # [E, B]: max over the repeats of each state
            return q.amin(0).unsqueeze(-1)  # [B, 1]
        action, log_prob = self._sample(next_dist)  # [B, A], [B, 1]
        next_q = self.critics_target(next_obs, action, next_anchors.critic).amin(0)  # [B, 1]
        if not deterministic_backup:
            next_q = next_q - self.alpha * log_prob
        return next_q

    def _actor_objective(self, log_prob: Tensor, q_pi: Tensor, alpha: Union[Tensor, float]) -> Tensor:
        """SAC/MOPO/MOBILE form: `-mean(min Q) + alpha * mean(log pi)`."""
        return -q_pi.mean() + alpha * log_prob.mean()

    def _actor_step(self, obs: Tensor, anchors: AnchorPair) -> tuple[Tensor, Tensor, Tensor]:
        """One actor step; returns `(loss, log_prob [B, 1], min_j Q_j(s, a~) [B, 1])`, detached."""
        action, log_prob = self._sample(self.actor(obs, anchors.actor))  # [B, A], [B, 1]
        with no_param_grad(self.critics):
            q_pi = self.critics(obs, action, anchors.critic).amin(0)  # [B, 1]
        loss = self._actor_objective(log_prob, q_pi, self.alpha)
        self.actor_optim.zero_grad()
        loss.backward()
        self.actor_optim.step()
        return loss.detach(), log_prob.detach(), q_pi.detach()

    def _alpha_step(self, log_prob: Tensor) -> dict[str, Tensor]:
        """Auto-alpha: one step on `-mean(log_alpha * (log pi + H_target))`; metrics (or none)."""
        if self.log_alpha is None:
            return {}
        loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optim.zero_grad()
        loss.backward()
        self.alpha_optim.step()
        alpha = self.alpha
        assert isinstance(alpha, Tensor)
        return {"loss/alpha": loss.detach(), "alpha": alpha}

    # --- state ---
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.log_alpha is not None:
            state["log_alpha"] = self.log_alpha.detach().clone()
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if self.log_alpha is not None:
            if "log_alpha" not in state:
                raise KeyError("checkpoint lacks log_alpha; it was written without auto-alpha")
            with torch.no_grad():
                self.log_alpha.copy_(state["log_alpha"])
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


def repeat_dist(dist: TanhNormal, repeats: int) -> TanhNormal:
    """The distribution of each state repeated `repeats` times (rows `i*R .. i*R+R-1` = state `i`).

    Sampling it equals running the actor on `obs.repeat_interleave(R, 0)`, without running the
    encoder and backbone `R` times (SPEED.md item 2).
    """
    return TanhNormal(dist.mean.repeat_interleave(repeats, 0),
                      dist.std.repeat_interleave(repeats, 0), dist.max_action)
