"""Set-up steps every run script shares: device, seeding, data, environment, run directory.

These helpers take explicit arguments (a script passes its config's fields); they exist so the
scripts stay a config plus a short `main` without repeating the same twenty lines.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Protocol, TypeVar

import numpy as np
import torch

from offlinerlkit.config import CommonConfig, RunConfig, config_warnings
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.cli import config_to_dict
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.memory import keep_freed_memory
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.run_record import software_versions
from offlinerlkit.utils.speed import apply_speed_options, step_context
from offlinerlkit.utils.tasks import TaskInfo

if TYPE_CHECKING:
    from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics

log = logging.getLogger(__name__)

C = TypeVar("C", bound=RunConfig)



def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when available, else CPU; anything else is checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = "auto, cpu" + (", cuda, cuda:<index>" if torch.cuda.is_available() else "") + (
        ", mps" if torch.backends.mps.is_available() else "")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use one of: {valid}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for CUDA, but torch sees no GPU here; "
                         f"use one of: {valid}")
    if device.type not in ("cpu", "cuda", "mps") or (
            device.type == "mps" and not torch.backends.mps.is_available()):
        raise ValueError(f"--device {name} is not available here; use one of: {valid}")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s) here "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def configure_threads(threads: Optional[int]) -> None:
    """Limit torch's intra-op CPU threads when asked (the original set OMP_NUM_THREADS=1).

    Also keeps freed large blocks in the process (`utils.memory.keep_freed_memory`).
    """
    keep_freed_memory()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


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
    from offlinerlkit.utils.tasks import parse_task

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


class PreparedRun(NamedTuple):
    """What `prepare_run` returns."""

    device: torch.device
    task: TaskInfo
    dataset: Mapping[str, np.ndarray]
    source: str
    spec: EnvSpec
    warnings: list[str]


class AnchorDynamicsConfig(Protocol):
    """What `load_anchor_dynamics` reads: `CocoaOptions.load_dynamics_path`,
    `CommonConfig.device` and `LoadedDynamicsSizes.check_dynamics_sizes`."""

    load_dynamics_path: Optional[str]
    device: str

    def check_dynamics_sizes(self, *, hidden_dims: Sequence[int], num_members: int,
                             num_elites: int, path: str) -> None:
        ...


def prepare_run(
    cfg: CommonConfig,
    dataset: Optional[Mapping[str, np.ndarray]],
    *,
    transform: Optional[Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]] = None,
) -> PreparedRun:
    """The first steps of every script: threads, device, task, seed, data.

    `set_seed(cfg.seed)` runs before any network is built. The dataset is the task's own unless
    one is given; either is checked for absurd values (`datasets.checks`, accepted with
    `cfg.accept_dataset_anomalies`); `transform` (e.g. reward scaling) is applied; its sizes
    must match the task.

    Returns:
        (device, task info, dataset, a description of the data source, env spec, warnings for
        the record).
    """
    from offlinerlkit.utils.seeding import set_seed
    from offlinerlkit.utils.tasks import parse_task

    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    task = parse_task(cfg.task)
    set_seed(cfg.seed)
    accept = bool(getattr(cfg, "accept_dataset_anomalies", False))
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
    return PreparedRun(device, task, dataset, source, spec, notes)


def run_policy_training(
    cfg: RunConfig,
    *,
    algo: str,
    build_policy: Callable[[EnvSpec, torch.device, Mapping[str, np.ndarray]],
                           tuple[Any, Mapping[str, Any]]],
    dataset: Optional[Mapping[str, np.ndarray]] = None,
    env: Any = None,
    transform: Optional[Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]] = None,
    trainer_cls: Optional[type] = None,
    trainer_kwargs: Optional[Mapping[str, Any]] = None,
    tags: Optional[Mapping[str, object]] = None,
    extra_record: Optional[Mapping[str, Any]] = None,
) -> Path:
    """The body every policy script shares: seed, data, env, policy, run directory, train.

    Order: threads and device, `set_seed(cfg.seed)` (before any network is built), the dataset
    (the task's own unless `dataset` is given; `transform` applied, e.g. reward scaling), the
    evaluation env (seeded once), `build_policy(spec, device, dataset) -> (policy, record)`
    (`record` goes into `hyper_param.json`), the run directory and logger, the trainer
    (`trainer_cls`, default `MFPolicyTrainer`), resume when `cfg.resume`, training.

    Returns:
        The run directory.
    """
    from offlinerlkit.buffer.replay_buffer import ReplayBuffer
    from offlinerlkit.envs import make_env
    from offlinerlkit.policy_trainer.mf import MFPolicyTrainer

    device, task, dataset, source, spec, notes = prepare_run(cfg, dataset, transform=transform)
    env = env if env is not None else make_env(task, seed=cfg.seed)
    policy, policy_record = build_policy(spec, device, dataset)
    apply_speed_options(policy, cfg, device)
    buffer = ReplayBuffer.from_transitions(dataset, device=device)
    run_dir, logger = open_run(cfg, algo=algo, tags=tags, extra_record={
        "env_spec": dataclasses.asdict(spec), "dataset_source": source,
        "num_transitions": len(buffer), "device": str(device), "versions": software_versions(),
        **(extra_record or {}), **policy_record}, warnings=notes)
    trainer = (trainer_cls or MFPolicyTrainer)(
        policy, buffer=buffer, logger=logger, run_dir=run_dir, env=env, task=task,
        epochs=cfg.epoch, step_per_epoch=cfg.step_per_epoch, batch_size=cfg.batch_size,
        eval_episodes=cfg.eval_episodes, checkpoint_freq=cfg.checkpoint_freq,
        keep_checkpoints=cfg.keep_checkpoints, progress=cfg.progress,
        step_context=lambda: step_context(cfg, device),
        anchor_cache=bool(getattr(cfg, "anchor_cache", True)), **(trainer_kwargs or {}))
    with logger:
        if cfg.resume:
            trainer.resume()  # from the newest checkpoint, or from scratch without one
            logger.rewind(trainer.num_timesteps, phase="policy")  # rows after it come again
        trainer.train()
    return run_dir.path


def load_anchor_dynamics(cfg: AnchorDynamicsConfig, task: TaskInfo) -> Optional[EnsembleDynamics]:
    """The forward dynamics of a model-free COCOA run (CQL, IQL), or None without them.

    `cfg` is a `CocoaOptions` + `LoadedDynamicsSizes` config: the dynamics come from
    `--load_dynamics_path` (used only for the anchor rollouts), and any of the original's size
    flags given (`-dhd`, `-ne`, `--n_elites`) must agree with the loaded file.
    """
    if not cfg.load_dynamics_path:
        return None
    from offlinerlkit.dynamics.io import load_dynamics

    dynamics = load_dynamics(cfg.load_dynamics_path, task=task.name, obs_dim=task.obs_dim,
                             action_dim=task.action_dim, device=resolve_device(cfg.device))
    model = dynamics.model
    cfg.check_dynamics_sizes(hidden_dims=model.hidden_dims, num_members=model.num_members,
                             num_elites=model.num_elites, path=cfg.load_dynamics_path)
    return dynamics


def run_dynamics_training(
    cfg: CommonConfig,
    *,
    algo: str,
    direction: str = "forward",
    dataset: Optional[Mapping[str, np.ndarray]] = None,
    tags: Optional[Mapping[str, object]] = None,
) -> Path:
    """Train a dynamics ensemble in a new run directory (`cfg`: `CommonConfig` + `DynamicsOptions`).

    Used by `run_dynamics.py` and by `run_mopo.py`/`run_mobile.py` without
    `--load_dynamics_path`, which train the forward model, save it to `model/` and stop.
    """
    from offlinerlkit.dynamics.io import FILE_NAMES
    from offlinerlkit.dynamics.termination_fns import get_termination_fn
    from offlinerlkit.dynamics.training import build_dynamics, train_dynamics

    device, task, dataset, source, spec, notes = prepare_run(cfg, dataset)
    termination_fn = get_termination_fn(task) if direction == "forward" else None
    dynamics = build_dynamics(cfg, spec, direction=direction,  # type: ignore[arg-type]
                              termination_fn=termination_fn, device=device)
    run_dir, logger = open_run(cfg, algo=algo, tags=tags, extra_record={
        "stage": f"{direction} dynamics", "env_spec": dataclasses.asdict(spec),
        "dataset_source": source, "num_transitions": int(dataset["observations"].shape[0]),
        "device": str(device), "versions": software_versions()}, warnings=notes)
    with logger:
        if getattr(cfg, "resume", None) and not restart_stage(
                run_dir, logger, final=run_dir.model / FILE_NAMES[direction],
                phases=["dynamics" if direction == "forward" else "reverse_dynamics"]):
            return run_dir.path
        train_dynamics(dynamics, dataset, options=cfg, run_dir=run_dir, logger=logger,
                       task=task.name, metadata={"dataset_source": source}, progress=cfg.progress)
        logger.info(f"load these dynamics with --load_dynamics_path {run_dir.model}")
    return run_dir.path



def restart_stage(run_dir: RunDir, logger: Logger, *, final: Path, phases: Sequence[str]) -> bool:
    """`--resume` of a stage that keeps no resumable state (dynamics, anchor seeker): it
    restarts from the beginning in the same folder with the saved options (the same seed gives
    the same result). The stopped run's rows of `phases` and its temporary files are dropped
    first. Returns False when the run had finished (`final` exists: nothing to do)."""
    from offlinerlkit.utils.checkpoint import remove_stale_temporaries

    if final.is_file():
        logger.info(f"{run_dir.path} has finished: {final} exists")
        return False
    for folder in [run_dir.path, *run_dir.path.iterdir()]:
        remove_stale_temporaries(folder)
    for phase in phases:
        logger.rewind(-1, phase=phase)
    logger.info(f"{run_dir.path}: the stage restarts from its beginning (it keeps no resumable "
                "state); the stopped run's rows were dropped")
    return True
