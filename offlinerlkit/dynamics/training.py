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
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch

from offlinerlkit.config import DynamicsOptions
from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics, TerminationFn
from offlinerlkit.dynamics.fit import HOLDOUT_LOSS_KEY, TRAIN_LOSS_KEY, FitResult, fit_ensemble
from offlinerlkit.dynamics.io import save_dynamics
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.errors import naming_path
from offlinerlkit.utils.fileio import atomic_write
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


def fit_state_path(run_dir: RunDir, direction: Direction) -> Path:
    """Where `train_dynamics` keeps the state of an unfinished fit in `run_dir`."""
    phase = "dynamics" if direction == "forward" else "reverse_dynamics"
    return run_dir.checkpoint / f"{phase}_fit_state.pt"


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
    resume: bool = False,
) -> FitResult:
    """Fit `dynamics` on a transition dict and save it (checkpoints and `model/`).

    Per-epoch metrics go to the `dynamics` (or `reverse_dynamics`) CSV and TensorBoard with
    timestep = epoch, as `loss/dynamics_{train,holdout}_loss` (reverse:
    `loss/reverse_dynamics_{train,holdout}_loss`, the original's names). The metadata stored in each file records the task, the direction and the
    training options, so `load_dynamics` can validate it later.

    After every epoch that does not stop, the fit's state goes to
    `<run>/checkpoint/<phase>_fit_state.pt` (removed when the fit ends). With `resume`, a
    state file left by a stopped fit in this run is continued after its epoch (the caller
    builds and seeds everything as the stopped run did, so the numbers are an uninterrupted
    fit's) and the run's rows after that epoch are dropped; without one the fit starts over.
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

    state_path = fit_state_path(run_dir, dynamics.direction)
    resume_state = None
    if resume and state_path.is_file():
        with naming_path(state_path):
            resume_state = torch.load(state_path, map_location=device, weights_only=True)
        logger.rewind(int(resume_state["epoch"]), phase=phase)
        logger.info(f"continuing the stopped {dynamics.direction} dynamics fit after epoch "
                    f"{resume_state['epoch']} ({state_path})")
    elif resume:
        logger.rewind(-1, phase=phase)

    def save_state(state: dict[str, Any]) -> None:
        atomic_write(state_path, lambda f: torch.save(state, f))

    logger.info(f"training {dynamics.direction} dynamics on {inputs.shape[0]} transitions "
                f"({options.num_ensemble} members, {options.num_elites} elites, hidden "
                f"{list(options.dynamics_hidden_dims)})")
    result = fit_ensemble(
        dynamics, inputs, targets, holdout_ratio=options.holdout_ratio,
        max_epochs=options.dynamics_max_epochs,
        max_epochs_since_update=options.max_epochs_since_update,
        logvar_loss_coef=options.logvar_loss_coef, lr=options.dynamics_lr,
        restore=options.dynamics_restore, generator=generator, progress=progress,
        on_epoch=on_epoch, checkpoint_fn=checkpoint, save_state=save_state,
        resume_state=resume_state,
    )
    path = save_dynamics(run_dir.model, dynamics, metadata=meta, state_dict=result.saved_state)
    state_path.unlink(missing_ok=True)
    logger.info(f"{dynamics.direction} dynamics: {result.epochs} epochs, holdout loss "
                f"{result.holdout_loss:.5g}, elites {result.elites}; saved to {path.parent}")
    return result
