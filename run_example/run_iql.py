"""Implicit Q-learning (IQL) on a D4RL task, alone or with COCOA.

    python run_example/run_iql.py --task hopper-medium-replay-v2 --seed 0
    python run_example/run_iql.py --task hopper-medium-replay-v2 --load_dynamics_path <dynamics run>/model \
        --load_anchor_seeker_path <seeker run>/model --actor_horizon_len 1 --critic_horizon_len 1

expectile=0.7 and temperature=3.0 for all D4RL-Gym tasks. Rewards of the MuJoCo tasks are scaled
by 1000 / (max trajectory return - min trajectory return) (spec 2.3), always, as the original.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from offlinerlkit.algorithms import algorithm
from offlinerlkit.config import CocoaOptions, LoadedDynamicsSizes, RunConfig, check_ranges
from offlinerlkit.datasets.transforms import normalize_rewards_by_return_range
from offlinerlkit.envs import make_env
from offlinerlkit.modules.build import build_critics, build_gaussian_actor
from offlinerlkit.nets.optim import CosineSchedule
from offlinerlkit.policy.iql import IQLPolicy
from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.run import (
    anchor_setup,
    load_anchor_dynamics,
    open_policy_run,
    prepare_run,
    train_policy,
)
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.resume import resumed_config
from offlinerlkit.utils.tasks import parse_task


@dataclass(frozen=True)
class IQLConfig(RunConfig, CocoaOptions, LoadedDynamicsSizes):
    """IQL (OfflineRL-Kit defaults; spec 9.4)."""

    task: str = opt("hopper-medium-replay-v2", "D4RL task, e.g. hopper-medium-replay-v2")
    hidden_dims: Optional[tuple[int, ...]] = opt(None, "actor/critic/value sizes (default 256 256)", "-hd")
    actor_lr: float = opt(3e-4, "actor learning rate", "-aclr")
    critic_q_lr: float = opt(3e-4, "Q learning rate")
    critic_v_lr: float = opt(3e-4, "V learning rate")
    dropout_rate: Optional[float] = opt(None, "dropout in the actor backbone", "-dr")
    lr_decay: bool = opt(True, "cosine decay of the actor learning rate over the epochs")
    gamma: float = opt(0.99, "discount")
    tau: float = opt(0.005, "target network Polyak rate")
    expectile: float = opt(0.7, "expectile of the value loss", "--expt")
    temperature: float = opt(3.0, "inverse temperature of the advantage weights", "-tp")
    layernorm: bool = opt(False, "LayerNorm in the backbones", "-ln")
    norm_reward: bool = opt(
        False, "the original's NeoRL-only switch: D4RL MuJoCo rewards are always scaled by "
        "1000 / return range (as in the original), so it changes nothing here", "-nr")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, sizes=("hidden_dims",), positive=("actor_lr", "critic_q_lr", "critic_v_lr"),
                     fraction=("gamma", "tau"), open_unit=("expectile",),
                     non_negative=("temperature",))
        if self.dropout_rate is not None and not 0 <= self.dropout_rate < 1:
            raise ValueError(f"--dropout_rate must be in [0, 1), got {self.dropout_rate}")


#: This script's registry entry (COCOA sizes, presets).
ALGO = algorithm("iql")


def main(cfg: IQLConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train IQL; returns the run directory. `dataset`/`env` replace the task's own (tests)."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    dynamics = load_anchor_dynamics(cfg, parse_task(cfg.task))  # only for COCOA's anchors
    inputs = prepare_run(cfg, dataset, transform=normalize_rewards_by_return_range)
    env = env if env is not None else make_env(inputs.task, seed=cfg.seed)
    spec, device = inputs.spec, inputs.device
    setup = anchor_setup(cfg, inputs, sizes=ALGO.cocoa_sizes, dynamics=dynamics)
    hidden = cfg.hidden_dims or setup.backbone_dims or (256, 256)
    actor = build_gaussian_actor(spec, hidden, setup.actor_encoder,
                                 dropout_rate=cfg.dropout_rate, layernorm=cfg.layernorm)
    critic_q = build_critics(spec, hidden, setup.critic_encoder, num_members=2,
                             layernorm=cfg.layernorm, init="orthogonal")
    critic_v = build_critics(spec, hidden, setup.critic_encoder, num_members=1,
                             with_action=False, layernorm=cfg.layernorm, init="orthogonal")
    policy = IQLPolicy(
        actor, critic_q, critic_v, actor_lr=cfg.actor_lr, critic_q_lr=cfg.critic_q_lr,
        critic_v_lr=cfg.critic_v_lr,
        actor_lr_schedule=CosineSchedule(cfg.epoch) if cfg.lr_decay else None,
        gamma=cfg.gamma, tau=cfg.tau, expectile=cfg.expectile,
        temperature=cfg.temperature, actor_anchor_fn=setup.actor_anchor_fn,
        critic_anchor_fn=setup.critic_anchor_fn, device=device)
    run = open_policy_run(cfg, inputs, policy, algo="iql_cocoa" if cfg.use_cocoa else "iql",
                          record={"reward_transform": "1000 / return range",
                                  "cocoa": setup.record,
                                  "resolved": {"hidden_dims": list(hidden)}})
    trainer = MFPolicyTrainer(policy, env=env, **run.trainer_options())
    return train_policy(trainer, run)


if __name__ == "__main__":
    run_main(main, IQLConfig)
