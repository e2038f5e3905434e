"""Conservative Q-learning (CQL) on a D4RL task, alone or with COCOA.

    python run_example/run_cql.py --task hopper-medium-v2 --seed 0
    python run_example/run_cql.py --task hopper-medium-v2 --load_dynamics_path <dynamics run>/model \
        --load_anchor_seeker_path <seeker run>/model --actor_horizon_len 1 --critic_horizon_len 1

cql_weight=5.0 and temperature=1.0 for all D4RL-Gym tasks (the original's defaults).
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
    LoadedDynamicsSizes,
    RunConfig,
    SACOptions,
    check_ranges,
)
from offlinerlkit.envs import make_env
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.policy.cql import CQLPolicy
from offlinerlkit.policy.sac import SACHyperparams
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
class CQLConfig(RunConfig, SACOptions, CocoaOptions, LoadedDynamicsSizes):
    """CQL (OfflineRL-Kit defaults; spec 9.3)."""

    cql_weight: float = opt(5.0, "weight of the conservative term")
    temperature: float = opt(1.0, "log-sum-exp temperature")
    max_q_backup: bool = opt(False, "max over 10 sampled next actions in the target")
    deterministic_backup: bool = opt(True, "no entropy term in the target")
    with_lagrange: bool = opt(False, "tune the conservative weight with a Lagrange multiplier")
    lagrange_threshold: float = opt(10.0, "Lagrange threshold")
    cql_alpha_lr: float = opt(3e-4, "learning rate of the Lagrange multiplier")
    num_repeat_actions: int = opt(10, "sampled actions per state in the conservative term")
    cql_lse_mode: Literal["per_row", "per_state"] = opt(
        "per_row", "log-sum-exp over the 3 values of each repeated row (faithful) or over the "
        "3R values of each state (corrected); see docs/FIDELITY.md")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, non_negative=("cql_weight",), positive=("temperature", "cql_alpha_lr"),
                     count=("num_repeat_actions",))


#: This script's registry entry (COCOA sizes, presets).
ALGO = algorithm("cql")


def main(cfg: CQLConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train CQL; returns the run directory. `dataset`/`env` replace the task's own (tests)."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    auto_alpha = True if cfg.auto_alpha is None else cfg.auto_alpha
    dynamics = load_anchor_dynamics(cfg, parse_task(cfg.task))  # only for COCOA's anchors
    inputs = prepare_run(cfg, dataset)
    env = env if env is not None else make_env(inputs.task, seed=cfg.seed)
    spec, device = inputs.spec, inputs.device
    setup = anchor_setup(cfg, inputs, sizes=ALGO.cocoa_sizes, dynamics=dynamics)
    hidden = cfg.hidden_dims or setup.backbone_dims or (256, 256, 256)
    actor = build_tanh_actor(spec, hidden, setup.actor_encoder, layernorm=cfg.layernorm)
    critics = build_critics(spec, hidden, setup.critic_encoder, num_members=2,
                            layernorm=cfg.layernorm)
    policy = CQLPolicy(
        actor, critics, hp=SACHyperparams(**cfg.sac_kwargs(auto_alpha)), cql_weight=cfg.cql_weight,
        temperature=cfg.temperature, max_q_backup=cfg.max_q_backup,
        deterministic_backup=cfg.deterministic_backup, with_lagrange=cfg.with_lagrange,
        lagrange_threshold=cfg.lagrange_threshold, cql_alpha_lr=cfg.cql_alpha_lr,
        num_repeat_actions=cfg.num_repeat_actions, cql_lse_mode=cfg.cql_lse_mode,
        actor_anchor_fn=setup.actor_anchor_fn, critic_anchor_fn=setup.critic_anchor_fn,
        device=device)
    run = open_policy_run(cfg, inputs, policy, algo="cql_cocoa" if cfg.use_cocoa else "cql",
                          record={"cocoa": setup.record, "resolved": {
                              "hidden_dims": list(hidden), "auto_alpha": auto_alpha}})
    trainer = MFPolicyTrainer(policy, env=env, **run.trainer_options())
    return train_policy(trainer, run)


if __name__ == "__main__":
    run_main(main, CQLConfig)
