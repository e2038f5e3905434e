"""The first steps of every run script: threads, device, seed, task, data; the run folder.

A script calls `prepare_run` before it builds anything (the seed is set there), builds its
networks from the returned `RunInputs`, then opens its run folder with `open_run` (or, for a
policy, `policy_run.open_policy_run`). Nothing here builds a model or calls back into the
script.
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from offlinerlkit.config import CommonConfig, config_warnings
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.device import configure_threads, resolve_device
from offlinerlkit.utils.errors import naming_path
from offlinerlkit.utils.fields import config_to_dict
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.memory import keep_freed_memory
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.run_record import software_versions
from offlinerlkit.utils.seeding import get_rng_state, set_rng_state, set_seed
from offlinerlkit.utils.tasks import TaskInfo, parse_task

__all__ = ["RunInputs", "clear_steps", "load_step", "load_task_data", "open_run", "prepare_run", "restart_stage",
           "save_step"]

#: A dataset transform applied before training (e.g. reward scaling).
Transform = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RunInputs:
    """What a run starts from, before anything is built.

    Attributes:
        device: the torch device of every network and buffer.
        task: the task's sizes, simulator and reference scores.
        dataset: the transition dict (checked, transformed).
        source: where the data came from (for the record).
        spec: sizes and action bound read from the data.
        warnings: accepted dataset anomalies, for the record.
    """

    device: torch.device
    task: TaskInfo
    dataset: Mapping[str, np.ndarray]
    source: str
    spec: EnvSpec
    warnings: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The `hyper_param.json` entries every run writes about its inputs."""
        return {"env_spec": dataclasses.asdict(self.spec), "dataset_source": self.source,
                "num_transitions": int(self.dataset["observations"].shape[0]),
                "device": str(self.device), "versions": software_versions()}


def load_task_data(task: str, dataset_path: Optional[str], *, accept_anomalies: bool = False
                   ) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """The task's transition dict, a description of where it came from (for the record) and
    the dataset anomalies accepted (`datasets.checks`; they raise unless `accept_anomalies`)."""
    from offlinerlkit.datasets import DatasetAnomalyError, find_dataset, load_from_source

    source = find_dataset(task, dataset_path=dataset_path)
    try:
        return load_from_source(source), source.description, []
    except DatasetAnomalyError as err:
        if not accept_anomalies:
            raise
        return (load_from_source(source, accept_anomalies=True), source.description,
                [f"dataset anomaly accepted: {p}" for p in err.problems])


def prepare_run(cfg: CommonConfig, dataset: Optional[Mapping[str, np.ndarray]] = None, *,
                transform: Optional[Transform] = None) -> RunInputs:
    """Memory, threads, device, task, seed and data, in this order.

    `set_seed(cfg.seed)` runs before any network is built. The dataset is the task's own unless
    one is given; either is checked for absurd values (`datasets.checks`, accepted with
    `cfg.accept_dataset_anomalies`); `transform` (e.g. reward scaling) is applied; its sizes
    must match the task.
    """
    keep_freed_memory()
    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    task = parse_task(cfg.task)
    set_seed(cfg.seed)
    accept = cfg.accept_dataset_anomalies
    if dataset is None:
        dataset, source, notes = load_task_data(cfg.task, cfg.dataset_path, accept_anomalies=accept)
    else:
        from offlinerlkit.datasets import check_dataset_values

        source = "given in memory"
        notes = [f"dataset anomaly accepted: {p}" for p in
                 check_dataset_values(dataset, source="the dataset given", accept=accept)]
    if transform is not None:
        dataset = transform(dataset)
    spec = EnvSpec.from_transitions(dataset)
    if (spec.obs_dim, spec.action_dim) != (task.obs_dim, task.action_dim):
        raise ValueError(f"the dataset has observation/action sizes {spec.obs_dim}/{spec.action_dim} "
                         f"but {task.name} has {task.obs_dim}/{task.action_dim}; pass the task's data")
    return RunInputs(device, task, dataset, source, spec, tuple(notes))


def open_run(config: CommonConfig, *, algo: str, tags: Mapping[str, object] | None = None,
             extra_record: Mapping[str, Any] | None = None,
             warnings: Sequence[str] = ()) -> tuple[RunDir, Logger]:
    """Create (or, with `config.resume`, reopen) the run directory and its logger.

    A new run writes `record/hyper_param.json` with the full configuration under `config`,
    the task's data, simulator and reference scores under `task_info` (`TaskInfo.record`), plus
    `extra_record` (derived sizes, data source, versions) and `warnings`: the values that change
    what the run means (`config_warnings`, plus `warnings`, e.g. accepted dataset anomalies),
    each also printed as a `WARNING:` line. A resumed run keeps its file.
    """
    resume = getattr(config, "resume", None)
    if resume:
        run_dir = RunDir.open(resume)
    else:
        run_dir = RunDir.create(config.log_dir, task=config.task,
                                algo=config.algo_name or algo, seed=config.seed, tags=tags)
    wandb = None
    if config.track:
        wandb = {"project": config.wandb_project_name, "entity": config.wandb_entity,
                 "tags": list(config.wandb_tags), "name": run_dir.path.name,
                 "config": config_to_dict(config)}
    logger = Logger(run_dir, backends=("console", "csv", "tensorboard") + (("wandb",) if wandb else ()),
                    wandb=wandb, lock=True)
    notes = config_warnings(config) + list(warnings)
    if not resume:
        try:
            logger.write_hyper_params({"config": config_to_dict(config),
                                       "task_info": parse_task(config.task).record(),
                                       **(extra_record or {}),
                                       **({"warnings": notes} if notes else {})})
        except BaseException:  # e.g. a full disk: leave no empty run folder behind
            logger.close()
            shutil.rmtree(run_dir.path, ignore_errors=True)
            raise
    logger.info(f"run directory: {run_dir.path}")
    for note in notes:
        logger.info(f"WARNING: {note}")
    return run_dir, logger


def restart_stage(run_dir: RunDir, logger: Logger, *, final: Path, phases: Sequence[str]) -> bool:
    """`--resume` of an artifact stage (dynamics, anchor seeker) in its stopped folder, with the
    saved options and seed. Its temporary files and the rows of `phases` (the steps that run
    again from their start) are dropped; the stage itself continues what it saved (a dynamics
    fit's state, `save_step` files), so the numbers are an uninterrupted run's. Returns False
    when the run had finished (`final` exists: nothing to do)."""
    from offlinerlkit.utils.checkpoint import remove_stale_temporaries

    if final.is_file():
        logger.info(f"{run_dir.path} has finished: {final} exists")
        return False
    for folder in [run_dir.path, *run_dir.path.iterdir()]:
        remove_stale_temporaries(folder)
    for phase in phases:
        logger.rewind(-1, phase=phase)
    logger.info(f"{run_dir.path}: resuming the stopped stage (finished steps are reused)")
    return True


def _step_file(run_dir: RunDir, step: str) -> Path:
    return run_dir.checkpoint / f"after_{step}.pt"


def save_step(run_dir: RunDir, step: str, tensors: Optional[Mapping[str, Any]] = None) -> Path:
    """Mark `step` of a stage done: the global random state now (and `tensors`) go to
    `<run>/checkpoint/after_<step>.pt`, so a resumed stage can skip the step (`load_step`)."""
    state = {"rng": get_rng_state(), **(tensors or {})}
    return atomic_write(_step_file(run_dir, step), lambda f: torch.save(state, f))


def clear_steps(run_dir: RunDir) -> None:
    """Remove the `save_step` files of a stage that has finished (they only serve a resume)."""
    for path in run_dir.checkpoint.glob("after_*.pt"):
        path.unlink(missing_ok=True)


def load_step(run_dir: RunDir, step: str) -> Optional[dict[str, Any]]:
    """What `save_step` stored for `step`, with the global random state put back as it was
    then; None when the step did not finish."""
    path = _step_file(run_dir, step)
    if not path.is_file():
        return None
    with naming_path(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
    set_rng_state(state["rng"])
    return state
