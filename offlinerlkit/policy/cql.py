"""Conservative Q-learning on the SAC core (spec §7.2)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Optional, Union, get_args

import torch
from torch import Tensor

from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.dist import TanhNormal
from offlinerlkit.policy.anchors import AnchorFn, AnchorPair, repeat_rows
from offlinerlkit.policy.common import polyak_update, scalars_to_floats
from offlinerlkit.policy.sac import SAC_DEFAULTS, SACHyperparams, SACPolicy, repeat_dist
from offlinerlkit.types import Batch

__all__ = ["CQLPolicy", "LSEMode", "conservative_term"]

#: Over what CQL's log-sum-exp runs (spec §12.21): `per_row` is the original (and upstream) code,
#: whose intended reshape is a no-op, so each of the `B*R` repeated rows gets an LSE over its 3
#: values; `per_state` is the intended one, an LSE over the `3R` values of each state.
LSEMode = Literal["per_row", "per_state"]


def conservative_term(
    q_data: Tensor,
    q_pi: Tensor,
    q_next_pi: Tensor,
    q_rand: Tensor,
    *,
    num_repeat: int,
    cql_weight: float,
    temperature: float,
    mode: LSEMode = "per_row",
) -> Tensor:
    """CQL's conservative penalty per critic, before the optional Lagrange scaling.

    `cons_j = w T mean(logsumexp(cat_j / T)) - w mean_B Q_j(s, a)`, where `cat_j` holds, for each
    repeated row `(i, k)` (state `i`, repeat `k`, row index `i*R + k`), the three values
    `Q_j(s_i, a_pi) - log pi(a_pi|s_i)`, `Q_j(s_i, a_pi') - log pi(a_pi'|s'_i)` and
    `Q_j(s_i, a_u) - log(0.5^A)`. `per_row` takes the LSE over those 3 values of each of the
    `B*R` rows and averages over rows; `per_state` takes it over the `3R` values of each state and
    averages over states.

    Shapes: q_data `[E, B, 1]`; q_pi, q_next_pi, q_rand `[E, B*R, 1]` -> `[E]`.
    """
    num_critics = q_data.shape[0]
    if mode == "per_row":
        cat = torch.cat([q_pi, q_next_pi, q_rand], dim=-1)  # [E, B*R, 3]
    elif mode == "per_state":
        cat = torch.cat([v.reshape(num_critics, -1, num_repeat) for v in (q_pi, q_next_pi, q_rand)],
                        dim=-1)  # [E, B, 3R]
    else:
        raise ValueError(f"cql_lse_mode must be one of {list(get_args(LSEMode))}, got {mode!r}")
    lse = torch.logsumexp(cat / temperature, dim=-1).mean(-1)  # [E]
    return lse * cql_weight * temperature - q_data.mean(dim=(1, 2)) * cql_weight


class CQLPolicy(SACPolicy):
    """Conservative Q-learning (Kumar et al. 2020) in OfflineRL-Kit's form (spec §7.2).

    One update on `(s, a, r, s', d)` with `B` rows, `R = num_repeat_actions`, and `s_bar`, `s'_bar`
    the states repeated `R` times each (`B*R` rows):

    1. actor step on `mean_B (alpha log pi(a~|s) - min_j Q_j(s, a~))`, then the auto-alpha step;
       here `alpha = exp(log_alpha)` is **not** clamped;
    2. target (no grad): `y = r + gamma (1 - d) min_j Q'_j(s', a')`, `a' ~ pi(.|s')` (no entropy
       term with `deterministic_backup`; with `max_q_backup`, `R` actions per `s'`, the max over
       them per critic, then the min over critics);
    3. Bellman loss `mean_B (Q_j(s, a) - y)^2` per critic;
    4. conservative term (`conservative_term`): policy actions sampled at `s_bar` and at `s'_bar`,
       both scored at `s_bar` with their log-probabilities subtracted, and uniform actions in the
       action box scored with `log(0.5^A)` subtracted; with `with_lagrange`,
       `c = clamp(exp(cql_log_alpha), 0, 1e6)`, `cons_j <- c (cons_j - threshold)` and `c` takes a
       step on `-(cons_1 + cons_2) / 2`;
    5. critic step on `sum_j (Bellman_j + cons_j)`; Polyak update.

    Work the original does that changes no update (SPEED.md 1, 2, 4; tested against a
    straightforward implementation): the policy samples of the conservative term are drawn without
    a graph (the original back-propagates the critic losses into the actor, whose gradients are
    discarded); the actor's encoder and backbone run once per state, and only the Gaussian sample
    is drawn per repeat (the `s'` pass is shared with the target); the actor loss computes no critic
    weight gradients. Anchors are computed once for `s` and once for `s'`; the repeated states reuse
    them.

    Metrics: `loss/actor`, `loss/critic1`, `loss/critic2` (Bellman + conservative), and with
    auto-alpha `loss/alpha`, `alpha`; with the Lagrange term `loss/cql_alpha`, `cql_alpha` (the
    multiplier used in this update).

    Args:
        actor: the tanh-Gaussian actor (its `max_action` bounds the uniform actions).
        critics: the two-member critic ensemble.
        cql_weight: weight `w` of the conservative term.
        temperature: LSE temperature `T`.
        max_q_backup: max-Q backup over `num_repeat_actions` next actions.
        deterministic_backup: drop the entropy term from the target (the original's default).
        with_lagrange: scale the conservative term by a learned Lagrange multiplier.
        lagrange_threshold: the multiplier's target gap.
        cql_alpha_lr: the multiplier's learning rate (optimiser `cql_alpha_optim`, built by
            `hp.optimizer`).
        num_repeat_actions: `R`, sampled actions per state in the conservative term.
        cql_lse_mode: `"per_row"` (the original) or `"per_state"` (the intended LSE).
        hp, actor_anchor_fn, critic_anchor_fn, generator, device: as in `SACPolicy`.
    """

    clamp_alpha = False

    def __init__(
        self,
        actor: TanhGaussianActor,
        critics: CriticEnsemble,
        *,
        cql_weight: float = 5.0,
        temperature: float = 1.0,
        max_q_backup: bool = False,
        deterministic_backup: bool = True,
        with_lagrange: bool = False,
        lagrange_threshold: float = 10.0,
        cql_alpha_lr: float = 3e-4,
        num_repeat_actions: int = 10,
        cql_lse_mode: LSEMode = "per_row",
        hp: SACHyperparams = SAC_DEFAULTS,
        actor_anchor_fn: Optional[AnchorFn] = None,
        critic_anchor_fn: Optional[AnchorFn] = None,
        generator: Optional[torch.Generator] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> None:
        super().__init__(actor, critics, hp=hp, actor_anchor_fn=actor_anchor_fn,
                         critic_anchor_fn=critic_anchor_fn, generator=generator, device=device)
        if cql_lse_mode not in get_args(LSEMode):
            raise ValueError(f"cql_lse_mode must be one of {list(get_args(LSEMode))}, "
                             f"got {cql_lse_mode!r}")
        if num_repeat_actions < 1:
            raise ValueError(f"num_repeat_actions must be >= 1, got {num_repeat_actions}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.cql_weight, self.temperature = float(cql_weight), float(temperature)
        self.max_q_backup, self.deterministic_backup = bool(max_q_backup), bool(deterministic_backup)
        self.num_repeat_actions = int(num_repeat_actions)
        self.cql_lse_mode: LSEMode = cql_lse_mode
        self.max_action = float(actor.max_action)
        # log-density the original subtracts from uniform-action values (exact for a [-1, 1] box)
        self.random_log_density = math.log(0.5**self.action_dim)
        self.with_lagrange = bool(with_lagrange)
        self.lagrange_threshold = float(lagrange_threshold)
        self.cql_log_alpha: Optional[Tensor] = None
        if self.with_lagrange:
            self.cql_log_alpha = torch.zeros(1, device=self.device, requires_grad=True)
            self.cql_alpha_optim = self.add_optimizer("cql_alpha", [self.cql_log_alpha],
                                                      cql_alpha_lr, optimizer=hp.optimizer)

    def _actor_objective(self, log_prob: Tensor, q_pi: Tensor, alpha: Union[Tensor, float]) -> Tensor:
        """CQL's form: `mean(alpha log pi - min Q)`."""
        return (alpha * log_prob - q_pi).mean()

    def learn(self, batch: Batch) -> dict[str, float]:
        anchors, next_anchors = self.anchors.of_batch(batch)

        # --- actor and alpha (CQL steps the actor first) ---
        actor_loss, log_prob, _ = self._actor_step(batch.obs, anchors)
        metrics: dict[str, Union[Tensor, float]] = {"loss/actor": actor_loss}
        metrics.update(self._alpha_step(log_prob))

        # --- target (no grad); the s' actor pass is shared with the conservative term ---
        with torch.no_grad():
            next_dist = self.actor(batch.next_obs, next_anchors.actor)
            next_q = self._next_q(
                batch.next_obs, next_anchors, deterministic_backup=self.deterministic_backup,
                max_q_backup_repeats=self.num_repeat_actions if self.max_q_backup else 0,
                next_dist=next_dist,
            )
            target_q = batch.reward + self.gamma * (1.0 - batch.done) * next_q  # [B, 1]

        # --- Bellman and conservative losses ---
        q = self.critics(batch.obs, batch.action, anchors.critic)  # [2, B, 1]
        bellman = (q - target_q).pow(2).mean(dim=(1, 2))  # [2]
        conservative = self._conservative(batch.obs, q, anchors, next_dist)  # [2]
        if self.cql_log_alpha is not None:
            cql_alpha = self.cql_log_alpha.exp().clamp(0.0, 1e6)  # [1]
            gap = conservative - self.lagrange_threshold  # [2]
            cql_alpha_loss = -(cql_alpha * gap.detach()).mean()
            self.cql_alpha_optim.zero_grad()
            cql_alpha_loss.backward()
            self.cql_alpha_optim.step()
            conservative = cql_alpha.detach() * gap
            metrics["loss/cql_alpha"] = cql_alpha_loss.detach()
            metrics["cql_alpha"] = cql_alpha.detach()

        # --- critic step ---
        critic_losses = bellman + conservative  # [2]
        self.critic_optim.zero_grad()
        critic_losses.sum().backward()
        self.critic_optim.step()
        metrics["loss/critic1"], metrics["loss/critic2"] = critic_losses[0], critic_losses[1]

        polyak_update(self.critics_target, self.critics, self.tau)
        return scalars_to_floats(metrics)

    def _conservative(self, obs: Tensor, q_data: Tensor, anchors: AnchorPair,
                      next_dist: TanhNormal) -> Tensor:
        """`conservative_term` for this batch: `[2]`, with a graph into the critics only."""
        r = self.num_repeat_actions
        rows = obs.shape[0] * r
        random_action = torch.empty(rows, self.action_dim, device=obs.device).uniform_(
            -self.max_action, self.max_action, generator=self.generator)  # [B*R, A]
        with torch.no_grad():  # policy samples: no graph into the actor (SPEED.md 1)
            pi_action, pi_log_prob = self._sample(
                repeat_dist(self.actor(obs, anchors.actor), r))  # [B*R, A], [B*R, 1]
            next_pi_action, next_pi_log_prob = self._sample(repeat_dist(next_dist, r))
        obs_rep = obs.repeat_interleave(r, 0)  # [B*R, S], state-major like s_bar
        critic_anchor = repeat_rows(anchors.critic, r)  # anchors of s_bar, never recomputed
        q_pi = self.critics(obs_rep, pi_action, critic_anchor) - pi_log_prob  # [2, B*R, 1]
        q_next_pi = self.critics(obs_rep, next_pi_action, critic_anchor) - next_pi_log_prob
        q_rand = self.critics(obs_rep, random_action, critic_anchor) - self.random_log_density
        return conservative_term(q_data, q_pi, q_next_pi, q_rand, num_repeat=r,
                                 cql_weight=self.cql_weight, temperature=self.temperature,
                                 mode=self.cql_lse_mode)

    # --- state ---
    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        if self.cql_log_alpha is not None:
            state["cql_log_alpha"] = self.cql_log_alpha.detach().clone()
        return state

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        if self.cql_log_alpha is not None:
            if "cql_log_alpha" not in state:
                raise KeyError("checkpoint lacks cql_log_alpha; it was written without the "
                               "Lagrange term")
            with torch.no_grad():
                self.cql_log_alpha.copy_(state["cql_log_alpha"])
