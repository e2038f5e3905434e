"""MOBILE: model-Bellman inconsistency penalised SAC (spec §7.4)."""
from __future__ import annotations

from typing import Optional, Protocol, Union

import torch
from torch import Tensor

from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.policy.anchors import AnchorFn
from offlinerlkit.policy.common import check_num_real, polyak_update, scalars_to_floats
from offlinerlkit.policy.sac import SAC_DEFAULTS, SACHyperparams, SACPolicy
from offlinerlkit.types import Batch

__all__ = ["MAX_Q_BACKUP_REPEATS", "MOBILEPolicy", "NextObsSampler"]

#: Next actions per state of MOBILE's max-Q backup (hard-coded in the original).
MAX_Q_BACKUP_REPEATS = 10


class NextObsSampler(Protocol):
    """What MOBILE needs from the forward dynamics (`EnsembleDynamics` provides it)."""

    def sample_next_obs(self, obs: Tensor, action: Tensor, num_samples: int,
                        generator: Optional[torch.Generator] = None) -> Tensor:
        """`num_samples` next-state draws per elite: `[num_samples, K, B, S]`, without grad."""
        ...


class MOBILEPolicy(SACPolicy):
    """MOBILE (Sun et al. 2023): SAC whose target is penalised by the model-Bellman inconsistency.

    The Bellman-inconsistency `u(s, a)` of a row: draw `N = num_samples` next states from each of
    the `K` elite dynamics members, `s'_{n,k} ~ T_k(.|s, a)`, score them with `a'_{n,k} ~ pi` and
    the target critics, and take

        u(s, a) = std_k( mean_n min_j Q'_j(s'_{n,k}, a'_{n,k}) )      (unbiased std over elites)

    with `u = 0` on real rows. One update on a mixed batch (real rows first):

    1. target (no grad): `y = clamp(r - beta u + gamma (1 - d) min_j Q'_j(s', a'), min=0)`,
       `a' ~ pi(.|s')`; deterministic backup (no entropy term) by default; with `max_q_backup`,
       10 actions per `s'`, the max over them per critic, then the min over critics;
    2. critic step on `mean_{j, B} (Q_j(s, a) - y)^2`, one optimiser over all critics;
    3. actor step on `-mean_B min_j Q_j(s, a~) + alpha mean_B log pi(a~|s)` (no critic weight
       gradients), auto-alpha clamped to [0, 1], Polyak update.

    **Mixed batches.** `learn(batch, num_real=n)`: `batch = Batch.cat([real, model])`, and the
    first `n` rows are real (no penalty). The default `n = 0` treats every row as a model row.

    **Dynamics.** The forward dynamics is frozen and shared by reference: it is not one of the
    policy's networks, is never optimised, and is not part of `state_dict()` (spec §12.36).

    **Anchors (COCOA).** One call for `s` and `s'` stacked (none when the batch carries
    precomputed anchors) and one for the `N*K*B` sampled next states (shared by the actor and
    all target critics), instead of one per network call.

    Shapes: sampled next states `[N, K, B, S]` -> flattened `[N*K*B, S]`; critics `[E, rows, 1]`;
    `u` `[B, 1]`.

    Metrics: `loss/actor`, `loss/critic`, and with auto-alpha `loss/alpha`, `alpha`.

    Args:
        actor: the tanh-Gaussian actor.
        critics: the critic ensemble (`num_q_ensemble` members, default 2 in the original).
        dynamics: the frozen forward dynamics (anything with `sample_next_obs`).
        penalty_coef: `beta`, the penalty weight.
        num_samples: `N`, next-state draws per elite.
        deterministic_backup: drop the entropy term from the target (the original's setting).
        max_q_backup: max-Q backup over 10 next actions.
        hp, actor_anchor_fn, critic_anchor_fn, generator, device: as in `SACPolicy` (the
            original anneals the actor lr with a cosine when `--lr_scheduler`:
            `hp.actor_lr_schedule`).
    """

    required_num_critics = None

    def __init__(
        self,
        actor: TanhGaussianActor,
        critics: CriticEnsemble,
        dynamics: NextObsSampler,
        *,
        penalty_coef: float = 1.5,
        num_samples: int = 10,
        deterministic_backup: bool = True,
        max_q_backup: bool = False,
        hp: SACHyperparams = SAC_DEFAULTS,
        actor_anchor_fn: Optional[AnchorFn] = None,
        critic_anchor_fn: Optional[AnchorFn] = None,
        generator: Optional[torch.Generator] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> None:
        super().__init__(actor, critics, hp=hp, actor_anchor_fn=actor_anchor_fn,
                         critic_anchor_fn=critic_anchor_fn, generator=generator, device=device)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.dynamics = dynamics  # shared by reference, never trained here
        self.penalty_coef = float(penalty_coef)
        self.num_samples = int(num_samples)
        self.deterministic_backup, self.max_q_backup = bool(deterministic_backup), bool(max_q_backup)

    @torch.no_grad()
    def uncertainty(self, obs: Tensor, action: Tensor, *, num_real: int = 0) -> Tensor:
        """The penalty `u` `[B, 1]` of each row (zero on the first `num_real` rows)."""
        num_real = check_num_real(num_real, obs.shape[0])
        next_obs = self.dynamics.sample_next_obs(obs, action, self.num_samples,
                                                 generator=self.generator)  # [N, K, B, S]
        n, k, b, s = next_obs.shape
        if k < 2 or b != obs.shape[0]:
            raise ValueError(f"MOBILE needs [N, K >= 2, B={obs.shape[0]}, S] next-state samples "
                             f"(an unbiased std over the elites), got {tuple(next_obs.shape)}")
        flat = next_obs.reshape(n * k * b, s)  # [N*K*B, S]
        anchors = self.anchors(flat)  # once, for the actor and every target critic
        next_action, _ = self._sample(self.actor(flat, anchors.actor))  # [N*K*B, A]
        q = self.critics_target(flat, next_action, anchors.critic).amin(0)  # [N*K*B, 1]
        u = q.view(n, k, b, 1).mean(0).std(0)  # mean over samples, std over elites: [B, 1]
        u[:num_real] = 0.0
        return u

    def learn(self, batch: Batch, *, num_real: int = 0) -> dict[str, float]:
        """One MOBILE update on `batch`, whose first `num_real` rows are real transitions."""
        num_real = check_num_real(num_real, len(batch))
        anchors, next_anchors = self.anchors.of_batch(batch)

        # --- target (no grad) ---
        with torch.no_grad():
            u = self.uncertainty(batch.obs, batch.action, num_real=num_real)  # [B, 1]
            next_q = self._next_q(
                batch.next_obs, next_anchors, deterministic_backup=self.deterministic_backup,
                max_q_backup_repeats=MAX_Q_BACKUP_REPEATS if self.max_q_backup else 0,
            )  # [B, 1]
            target_q = (batch.reward - self.penalty_coef * u) + self.gamma * (1.0 - batch.done) * next_q
            target_q = target_q.clamp(min=0.0)

        # --- critic step ---
        q = self.critics(batch.obs, batch.action, anchors.critic)  # [E, B, 1]
        critic_loss = (q - target_q).pow(2).mean()
        self.critic_optim.zero_grad()
        critic_loss.backward()
        self.critic_optim.step()

        # --- actor and alpha ---
        actor_loss, log_prob, _ = self._actor_step(batch.obs, anchors)
        metrics: dict[str, Union[Tensor, float]] = {"loss/actor": actor_loss,
                                                    "loss/critic": critic_loss.detach()}
        metrics.update(self._alpha_step(log_prob))

        polyak_update(self.critics_target, self.critics, self.tau)
        return scalars_to_floats(metrics)
