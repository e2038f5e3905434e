"""Train a forward or reverse dynamics ensemble on a D4RL task and save it to `<run>/model/`.

    python run_example/run_dynamics.py --task hopper-medium-v2
    python run_example/run_dynamics.py --task hopper-medium-v2 --direction reverse --holdout_ratio 0.1

The forward model `(s, a) -> (s' - s, r)` serves MOPO/MOBILE rollouts and COCOA's anchors
(`--load_dynamics_path <run>/model`); the reverse model `(s', a) -> s - s'` serves the anchor
seeker's reverse rollouts. `run_mopo.py`/`run_mobile.py` without `--load_dynamics_path` train the
same forward model.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from offlinerlkit.config import CommonConfig, DynamicsOptions
from offlinerlkit.run import run_dynamics_training
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.resume import resumed_config


@dataclass(frozen=True)
class DynamicsRunConfig(CommonConfig, DynamicsOptions):
    """Train a dynamics ensemble (forward or reverse) on a D4RL task."""

    direction: Literal["forward", "reverse"] = opt("forward", "which model: forward or reverse")
    resume: Optional[str] = opt(None, "run this stopped run folder again with its saved options "
                                      "(the fit continues after its last finished epoch)")


def main(cfg: DynamicsRunConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """Train and save the dynamics; returns the run directory."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    algo = "dynamics" if cfg.direction == "forward" else "reverse_dynamics"
    return run_dynamics_training(cfg, algo=algo, direction=cfg.direction,
                                 dataset=dataset)


if __name__ == "__main__":
    run_main(main, DynamicsRunConfig)
