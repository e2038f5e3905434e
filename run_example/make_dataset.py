"""Make D4RL-protocol datasets locally ("replicas") in gymnasium's -v4 MuJoCo simulators.

    python run_example/make_dataset.py --robot hopper                      # all five levels, 1M
    python run_example/make_dataset.py --robot hopper --train_steps 60000 --num_samples 50000 \
        --out_dir data/replica
    python run_example/make_dataset.py --policy data/replica/policies/hopper/expert.pt \
        --num_samples 200000 --seed 1 --out_dir data/replica_more      # more data, no training

Levels follow D4RL (shared/spec/DATA.md): random = a randomly initialised policy; expert = online
SAC trained to completion (--train_steps); medium = the SAC snapshot closest to one third of the
expert's return; medium-replay = SAC's replay buffer up to that snapshot; medium-expert = medium
then expert. Behaviour policies are sampled stochastically in --num_envs simulators at once.

Outputs, in --out_dir (default $COCOA_REPLICA_DIR, else ~/.cocoa/replica):

    <robot>_<level>-v2-replica.hdf5          e.g. hopper_medium_replay-v2-replica.hdf5
    policies/<robot>/{random,medium,expert}.pt  behaviour policies (--policy samples from one)
    logs/replica-<robot>/online_sac/seed_<k>_<time>/  the SAC run (hyper_param.json, CSV, TB)

Train on a replica with the task prefix `replica:`, e.g. `--task replica:hopper-medium-v2`.
With `--format minari` each level is also written as a Minari dataset in the Minari store
($MINARI_DATASETS_PATH, else ~/.minari/datasets), `cocoa-replica/<robot>/<level>-v0`, with its
simulator and D4RL's reference returns: `--task minari:cocoa-replica/hopper/medium-v0`.
Existing files are never replaced without --overwrite.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from offlinerlkit.datasets.replica import (
    REPLICA_LEVELS,
    replica_dataset_dir,
    split_replica_task,
)
from offlinerlkit.replica import (
    LevelResult,
    ReplicaResult,
    SACTrainOptions,
    make_replica,
    sample_from_policy,
)
from offlinerlkit.replica.from_policies import make_from_policies
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.device import configure_threads, resolve_device
from offlinerlkit.utils.fileio import new_files_removed_on_error
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.memory import keep_freed_memory
from offlinerlkit.utils.resume import resumed_config
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.run_record import code_commit, software_versions
from offlinerlkit.utils.seeding import set_seed
from offlinerlkit.utils.tasks import ROBOTS, parse_task


@dataclass(frozen=True)
class _Target:
    """What to make (the first options of `MakeDatasetConfig`, so `--help` and recorded
    commands begin with them)."""

    robot: Optional[str] = opt(None, "hopper, halfcheetah or walker2d")
    task: Optional[str] = opt(None, "instead of --robot: any task of the robot, e.g. "
                                    "hopper-medium-v2 or replica:hopper-medium-v2")
    levels: Optional[tuple[str, ...]] = opt(None, "levels to make (default: all five; with "
                                                  "--policies all but medium-replay)")


@dataclass(frozen=True)
class MakeDatasetConfig(SACTrainOptions, _Target):
    """Make D4RL-protocol replica datasets (online SAC + sampling) for one robot (the SAC
    options are `SACTrainOptions`' fields, declared once in `offlinerlkit.replica`)."""

    num_samples: int = opt(1_000_000, "rows of the random, medium and expert datasets (D4RL: 1M)")
    seed: int = opt(0, "seed of everything (torch, numpy, simulators; see online.py)")
    out_dir: Optional[str] = opt(None, "replica folder (default: $COCOA_REPLICA_DIR or "
                                       "~/.cocoa/replica)")
    policies: Optional[str] = opt(None, "sample from saved behaviour policies instead of training: "
                                        "'shipped' (the package's D4RL-strength policies) or a "
                                        "folder with policies/<robot>/<level>.pt; medium-replay "
                                        "then re-runs SAC up to the medium step")
    policy: Optional[str] = opt(None, "sample --num_samples rows from this saved behaviour policy "
                                      "(policies/<robot>/<level>.pt) instead of training; the "
                                      "file is named after the policy's level (--levels unused)")
    overwrite: bool = opt(False, "replace existing datasets and policies")
    format: Literal["hdf5", "minari"] = opt("hdf5", "hdf5: replica HDF5 files; minari: those and "
                                            "each level as a Minari dataset too")
    num_envs: int = opt(8, "simulators stepped together when sampling")
    device: str = opt("auto", "torch device: auto, cpu, cuda, ...")
    threads: Optional[int] = opt(1, "torch CPU threads (1: these small networks gain little from "
                                     "more, and lose much when another process is busy)")
    progress: bool = opt(True, "show progress bars")
    max_episode_steps: Optional[int] = opt(None, "cut episodes earlier than 1000 steps (tests)")
    log_dir: Optional[str] = opt(None, "where the SAC run's log goes (default: <out_dir>/logs)")
    checkpoint_every: int = opt(25_000, "SAC steps between resumable checkpoints (a multiple of "
                                        "--eval_every; 0: none)")
    resume: Optional[str] = opt(None, "continue the stopped run of this SAC run folder "
                                      "(<out_dir>/logs/replica-<robot>/online_sac/seed_<k>_<time>) "
                                      "with its saved options; only --threads, --device and "
                                      "--progress may be given with it")

    def __post_init__(self) -> None:
        if self.resume is not None:
            return  # the saved options are checked when the run was started
        if self.policy is None and (self.robot is None) == (self.task is None):
            raise ValueError("give exactly one of --robot and --task (or --policy)")
        if self.policy is not None and self.policies is not None:
            raise ValueError("give --policy (one file) or --policies (a set), not both")
        unknown = [lv for lv in self.levels or () if lv not in REPLICA_LEVELS]
        if unknown:
            raise ValueError(f"--levels: unknown {unknown}; choose from {list(REPLICA_LEVELS)}")
        for name in ("train_steps", "num_samples", "num_envs", "batch_size", "eval_every",
                     "eval_episodes", "final_eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")

    @property
    def resolved_levels(self) -> tuple[str, ...]:
        """--levels, or its default: all five, or all but medium-replay with --policies."""
        if self.levels is not None:
            return self.levels
        if self.policies is not None:
            return tuple(lv for lv in REPLICA_LEVELS if lv != "medium-replay")
        return REPLICA_LEVELS

    @property
    def resolved_robot(self) -> Optional[str]:
        """The robot of --robot or --task (None with --policy alone)."""
        if self.robot is not None:
            if self.robot not in ROBOTS:
                raise ValueError(f"--robot must be one of {sorted(ROBOTS)}, got {self.robot!r}")
            return self.robot
        if self.task is not None:
            return parse_task(split_replica_task(self.task)[1]).robot
        return None


def _summary(results: dict[str, LevelResult]) -> str:
    lines = [f"{'level':<14}{'rows':>9}{'episodes':>10}{'return':>10}{'norm':>7}"
             f"{'eval':>10}{'norm':>7}{'step':>9}{'sec':>8}  file"]
    for r in results.values():
        ev = "" if r.eval_return is None else f"{r.eval_return:10.1f}{r.eval_normalized:7.1f}"
        ev = ev or f"{'-':>10}{'-':>7}"
        lines.append(f"{r.level:<14}{r.num_rows:>9}{r.num_episodes:>10}{r.behaviour_return:10.1f}"
                     f"{r.behaviour_normalized:7.1f}{ev}{r.policy_step:>9}{r.seconds:8.1f}  "
                     f"{r.path}")
    return "\n".join(lines)


def main(cfg: MakeDatasetConfig) -> ReplicaResult:
    """Make the datasets (or sample from `cfg.policy`); returns what was written."""
    if cfg.resume is not None:
        cfg = resumed_config(cfg)
    keep_freed_memory()
    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else replica_dataset_dir()
    started = time.perf_counter()
    robot = cfg.resolved_robot or "*"
    with new_files_removed_on_error(out_dir, (f"{robot}_*-replica.hdf5", f"policies/{robot}/*.pt")):
        result = _make(cfg, out_dir, device)  # a failed command leaves no outputs behind

    total = time.perf_counter() - started
    result.timings["total"] = total
    print(f"\ncocoa-rl replica datasets for {result.robot} (locally made, not D4RL) in {out_dir}")
    print(_summary(result.levels))
    if result.expert_return is not None:
        print(f"expert return {result.expert_return:.1f}; medium snapshot at step "
              f"{result.medium_step}")
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    for lv, path in result.policy_paths.items():
        print(f"policy {lv}: {path}")
    if cfg.format == "minari":
        from offlinerlkit.datasets.minari_writer import export_replica_to_minari

        for level in result.levels.values():
            dataset_id, folder = export_replica_to_minari(level.path, robot=level.robot,
                                                          level=level.level, overwrite=cfg.overwrite)
            print(f"Minari dataset {dataset_id}: {folder} (--task minari:{dataset_id})")
    return result


def _make(cfg: MakeDatasetConfig, out_dir: Path, device: torch.device) -> ReplicaResult:
    """The datasets of `main`: from one policy, from saved policies, or SAC and all levels."""
    if cfg.policy is not None:
        level = sample_from_policy(
            cfg.policy, out_dir=out_dir, seed=cfg.seed, num_samples=cfg.num_samples,
            num_envs=cfg.num_envs, max_episode_steps=cfg.max_episode_steps,
            eval_episodes=cfg.final_eval_episodes, device=device, overwrite=cfg.overwrite,
            progress=cfg.progress, expected_robot=cfg.resolved_robot)
        result = ReplicaResult(robot=level.robot, levels={level.level: level},
                               timings={level.level: level.seconds})
    elif cfg.policies is not None:
        robot = cfg.resolved_robot
        assert robot is not None
        result = make_from_policies(
            robot, source=cfg.policies, levels=cfg.resolved_levels, out_dir=out_dir,
            seed=cfg.seed, num_samples=cfg.num_samples, num_envs=cfg.num_envs,
            max_episode_steps=cfg.max_episode_steps, device=device, overwrite=cfg.overwrite,
            progress=cfg.progress)
    else:
        robot = cfg.resolved_robot
        assert robot is not None
        options = cfg.train_options()
        logger = None
        run_dir: Optional[RunDir] = None
        if cfg.resume is not None:
            run_dir = RunDir.open(cfg.resume)
            logger = Logger(run_dir, backends=("csv", "tensorboard"), lock=True)
        elif any(lv != "random" for lv in cfg.resolved_levels):
            run_dir = RunDir.create(Path(cfg.log_dir) if cfg.log_dir else out_dir / "logs",
                                    task=f"replica-{robot}", algo="online_sac", seed=cfg.seed)
            logger = Logger(run_dir, backends=("csv", "tensorboard"), lock=True)
            logger.write_hyper_params({
                "config": dataclasses.asdict(cfg), "dataset_source": "cocoa-rl replica (maker)",
                "out_dir": str(out_dir), "device": str(device), "versions": software_versions(),
                "code_commit": code_commit()})
            print(f"SAC run folder (continue a stopped run with --resume {run_dir.path}): "
                  f"{run_dir.path}")
        try:
            result = make_replica(
                robot, levels=cfg.resolved_levels, out_dir=out_dir, seed=cfg.seed,
                num_samples=cfg.num_samples, options=options, num_envs=cfg.num_envs,
                max_episode_steps=cfg.max_episode_steps, device=device,
                overwrite=cfg.overwrite, progress=cfg.progress, logger=logger,
                checkpoint_dir=None if run_dir is None else run_dir.checkpoint,
                checkpoint_every=cfg.checkpoint_every, resume=cfg.resume is not None)
        finally:
            if logger is not None:
                logger.close()
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_main(main, MakeDatasetConfig)
