"""Conservative Q-learning (CQL) on a D4RL task.

    python run_example/run_cql.py --task hopper-medium-v2 --seed 0

cql_weight=5.0 and temperature=1.0 for all D4RL-Gym tasks (the original's defaults).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch

from offlinerlkit.config import RunConfig, SACOptions
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.policy.cql import CQLPolicy
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.cli import opt, parse_config
from offlinerlkit.utils.experiment import resume_config, run_policy_training


@dataclass(frozen=True)
class CQLConfig(RunConfig, SACOptions):
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


def main(cfg: CQLConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None,
         env: Any = None) -> Path:
    """Train CQL; returns the run directory. `dataset`/`env` replace the task's own (tests)."""
    if cfg.resume:
        cfg = resume_config(cfg)
    hidden = cfg.hidden_dims or (256, 256, 256)
    auto_alpha = True if cfg.auto_alpha is None else cfg.auto_alpha

    def build(spec: EnvSpec, device: torch.device) -> CQLPolicy:
        actor = build_tanh_actor(spec, hidden, layernorm=cfg.layernorm)
        critics = build_critics(spec, hidden, num_members=2, layernorm=cfg.layernorm)
        return CQLPolicy(
            actor, critics, **cfg.sac_kwargs(auto_alpha), cql_weight=cfg.cql_weight,
            temperature=cfg.temperature, max_q_backup=cfg.max_q_backup,
            deterministic_backup=cfg.deterministic_backup, with_lagrange=cfg.with_lagrange,
            lagrange_threshold=cfg.lagrange_threshold, cql_alpha_lr=cfg.cql_alpha_lr,
            num_repeat_actions=cfg.num_repeat_actions, cql_lse_mode=cfg.cql_lse_mode,
            device=device)

    return run_policy_training(cfg, algo="cql", build_policy=build, dataset=dataset, env=env,
                               extra_record={"resolved": {"hidden_dims": list(hidden),
                                                          "auto_alpha": auto_alpha}})


if __name__ == "__main__":
    main(parse_config(CQLConfig))
