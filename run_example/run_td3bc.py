"""TD3+BC (Fujimoto & Gu, 2021) on a D4RL task, alone or with COCOA (an extension: TD3+BC is not
in the COCOA paper).

    python run_example/run_td3bc.py --task hopper-medium-v2 --seed 0
    python run_example/run_td3bc.py --task hopper-medium-v2 --load_dynamics_path <dynamics run>/model \
        --load_anchor_seeker_path <seeker run>/model --actor_horizon_len 1 --critic_horizon_len 1

Defaults are CORL's and OfflineRL-Kit's: alpha 2.5, policy noise 0.2 clipped at 0.5, actor and
target updates every 2 critic updates, tau 0.005, gamma 0.99, learning rates 3e-4, batch 256,
states standardised with the dataset's mean and std (+ 1e-3).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from offlinerlkit.algorithms import algorithm
from offlinerlkit.config import CocoaOptions, LoadedDynamicsSizes, RunConfig
from offlinerlkit.envs import make_env
from offlinerlkit.modules.build import build_critics, build_encoder
from offlinerlkit.policy.td3bc import StateNormalizer, TD3BCActor, TD3BCPolicy
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
class TD3BCConfig(RunConfig, CocoaOptions, LoadedDynamicsSizes):
    """TD3+BC (CORL / OfflineRL-Kit defaults)."""

    hidden_dims: Optional[tuple[int, ...]] = opt(None, "actor/critic sizes (default 256 256)", "-hd")
    actor_lr: float = opt(3e-4, "actor learning rate", "-aclr")
    critic_lr: float = opt(3e-4, "critic learning rate", "-crlr")
    gamma: float = opt(0.99, "discount")
    tau: float = opt(0.005, "target network Polyak rate")
    alpha: float = opt(2.5, "weight alpha of the Q term against the BC term")
    policy_noise: float = opt(0.2, "std of the target policy smoothing noise")
    noise_clip: float = opt(0.5, "clip of the target policy smoothing noise")
    policy_freq: int = opt(2, "actor and target updates every this many critic updates")
    normalize_states: bool = opt(True, "standardise states with the dataset's mean and std")
    state_norm_eps: float = opt(1e-3, "added to the std of the state normalisation")


#: This script's registry entry (COCOA sizes).
ALGO = algorithm("td3bc")


def main(cfg: TD3BCConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train TD3+BC; returns the run directory. `dataset`/`env` replace the task's own (tests)."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    dynamics = load_anchor_dynamics(cfg, parse_task(cfg.task))  # only for COCOA's anchors
    inputs = prepare_run(cfg, dataset)
    env = env if env is not None else make_env(inputs.task, seed=cfg.seed)
    spec, device, data = inputs.spec, inputs.device, inputs.dataset
    setup = anchor_setup(cfg, inputs, sizes=ALGO.cocoa_sizes, dynamics=dynamics)
    hidden = cfg.hidden_dims or setup.backbone_dims or (256, 256)
    actor = TD3BCActor(build_encoder(spec.obs_dim, 0, setup.actor_encoder), hidden,
                       spec.action_dim, max_action=spec.max_action)
    critics = build_critics(spec, hidden, setup.critic_encoder, num_members=2)
    normalizer = (StateNormalizer.fit(data["observations"], eps=cfg.state_norm_eps)
                  if cfg.normalize_states else None)
    policy = TD3BCPolicy(
        actor, critics, actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, normalizer=normalizer,
        actor_anchor_fn=setup.actor_anchor_fn, critic_anchor_fn=setup.critic_anchor_fn,
        alpha=cfg.alpha, gamma=cfg.gamma, tau=cfg.tau, policy_noise=cfg.policy_noise,
        noise_clip=cfg.noise_clip, policy_freq=cfg.policy_freq, device=device)
    run = open_policy_run(cfg, inputs, policy,
                          algo=f"{ALGO.name}_cocoa" if cfg.use_cocoa else ALGO.name,
                          record={"cocoa": setup.record,
                                  "resolved": {"hidden_dims": list(hidden)}})
    trainer = MFPolicyTrainer(policy, env=env, **run.trainer_options())
    return train_policy(trainer, run)


if __name__ == "__main__":
    run_main(main, TD3BCConfig)
