"""MOPO on a D4RL task: train the forward dynamics first, then the policy on model rollouts.

    python run_example/run_mopo.py --task hopper-medium-v2 --seed 0
    python run_example/run_mopo.py --task hopper-medium-v2 --load_dynamics_path <dynamics run>/model --seed 0

Without `--load_dynamics_path` the script trains the forward dynamics, saves them to the run's
`model/` folder and stops (the paper's workflow). `--rollout_length` and `--penalty_coef` default
to the task's published values (`offlinerlkit/presets.py`), else 1 and 2.5.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from offlinerlkit.algorithms import algorithm
from offlinerlkit.config import (
    CocoaOptions,
    DynamicsOptions,
    ModelRolloutOptions,
    RunConfig,
    SACOptions,
)
from offlinerlkit.dynamics.io import load_dynamics
from offlinerlkit.dynamics.termination_fns import get_termination_fn
from offlinerlkit.envs import make_env
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.nets.optim import CosineSchedule
from offlinerlkit.policy.mopo import MOPOPolicy
from offlinerlkit.policy.sac import SACHyperparams
from offlinerlkit.policy_trainer.mb import MBPolicyTrainer
from offlinerlkit.presets import resolve
from offlinerlkit.run import (
    anchor_setup,
    open_policy_run,
    prepare_run,
    run_dynamics_training,
    train_policy,
)
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.device import resolve_device
from offlinerlkit.utils.resume import resumed_config
from offlinerlkit.utils.tasks import parse_task


@dataclass(frozen=True)
class MOPOConfig(RunConfig, SACOptions, ModelRolloutOptions, CocoaOptions, DynamicsOptions):
    """MOPO (OfflineRL-Kit defaults; spec 9.5)."""

    task: str = opt("walker2d-medium-expert-v2", "D4RL task, e.g. hopper-medium-replay-v2")
    seed: int = opt(1, "random seed (python, numpy, torch, simulator)")
    epoch: int = opt(3000, "number of epochs")
    uncertainty_mode: Literal["aleatoric", "pairwise-diff", "ensemble_std"] = opt(
        "aleatoric", "uncertainty u(s, a) of the reward penalty r - lambda u", "-um")


DEFAULTS = {"rollout_length": 1, "penalty_coef": 2.5}


#: This script's registry entry (COCOA sizes, presets).
ALGO = algorithm("mopo")


def main(cfg: MOPOConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train the dynamics (no `--load_dynamics_path`) or the policy; returns the run directory."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    values, origin = resolve(ALGO.presets, cfg.task, {k: getattr(cfg, k) for k in DEFAULTS}, DEFAULTS)
    tags = {"penalty_coef": values["penalty_coef"], "rollout_length": values["rollout_length"]}
    if cfg.load_dynamics_path is None:
        return run_dynamics_training(cfg, algo="mopo", dataset=dataset, tags=tags)
    auto_alpha = True if cfg.auto_alpha is None else cfg.auto_alpha
    task = parse_task(cfg.task)
    dynamics = load_dynamics(
        cfg.load_dynamics_path, task=task.name, obs_dim=task.obs_dim, action_dim=task.action_dim,
        device=resolve_device(cfg.device), termination_fn=get_termination_fn(task),
        penalty_coef=values["penalty_coef"], uncertainty_mode=cfg.uncertainty_mode)
    inputs = prepare_run(cfg, dataset)
    env = env if env is not None else make_env(task, seed=cfg.seed)
    spec, device = inputs.spec, inputs.device
    setup = anchor_setup(cfg, inputs, sizes=ALGO.cocoa_sizes, dynamics=dynamics)
    hidden = cfg.hidden_dims or setup.backbone_dims or (256, 256)
    actor = build_tanh_actor(spec, hidden, setup.actor_encoder, layernorm=cfg.layernorm)
    critics = build_critics(spec, hidden, setup.critic_encoder, num_members=2, layernorm=cfg.layernorm)
    hp = SACHyperparams(**cfg.sac_kwargs(auto_alpha), actor_lr_schedule=CosineSchedule(cfg.epoch))
    policy = MOPOPolicy(actor, critics, hp=hp, actor_anchor_fn=setup.actor_anchor_fn,
                        critic_anchor_fn=setup.critic_anchor_fn, device=device)
    run = open_policy_run(
        cfg, inputs, policy, algo="mopo_cocoa" if cfg.use_cocoa else "mopo", tags=tags,
        record={"resolved_from": origin, "cocoa": setup.record, "resolved": {
            **values, "hidden_dims": list(hidden), "auto_alpha": auto_alpha}})
    trainer = MBPolicyTrainer(policy, env=env, **run.trainer_options(),
                              **cfg.trainer_kwargs(dynamics, values["rollout_length"]))
    return train_policy(trainer, run)


if __name__ == "__main__":
    run_main(main, MOPOConfig)
