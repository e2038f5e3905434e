"""Train a dynamics ensemble inside a run directory: logging, checkpoints, the final `model/`.

This is the one place that wires `fit_ensemble` to the run's files, used by every script that
trains dynamics (forward for MOPO/MOBILE and the COCOA anchors, reverse for the anchor seeker).
Files written (spec 3.5, 10):

* `<run>/checkpoint_last/` and `<run>/checkpoint_best/` during training, as the original does;
* `<run>/model/` at the end (`dynamics.pth` or `reverse_dynamics.pth`, `mu.npy`, `std.npy`),
  which the original's README promises but never wrote.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal, Optional

import numpy as np
import torch

from offlinerlkit.config import DynamicsOptions
from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics, TerminationFn
from offlinerlkit.dynamics.fit import HOLDOUT_LOSS_KEY, TRAIN_LOSS_KEY, FitResult, fit_ensemble
from offlinerlkit.dynamics.io import save_dynamics
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.run_dir import RunDir

log = logging.getLogger(__name__)

Direction = Literal["forward", "reverse"]
#: The original's reverse-dynamics trainer logs its losses under names of their own.
REVERSE_METRIC_NAMES = {TRAIN_LOSS_KEY: "loss/reverse_dynamics_train_loss",
                        HOLDOUT_LOSS_KEY: "loss/reverse_dynamics_holdout_loss"}


def build_dynamics(options: DynamicsOptions, spec: EnvSpec, *, direction: Direction,
                   termination_fn: Optional[TerminationFn] = None, penalty_coef: float = 0.0,
                   uncertainty_mode: str = "aleatoric",
                   device: torch.device | str = "cpu") -> EnsembleDynamics:
    """An untrained ensemble of the configured architecture for `spec`'s sizes."""
    with_reward = direction == "forward"
    model = GaussianEnsemble(
        spec.obs_dim + spec.action_dim, spec.obs_dim + int(with_reward), options.dynamics_hidden_dims,
        num_members=options.num_ensemble, num_elites=options.num_elites,
        weight_decays=options.dynamics_weight_decay,
    ).to(device)
    return EnsembleDynamics(model, direction=direction, termination_fn=termination_fn,
                            penalty_coef=penalty_coef, uncertainty_mode=uncertainty_mode)  # type: ignore[arg-type]


def train_dynamics(
    dynamics: EnsembleDynamics,
    data: Mapping[str, np.ndarray],
    *,
    options: DynamicsOptions,
    run_dir: RunDir,
    logger: Logger,
    task: str,
    metadata: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit `dynamics` on a transition dict and save it (checkpoints and `model/`).

    Per-epoch metrics go to the `dynamics` (or `reverse_dynamics`) CSV and TensorBoard with
    timestep = epoch, as `loss/dynamics_{train,holdout}_loss` (reverse:
    `loss/reverse_dynamics_{train,holdout}_loss`, the original's names). The metadata stored in each file records the task, the direction and the
    training options, so `load_dynamics` can validate it later.
    """
    device = dynamics.device
    obs, action = (torch.as_tensor(data[k], device=device) for k in ("observations", "actions"))
    next_obs = torch.as_tensor(data["next_observations"], device=device)
    reward = torch.as_tensor(data["rewards"], device=device).reshape(-1, 1)
    inputs, targets = dynamics.training_pairs(obs, action, next_obs, reward)
    phase = "dynamics" if dynamics.direction == "forward" else "reverse_dynamics"
    meta = {"task": task, "training": asdict(options), **(metadata or {})}
    meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in meta.items()}

    names = REVERSE_METRIC_NAMES if dynamics.direction == "reverse" else {}

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        logger.record_dict({names.get(k, k): v for k, v in metrics.items()})
        logger.dump(epoch, phase=phase)

    def checkpoint(kind: str) -> None:
        save_dynamics(run_dir.path / f"checkpoint_{kind}", dynamics, metadata=meta)

    logger.info(f"training {dynamics.direction} dynamics on {inputs.shape[0]} transitions "
                f"({options.num_ensemble} members, {options.num_elites} elites, hidden "
                f"{list(options.dynamics_hidden_dims)})")
    result = fit_ensemble(
        dynamics, inputs, targets, holdout_ratio=options.holdout_ratio,
        max_epochs=options.dynamics_max_epochs,
        max_epochs_since_update=options.max_epochs_since_update,
        logvar_loss_coef=options.logvar_loss_coef, lr=options.dynamics_lr,
        restore=options.dynamics_restore, generator=generator, progress=progress,
        on_epoch=on_epoch, checkpoint_fn=checkpoint,
    )
    path = save_dynamics(run_dir.model, dynamics, metadata=meta, state_dict=result.saved_state)
    logger.info(f"{dynamics.direction} dynamics: {result.epochs} epochs, holdout loss "
                f"{result.holdout_loss:.5g}, elites {result.elites}; saved to {path.parent}")
    return result
