"""A policy run's context: its inputs, replay buffer, run folder and logger; and its training.

A policy script reads, CORL-style, top to bottom:

    inputs = prepare_run(cfg, dataset)                  # threads, device, seed, data
    env = make_env(inputs.task, seed=cfg.seed)
    policy = CQLPolicy(actor, critics, ...)             # built in the script, explicitly
    run = open_policy_run(cfg, inputs, policy, algo="cql", record={...})
    trainer = MFPolicyTrainer(policy, env=env, **run.trainer_options())
    return train_policy(trainer, run)

`open_policy_run` creates the folder only once the policy is built, so a policy that cannot be
built (a wrong seeker file, say) leaves no run folder behind.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from offlinerlkit.anchor.build import AnchorSetup, build_anchor_setup
from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.config import CocoaOptions, CocoaSizes, RunConfig
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.run.setup import RunInputs, open_run
from offlinerlkit.utils.device import resolve_device
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.speed import apply_speed_options, step_context
from offlinerlkit.utils.tasks import TaskInfo

__all__ = ["RunContext", "anchor_setup", "load_anchor_dynamics", "open_policy_run",
           "train_policy"]


class Trainer(Protocol):
    """What `train_policy` needs of a policy trainer (`MFPolicyTrainer`, `MBPolicyTrainer`)."""

    num_timesteps: int

    def resume(self) -> Any: ...

    def train(self) -> Any: ...


@dataclass(frozen=True)
class RunContext:
    """An open policy run.

    Attributes:
        config: the run's configuration (resumed runs: the saved one).
        inputs: device, task, data and spec (`prepare_run`).
        buffer: the dataset's transitions on the device.
        run_dir: the run folder.
        logger: its logger (a context manager: `train_policy` opens and closes it).
    """

    config: RunConfig
    inputs: RunInputs
    buffer: ReplayBuffer
    run_dir: RunDir
    logger: Logger

    @property
    def resuming(self) -> bool:
        """Whether the run continues a stopped one (`--resume`)."""
        return bool(self.config.resume)

    def trainer_options(self) -> dict[str, Any]:
        """The trainer's keyword arguments that come from the run and its `RunConfig` (the
        script adds the policy, the evaluation env and any trainer-specific options)."""
        cfg, device = self.config, self.inputs.device
        return {"buffer": self.buffer, "logger": self.logger, "run_dir": self.run_dir,
                "task": self.inputs.task, "epochs": cfg.epoch,
                "step_per_epoch": cfg.step_per_epoch, "batch_size": cfg.batch_size,
                "eval_episodes": cfg.eval_episodes, "checkpoint_freq": cfg.checkpoint_freq,
                "keep_checkpoints": cfg.keep_checkpoints, "progress": cfg.progress,
                "step_context": lambda: step_context(cfg, device),
                "anchor_cache": bool(getattr(cfg, "anchor_cache", True))}


def anchor_setup(cfg: CocoaOptions, inputs: RunInputs, *, sizes: Optional[CocoaSizes],
                 dynamics: Optional[EnsembleDynamics]) -> AnchorSetup:
    """COCOA's anchor functions and encoder options for this run (`build_anchor_setup` on the
    run's task, spec, dataset states and device); plain encoders when COCOA is off.

    Args:
        cfg: the script's COCOA options.
        inputs: from `prepare_run`.
        sizes: the algorithm's COCOA default sizes (its registry entry's `cocoa_sizes`).
        dynamics: the forward dynamics of the rollout anchors (None without them).
    """
    return build_anchor_setup(cfg, sizes=sizes, task=inputs.task.name, spec=inputs.spec,
                              dynamics=dynamics, dataset_obs=inputs.dataset["observations"],
                              device=inputs.device)


def open_policy_run(cfg: RunConfig, inputs: RunInputs, policy: Any, *, algo: str,
                    tags: Optional[Mapping[str, object]] = None,
                    record: Optional[Mapping[str, Any]] = None) -> RunContext:
    """Apply the speed options to the built policy, load the buffer, open the run folder.

    Args:
        cfg: the run's configuration.
        inputs: from `prepare_run`.
        policy: the built policy (its networks are compiled when `cfg` asks).
        algo: the run folder's algorithm name (`cql`, `cql_cocoa`, ...).
        tags: options shown in the run folder's name.
        record: further `hyper_param.json` entries (COCOA set-up, resolved values).
    """
    apply_speed_options(policy, cfg, inputs.device)
    buffer = ReplayBuffer.from_transitions(inputs.dataset, device=inputs.device)
    run_dir, logger = open_run(cfg, algo=algo, tags=tags,
                               extra_record={**inputs.record(), **(record or {})},
                               warnings=inputs.warnings)
    return RunContext(cfg, inputs, buffer, run_dir, logger)


def train_policy(trainer: Trainer, run: RunContext) -> Path:
    """Train (a resumed run from its newest checkpoint, or from scratch without one); returns
    the run folder."""
    with run.logger:
        if run.resuming:
            trainer.resume()
            run.logger.rewind(trainer.num_timesteps, phase="policy")  # rows after it come again
        trainer.train()
    return run.run_dir.path


class AnchorDynamicsOptions(Protocol):
    """The options `load_anchor_dynamics` reads: `CocoaOptions.load_dynamics_path`,
    `CommonConfig.device` and `LoadedDynamicsSizes.check_dynamics_sizes`."""

    @property
    def load_dynamics_path(self) -> Optional[str]: ...

    @property
    def device(self) -> str: ...

    def check_dynamics_sizes(self, *, hidden_dims: Sequence[int], num_members: int,
                             num_elites: int, path: str) -> None: ...


def load_anchor_dynamics(cfg: AnchorDynamicsOptions, task: TaskInfo) -> Optional[EnsembleDynamics]:
    """The forward dynamics of a model-free COCOA run (CQL, IQL, TD3+BC), or None without them.

    `cfg` is a `CocoaOptions` + `LoadedDynamicsSizes` config: the dynamics come from
    `--load_dynamics_path` (used only for the anchor rollouts), and any of the original's size
    flags given (`-dhd`, `-ne`, `--n_elites`) must agree with the loaded file.
    """
    if not cfg.load_dynamics_path:
        return None
    from offlinerlkit.dynamics.io import load_dynamics

    path = cfg.load_dynamics_path
    dynamics = load_dynamics(path, task=task.name, obs_dim=task.obs_dim,
                             action_dim=task.action_dim, device=resolve_device(cfg.device))
    model = dynamics.model
    cfg.check_dynamics_sizes(hidden_dims=model.hidden_dims, num_members=model.num_members,
                             num_elites=model.num_elites, path=path)
    return dynamics
