"""Sampling and writing replica datasets from behaviour policies (D4RL's protocol, DATA.md).

Data is sampled stochastically (as D4RL's behaviour policies were) in several simulators at once
and written as D4RL v2 HDF5 files named by `offlinerlkit.datasets.replica.replica_file_name`,
with provenance under `metadata/`. The data of level `L` (index `k` in `POLICY_LEVELS`) is
sampled in environments `seed + 1000 (k + 1) + i` with a torch generator seeded
`seed + 1000 (k + 1)` (`replica_seeds`).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from offlinerlkit.datasets.hdf5 import write_d4rl_hdf5
from offlinerlkit.datasets.replica import (
    POLICY_LEVELS,
    REPLICA_SOURCE,
    REPLICA_VERSION,
    RolloutResult,
    replica_file_name,
    replica_task_name,
    rollout_dataset,
)
from offlinerlkit.policy_trainer.evaluate import evaluate_policy
from offlinerlkit.replica.behaviour import BehaviourPolicy
from offlinerlkit.utils.run_record import software_versions
from offlinerlkit.utils.tasks import TaskInfo, normalized_score, parse_task

if TYPE_CHECKING:
    import gymnasium

log = logging.getLogger(__name__)

__all__ = ["LevelResult", "LevelWriter", "common_metadata", "episode_returns", "evaluate_actor",
           "replica_seeds", "sample_from_policy", "sample_level"]


@dataclass(frozen=True)
class LevelResult:
    """One written replica dataset.

    Attributes:
        robot: the robot.
        level: the D4RL level.
        path: the HDF5 file.
        num_rows: steps in the file.
        num_episodes: episodes in the file (a cut last one included).
        behaviour_return: mean return of the file's complete episodes (the stochastic
            behaviour; for medium-replay, SAC's training episodes).
        behaviour_return_std: their standard deviation.
        behaviour_normalized: D4RL normalised score of `behaviour_return`.
        eval_return: deterministic evaluation of the behaviour policy (None for the mixed
            levels).
        eval_normalized: its normalised score.
        policy_step: SAC steps of the behaviour policy (0 for random).
        seconds: time spent sampling and writing this level.
    """

    robot: str
    level: str
    path: Path
    num_rows: int
    num_episodes: int
    behaviour_return: float
    behaviour_return_std: float
    behaviour_normalized: float
    eval_return: Optional[float]
    eval_normalized: Optional[float]
    policy_step: int
    seconds: float



def replica_seeds(seed: int, level: str, num_envs: int) -> tuple[list[int], int]:
    """The sampling seeds of a level: environment seeds and the torch generator's seed."""
    base = seed + 1000 * (POLICY_LEVELS.index(level) + 1)
    return [base + i for i in range(num_envs)], base


def common_metadata(task: TaskInfo, *, max_episode_steps: Optional[int], seed: int,
                    num_envs: int) -> dict[str, Any]:
    """Provenance every replica file of one robot shares (simulator, versions, seeds, protocol)."""
    return {
        "source": REPLICA_SOURCE, "robot": task.robot, "simulator": task.gym_id,
        "max_episode_steps": int(max_episode_steps or task.max_episode_steps),
        "versions": software_versions(), "seed": int(seed), "num_envs": int(num_envs),
        "protocol": "D4RL (shared/spec/DATA.md) in gymnasium -v4; stochastic behaviour policies",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def episode_returns(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """Returns of the episodes that end inside `data` (by terminals/timeouts) and their count."""
    ends = np.flatnonzero(np.asarray(data["terminals"]) | np.asarray(data["timeouts"]))
    sums = np.cumsum(np.asarray(data["rewards"], dtype=np.float64))
    totals = sums[ends] - np.concatenate([[0.0], sums[ends[:-1]]]) if ends.size else np.zeros(0)
    return totals, int(ends.size)


class LevelWriter:
    """Writes the levels of one replica run with shared provenance."""

    def __init__(self, robot: str, out_dir: Path, *, seed: int, overwrite: bool,
                 common: Mapping[str, Any]) -> None:
        self.robot, self.out_dir, self.seed, self.overwrite = robot, out_dir, seed, overwrite
        self.common = dict(common)

    def task(self, level: str) -> TaskInfo:
        return parse_task(f"{self.robot}-{level}-{REPLICA_VERSION}")

    def path(self, level: str) -> Path:
        return self.out_dir / replica_file_name(self.task(level))

    def write(self, level: str, data: Mapping[str, np.ndarray], *, returns: np.ndarray,
              num_episodes: int, eval_return: Optional[float], policy_step: int,
              started: float, extra: Mapping[str, Any]) -> LevelResult:
        task = self.task(level)
        mean = float(np.mean(returns)) if returns.size else float("nan")
        std = float(np.std(returns)) if returns.size else float("nan")
        meta: dict[str, Any] = {
            **self.common,
            "task": replica_task_name(task), "d4rl_task": task.name, "level": level,
            "num_samples": int(len(data["rewards"])), "num_episodes": int(num_episodes),
            "num_complete_episodes": int(returns.size),
            "behaviour_return_mean": mean, "behaviour_return_std": std,
            "behaviour_return_normalized": normalized_score(self.robot, mean),
            **({"eval_return": float(eval_return),
                "eval_return_normalized": normalized_score(self.robot, eval_return)}
               if eval_return is not None else {}),
            "policy_train_step": int(policy_step),
            **extra,
        }
        path = write_d4rl_hdf5(self.path(level), data, metadata=meta, overwrite=self.overwrite)
        result = LevelResult(
            robot=self.robot, level=level, path=path, num_rows=int(len(data["rewards"])),
            num_episodes=int(num_episodes), behaviour_return=mean, behaviour_return_std=std,
            behaviour_normalized=normalized_score(self.robot, mean), eval_return=eval_return,
            eval_normalized=None if eval_return is None else normalized_score(self.robot,
                                                                              eval_return),
            policy_step=int(policy_step), seconds=time.perf_counter() - started)
        log.info("%s: %d rows, %d episodes, behaviour return %.1f (normalised %.1f) -> %s",
                 replica_task_name(task), result.num_rows, result.num_episodes, mean,
                 result.behaviour_normalized, path)
        return result


def sample_level(behaviour: BehaviourPolicy, *, level: str, seed: int, num_samples: int,
                  num_envs: int, max_episode_steps: Optional[int], progress: bool,
                  make_env: Callable[[int], gymnasium.Env]) -> tuple[RolloutResult, list[int]]:
    env_seeds, gen_seed = replica_seeds(seed, level, num_envs)
    envs = [make_env(s) for s in env_seeds]
    generator = torch.Generator(device=next(behaviour.actor.parameters()).device)
    generator.manual_seed(gen_seed)  # a local generator: the global streams are untouched
    try:
        rollout = rollout_dataset(behaviour.act_fn(generator=generator), envs,
                                  num_samples=num_samples, max_episode_steps=max_episode_steps,
                                  progress=progress, description=f"sample {level}")
    finally:
        for env in envs:
            env.close()
    return rollout, env_seeds


def evaluate_actor(behaviour: BehaviourPolicy, env: gymnasium.Env, *, num_episodes: int,
                    max_episode_steps: Optional[int]) -> float:
    act = behaviour.act_fn(deterministic=True)
    result = evaluate_policy(lambda obs: act(obs[None])[0][0], env, num_episodes=num_episodes,
                             max_episode_steps=max_episode_steps or 1_000_000)
    return result.mean_return


def sample_from_policy(
    policy_path: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    seed: int,
    num_samples: int,
    num_envs: int = 8,
    max_episode_steps: Optional[int] = None,
    eval_episodes: int = 10,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
    expected_robot: Optional[str] = None,
) -> LevelResult:
    """Sample a replica dataset from a saved behaviour policy, without training.

    The level (and file name) is the policy's own (`random`, `medium` or `expert`); the file
    records `policy_file` and `resampled_from_saved_policy = 1`. Use another `seed` than the
    original run's to get new episodes.

    Args:
        policy_path: a file written by `BehaviourPolicy.save` (`policies/<robot>/<level>.pt`).
        out_dir: the replica folder to write to.
        seed: sampling seeds are derived from it as in `make_replica`.
        num_samples: rows to record.
        num_envs: simulators stepped together.
        max_episode_steps: cut episodes earlier (tests only).
        eval_episodes: deterministic episodes to re-evaluate the policy (0: skip).
        device: torch device of the actor.
        overwrite: replace an existing file.
        progress: tqdm bar.
        expected_robot: raise a `ValueError` before sampling if the policy is of another robot.
    """
    from offlinerlkit.envs import make_env

    started = time.perf_counter()
    behaviour = BehaviourPolicy.load(policy_path, device=device)
    robot, level = behaviour.robot, behaviour.level
    if expected_robot is not None and expected_robot != robot:
        raise ValueError(f"{policy_path} is a {robot} policy, not {expected_robot}")
    task0 = parse_task(f"{robot}-random-{REPLICA_VERSION}")
    common = common_metadata(task0, max_episode_steps=max_episode_steps, seed=seed,
                             num_envs=num_envs)
    writer = LevelWriter(robot, Path(out_dir).expanduser(), seed=seed, overwrite=overwrite,
                     common=common)
    if writer.path(level).exists() and not overwrite:
        raise FileExistsError(f"{writer.path(level)}: already exists and was left untouched; "
                              "choose another out_dir or pass --overwrite")
    eval_return: Optional[float] = None
    if eval_episodes > 0:
        env = make_env(task0, seed=seed + 1)
        eval_return = evaluate_actor(behaviour, env, num_episodes=eval_episodes,
                                      max_episode_steps=max_episode_steps)
        env.close()
    rollout, env_seeds = sample_level(
        behaviour, level=level, seed=seed, num_samples=num_samples, num_envs=num_envs,
        max_episode_steps=max_episode_steps, progress=progress,
        make_env=lambda s: make_env(task0, seed=s))
    info = {k: v for k, v in behaviour.info.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return writer.write(
        level, rollout.data, returns=rollout.episode_returns, num_episodes=rollout.num_episodes,
        eval_return=eval_return, policy_step=int(behaviour.info.get("train_step", 0)),
        started=started,
        extra={"behaviour": f"saved {level} policy {Path(policy_path).name}",
               "policy_file": str(Path(policy_path).expanduser().resolve()),
               "resampled_from_saved_policy": 1, "sampling_env_seeds": env_seeds,
               "policy_info": info})
