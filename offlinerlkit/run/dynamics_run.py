"""The dynamics stage: train a forward or reverse ensemble in a new run folder.

Used by `run_dynamics.py`, and by `run_mopo.py`/`run_mobile.py` without `--load_dynamics_path`
(they train the forward model, save it to `model/` and stop).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from offlinerlkit.config import CommonConfig, DynamicsOptions
from offlinerlkit.dynamics.io import FILE_NAMES
from offlinerlkit.dynamics.termination_fns import get_termination_fn
from offlinerlkit.dynamics.training import build_dynamics, train_dynamics
from offlinerlkit.run.setup import open_run, prepare_run, restart_stage

__all__ = ["run_dynamics_training"]


def run_dynamics_training(cfg: CommonConfig, *, algo: str,
                          direction: Literal["forward", "reverse"] = "forward",
                          dataset: Optional[Mapping[str, np.ndarray]] = None,
                          tags: Optional[Mapping[str, object]] = None) -> Path:
    """Train a dynamics ensemble in a new run folder (or continue a stopped one with
    `cfg.resume`, from its last epoch); returns the run folder.

    Args:
        cfg: a script config that is a `CommonConfig` and a `DynamicsOptions` (checked); its
            `resume`, when it has one, continues that run folder.
        algo: the run folder's algorithm name.
        direction: `forward` `(s, a) -> (s' - s, r)` or `reverse` `(s', a) -> s - s'`.
        dataset: replaces the task's own data (tests).
        tags: options shown in the run folder's name.
    """
    if not isinstance(cfg, DynamicsOptions):
        raise TypeError(f"{type(cfg).__name__} has no dynamics options (DynamicsOptions)")
    inputs = prepare_run(cfg, dataset)
    termination_fn = get_termination_fn(inputs.task) if direction == "forward" else None
    dynamics = build_dynamics(cfg, inputs.spec, direction=direction,
                              termination_fn=termination_fn, device=inputs.device)
    run_dir, logger = open_run(cfg, algo=algo, tags=tags, extra_record={
        "stage": f"{direction} dynamics", **inputs.record()}, warnings=inputs.warnings)
    with logger:
        if getattr(cfg, "resume", None) and not restart_stage(
                run_dir, logger, final=run_dir.model / FILE_NAMES[direction],
                phases=[]):  # train_dynamics continues its saved fit state
            return run_dir.path
        train_dynamics(dynamics, inputs.dataset, options=cfg, run_dir=run_dir, logger=logger,
                       task=inputs.task.name, metadata={"dataset_source": inputs.source},
                       progress=cfg.progress, resume=bool(getattr(cfg, "resume", None)))
        logger.info(f"load these dynamics with --load_dynamics_path {run_dir.model}")
    return run_dir.path
