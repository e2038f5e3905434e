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
import torch

from offlinerlkit.config import RunConfig, check_ranges
from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.nets.mlp import MLP
from offlinerlkit.policy.bc import BCPolicy
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.cli import opt
from offlinerlkit.utils.errors import run_main
from offlinerlkit.utils.experiment import run_policy_training
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

    def build(spec: EnvSpec, device: torch.device, data: Mapping[str, np.ndarray]
              ) -> tuple[BCPolicy, dict[str, Any]]:
        actor = DeterministicActor(MLP(spec.obs_dim, cfg.hidden_dims), spec.action_dim,
                                   max_action=spec.max_action)
        return BCPolicy(actor, actor_lr=cfg.actor_lr, device=device), {}

    return run_policy_training(cfg, algo="bc", build_policy=build, dataset=dataset, env=env)


if __name__ == "__main__":
    run_main(main, BCConfig)
