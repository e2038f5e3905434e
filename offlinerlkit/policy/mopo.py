"""MOPO's policy update: SAC on mixed real + model batches (spec §7.1, "MOPO specifics")."""
from __future__ import annotations

from offlinerlkit.policy.common import check_num_real
from offlinerlkit.policy.sac import SACPolicy
from offlinerlkit.types import Batch

__all__ = ["MOPOPolicy"]


class MOPOPolicy(SACPolicy):
    """Model-based offline policy optimisation (Yu et al. 2020): SAC on a mixed batch.

    MOPO's conservatism lives in the data, not in the update: the model rollouts (run by the
    trainer with the stochastic actor and the dynamics' penalised reward `r - lambda u(s, a)`)
    fill a model buffer, and each update is `SACPolicy`'s on a batch of real rows followed by
    model rows (the original uses 12 real + 244 model rows). Hyper-parameter defaults are the
    original `run_mopo.py`'s (actor lr 1e-4, critic lr 3e-4, alpha lr 1e-4, gamma 0.99,
    tau 0.005, auto-alpha clamped to [0, 1]); its cosine schedule of the actor learning rate is
    `SACHyperparams.actor_lr_schedule` (`CosineSchedule(epochs)`).

    **Mixed-batch interface** (shared with `MOBILEPolicy`): `learn(batch, num_real=n)` where
    `batch = Batch.cat([real, model])` and `n = len(real)`. MOPO treats every row alike and only
    validates `n`.

    Metrics, checkpoint keys and arguments are `SACPolicy`'s.
    """

    def learn(self, batch: Batch, *, num_real: int = 0) -> dict[str, float]:
        """One SAC update on `batch` (real rows first); `num_real` is validated, then unused."""
        check_num_real(num_real, len(batch))
        return super().learn(batch)
