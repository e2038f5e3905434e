"""Train a forward or reverse dynamics ensemble on a D4RL task and save it to `<run>/model/`.

    python run_example/run_dynamics.py --task hopper-medium-v2
    python run_example/run_dynamics.py --task hopper-medium-v2 --direction reverse --holdout_ratio 0.1

The forward model `(s, a) -> (s' - s, r)` serves MOPO/MOBILE rollouts and COCOA's anchors
(`--load_dynamics_path <run>/model`); the reverse model `(s', a) -> s - s'` serves the anchor
seeker's reverse rollouts. `run_mopo.py`/`run_mobile.py` without `--load_dynamics_path` train the
same forward model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from offlinerlkit.config import CommonConfig, DynamicsOptions
from offlinerlkit.dynamics.termination_fns import get_termination_fn
from offlinerlkit.dynamics.training import build_dynamics, train_dynamics
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.cli import opt, parse_config
from offlinerlkit.utils.experiment import (
    configure_threads,
    load_task_data,
    open_run,
    resolve_device,
    software_versions,
)
from offlinerlkit.utils.seeding import set_seed
from offlinerlkit.utils.tasks import parse_task


@dataclass(frozen=True)
class DynamicsRunConfig(CommonConfig, DynamicsOptions):
    """Train a dynamics ensemble (forward or reverse) on a D4RL task."""

    direction: Literal["forward", "reverse"] = opt("forward", "which model: forward or reverse")


def main(cfg: DynamicsRunConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """Train and save the dynamics; returns the run directory."""
    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    task = parse_task(cfg.task)
    set_seed(cfg.seed)
    source = "given in memory"
    if dataset is None:
        dataset, source = load_task_data(cfg.task, cfg.dataset_path)
    spec = EnvSpec.from_transitions(dataset)
    termination_fn = get_termination_fn(task.name) if cfg.direction == "forward" else None
    dynamics = build_dynamics(cfg, spec, direction=cfg.direction, termination_fn=termination_fn,
                              device=device)
    algo = "dynamics" if cfg.direction == "forward" else "reverse_dynamics"
    run_dir, logger = open_run(cfg, algo=algo, extra_record={
        "env_spec": dataclasses.asdict(spec), "dataset_source": source,
        "num_transitions": int(dataset["observations"].shape[0]), "device": str(device),
        "versions": software_versions()})
    with logger:
        train_dynamics(dynamics, dataset, options=cfg, run_dir=run_dir, logger=logger,
                       task=task.name, metadata={"dataset_source": source},
                       progress=cfg.progress)
    return run_dir.path


if __name__ == "__main__":
    main(parse_config(DynamicsRunConfig))
