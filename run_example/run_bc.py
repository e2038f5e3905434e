"""Behaviour cloning on a D4RL task (the BC baseline).

    python run_example/run_bc.py --task hopper-medium-v2 --seed 0
    python run_example/run_bc.py --resume log/hopper-medium-v2/bc/seed_0_<time> --epoch 2000
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from offlinerlkit.config import RunConfig, check_ranges
from offlinerlkit.envs import make_env
from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.nets.mlp import MLP
from offlinerlkit.policy.bc import BCPolicy
from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.run import open_policy_run, prepare_run, train_policy
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.resume import resumed_config


@dataclass(frozen=True)
class BCConfig(RunConfig):
    """Behaviour cloning (OfflineRL-Kit defaults)."""

    hidden_dims: tuple[int, ...] = opt((256, 256), "actor hidden sizes", "-hd")
    actor_lr: float = opt(1e-4, "actor learning rate", "-aclr")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, sizes=("hidden_dims",), positive=("actor_lr",))


def main(cfg: BCConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train BC; returns the run directory. `dataset`/`env` replace the task's own (tests)."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    inputs = prepare_run(cfg, dataset)
    env = env if env is not None else make_env(inputs.task, seed=cfg.seed)
    spec = inputs.spec
    actor = DeterministicActor(MLP(spec.obs_dim, cfg.hidden_dims), spec.action_dim,
                               max_action=spec.max_action)
    policy = BCPolicy(actor, actor_lr=cfg.actor_lr, device=inputs.device)
    run = open_policy_run(cfg, inputs, policy, algo="bc")
    trainer = MFPolicyTrainer(policy, env=env, **run.trainer_options())
    return train_policy(trainer, run)


if __name__ == "__main__":
    run_main(main, BCConfig)
