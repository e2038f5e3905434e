"""Locally made ("replica") D4RL-protocol datasets: names, places, recording and assembly.

D4RL's MuJoCo datasets were recorded with mujoco-py `-v2` environments that cannot be installed
here (`shared/spec/DATA.md`). A *replica* follows D4RL's protocol in gymnasium's `-v4`
environments (same models and rewards):

* `random`: a randomly initialised policy, sampled stochastically;
* `expert`: a policy trained to completion with online SAC, sampled stochastically;
* `medium`: the SAC snapshot whose evaluated return is closest to one third of the expert's;
* `medium-replay`: every transition of that SAC run's replay buffer up to the medium snapshot,
  in collection order;
* `medium-expert`: medium followed by expert.

A replica is never confused with D4RL's data:

* it is addressed by the task prefix `replica:` (`replica:hopper-medium-v2`), which also puts
  the source into run-directory names, `hyper_param.json` and result tables;
* it lives in its own folder, `$COCOA_REPLICA_DIR` or `~/.cocoa/replica` (`replica_dataset_dir`);
* its file name ends in `-replica.hdf5` (`hopper_medium_replay-v2-replica.hdf5`), so it never
  matches a D4RL download name, even when copied into a D4RL folder;
* its `metadata/source` is `"cocoa-rl replica"` (`check_replica_metadata`).

This module is the data layer of the replica: naming (`replica_file_name`, `replica_policy_path`,
`find_replica_file`), recording (`TransitionLog`, `rollout_dataset`, which rolls out any
action function in several environments and keeps episodes contiguous) and assembly
(`cut_dataset`, `concat_datasets`). Training the behaviour policies lives in
`offlinerlkit.policy_trainer.online` and `offlinerlkit.replica`, which import this module (never
the other way round).

Per-step conventions of every replica file (D4RL v2 layout):

* `terminals[i]`: the simulator terminated (`terminated=True`) on step `i`;
* `timeouts[i]`: the episode was cut after step `i` without terminating, either by the
  1000-step time limit or because the data ends there (the last row of a dataset, or of
  medium-replay at the medium snapshot); never both flags on one row;
* `next_observations[i]`: the true next state (also on time-limit rows);
* `infos/qpos`, `infos/qvel`: the simulator state *before* step `i` (float64), so that
  `set_state(qpos, qvel)` reproduces `observations[i]`;
* `infos/action_log_probs`: `log pi(a_i | s_i)` of the behaviour that chose the action (float32;
  for uniformly random warm-up actions of SAC, the uniform density `-A log(2 max_action)`).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offlinerlkit.datasets.errors import DatasetError, DatasetNotFoundError
from offlinerlkit.utils.tasks import REPLICA_PREFIX, TaskInfo, parse_task

if TYPE_CHECKING:
    import gymnasium

logger = logging.getLogger(__name__)

__all__ = [
    "POLICY_LEVELS",
    "REPLICA_DIR_ENV",
    "REPLICA_LEVELS",
    "REPLICA_PREFIX",
    "REPLICA_SOURCE",
    "ActFn",
    "RolloutResult",
    "TransitionLog",
    "check_replica_metadata",
    "concat_datasets",
    "cut_dataset",
    "find_replica_file",
    "is_replica_task",
    "replica_dataset_dir",
    "replica_file_name",
    "replica_policy_path",
    "replica_task_name",
    "rollout_dataset",
    "split_replica_task",
]

#: Environment variable naming the folder of replica datasets (default `~/.cocoa/replica`).
REPLICA_DIR_ENV = "COCOA_REPLICA_DIR"
#: `metadata/source` of every replica file.
REPLICA_SOURCE = "cocoa-rl replica"
#: Levels a replica provides, in the order they are made.
REPLICA_LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert")
#: Levels that have a behaviour policy of their own (saved under `policies/<robot>/`).
POLICY_LEVELS = ("random", "medium", "expert")
#: Dataset version of the replica names (D4RL's `-v2` layout and keys).
REPLICA_VERSION = "v2"
_FILE_SUFFIX = "-replica.hdf5"

#: An action function: observations `[N, S]` float32 -> (actions `[N, A]`, log-probs `[N]`).
ActFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- names and places


def is_replica_task(task: str) -> bool:
    """Whether a task name carries the `replica:` prefix (case and spaces ignored)."""
    return isinstance(task, str) and task.strip().lower().startswith(REPLICA_PREFIX)


def split_replica_task(task: str) -> tuple[bool, str]:
    """Split `replica:hopper-medium-v2` into `(True, "hopper-medium-v2")`.

    A name without the prefix is returned as `(False, name)`. The D4RL part is not validated
    here; pass it to `parse_task`.
    """
    name = task.strip()
    if is_replica_task(name):
        return True, name[len(REPLICA_PREFIX):].strip()
    return False, name


def replica_task_name(task: str | TaskInfo) -> str:
    """The replica task name of a D4RL task: `hopper-medium-v2` -> `replica:hopper-medium-v2`."""
    if isinstance(task, str):
        task = parse_task(split_replica_task(task)[1])
    return f"{REPLICA_PREFIX}{task.d4rl_name}"


def _task_info(task: str | TaskInfo) -> TaskInfo:
    return task if isinstance(task, TaskInfo) else parse_task(split_replica_task(task)[1])


def replica_file_name(task: str | TaskInfo) -> str:
    """The file name of a replica dataset, distinct from every D4RL download name.

    `<robot>_<level with '-' -> '_'>-<version>-replica.hdf5`, e.g.
    `hopper_medium_replay-v2-replica.hdf5` (D4RL's is `hopper_medium_replay-v2.hdf5`).

    Args:
        task: a D4RL task name, with or without the `replica:` prefix, or its `TaskInfo`.
    """
    info = _task_info(task)
    if info.level not in REPLICA_LEVELS:
        raise DatasetError(f"no replica level {info.level!r}: replicas provide {list(REPLICA_LEVELS)}")
    return f"{info.robot}_{info.level.replace('-', '_')}-{info.version}{_FILE_SUFFIX}"


def replica_dataset_dir() -> Path:
    """The folder of replica datasets: `$COCOA_REPLICA_DIR` if set, else `~/.cocoa/replica`.

    Like `D4RL_DATASET_DIR`, this is a documented data location (docs/ARCHITECTURE.md).
    """
    root = os.environ.get(REPLICA_DIR_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cocoa" / "replica"


def replica_policy_path(root: str | os.PathLike, robot: str, level: str) -> Path:
    """Where a behaviour policy is saved: `<root>/policies/<robot>/<level>.pt`."""
    if level not in POLICY_LEVELS:
        raise ValueError(f"level {level!r} has no behaviour policy of its own; "
                         f"choose from {list(POLICY_LEVELS)}")
    return Path(root).expanduser() / "policies" / robot / f"{level}.pt"


def find_replica_file(
    task: str, *, dataset_path: str | os.PathLike | None = None
) -> tuple[Path, str]:
    """Find the replica file of a task without reading it.

    Places: `dataset_path` when given (a file, or a folder holding `replica_file_name(task)`;
    nothing else is searched then), else `replica_dataset_dir() / replica_file_name(task)`.

    Args:
        task: `replica:<D4RL task>` (the prefix may be omitted).
        dataset_path: an explicit replica file or folder.

    Returns:
        The file and a one-line description for logs and run records; the description always
        says that the data is a locally made replica, not D4RL's.

    Raises:
        TaskError: the D4RL part of `task` is not a known task.
        DatasetNotFoundError: no file; the message lists the place looked at and how to make it.
    """
    info = _task_info(task)
    name = replica_file_name(info)
    make = (f"Make it with `python run_example/make_dataset.py --robot {info.robot} --levels "
            f"{info.level}` (writes {name}), or set {REPLICA_DIR_ENV} to the folder holding it.")
    if dataset_path is not None:
        given = Path(dataset_path).expanduser()
        candidate = given / name if given.is_dir() else given
        if candidate.is_file():
            return candidate, f"{REPLICA_SOURCE} (locally made, not D4RL): {candidate} (dataset_path)"
        place = f"{candidate} (dataset_path)"
        raise DatasetNotFoundError(
            f"no replica dataset for '{replica_task_name(info)}' at {place}. {make}", places=[place]
        )
    root = replica_dataset_dir()
    candidate = root / name
    origin = f"${REPLICA_DIR_ENV}" if os.environ.get(REPLICA_DIR_ENV) else (
        f"default replica folder; {REPLICA_DIR_ENV} is not set"
    )
    if candidate.is_file():
        return candidate, f"{REPLICA_SOURCE} (locally made, not D4RL): {candidate} ({origin})"
    place = f"{candidate} ({origin})"
    raise DatasetNotFoundError(
        f"no replica dataset for '{replica_task_name(info)}'. Looked in:\n  - {place}\n{make}",
        places=[place],
    )


def check_replica_metadata(raw: Mapping[str, Any], *, source: str = "dataset") -> None:
    """Raise unless `raw` (from `read_d4rl_hdf5`) is a replica file (`metadata/source`).

    Guards against pointing a `replica:` task at a D4RL file or the other way round.
    """
    value = raw.get("metadata/source")
    text = None if value is None else str(np.asarray(value).reshape(()).item())
    if text != REPLICA_SOURCE:
        raise DatasetError(
            f"{source}: metadata/source is {text!r}, not {REPLICA_SOURCE!r}: this is not a "
            "locally made replica dataset. Use the task name without 'replica:' for D4RL files."
        )


# --------------------------------------------------------------------------- recording


class TransitionLog:
    """Append-only per-step storage in D4RL's raw layout, in numpy, grown by doubling.

    Keys of `to_dict()`: `observations (N,S) f32`, `actions (N,A) f32`, `rewards (N,) f32`,
    `next_observations (N,S) f32`, `terminals (N,) bool`, `timeouts (N,) bool`, `infos/qpos
    (N,P) f64`, `infos/qvel (N,V) f64`, `infos/action_log_probs (N,) f32`.

    Args:
        obs_dim, action_dim: observation and action sizes.
        qpos_dim, qvel_dim: simulator state sizes.
        capacity: initial number of rows allocated.
    """

    def __init__(self, obs_dim: int, action_dim: int, qpos_dim: int, qvel_dim: int, *,
                 capacity: int = 1024) -> None:
        self._widths: dict[str, tuple[tuple[int, ...], np.dtype]] = {
            "observations": ((obs_dim,), np.dtype(np.float32)),
            "actions": ((action_dim,), np.dtype(np.float32)),
            "rewards": ((), np.dtype(np.float32)),
            "next_observations": ((obs_dim,), np.dtype(np.float32)),
            "terminals": ((), np.dtype(bool)),
            "timeouts": ((), np.dtype(bool)),
            "infos/qpos": ((qpos_dim,), np.dtype(np.float64)),
            "infos/qvel": ((qvel_dim,), np.dtype(np.float64)),
            "infos/action_log_probs": ((), np.dtype(np.float32)),
        }
        self._size = 0
        self._arrays = self._allocate(max(int(capacity), 1))

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        return {k: np.zeros((rows, *shape), dtype) for k, (shape, dtype) in self._widths.items()}

    def _reserve(self, extra: int) -> None:
        rows = next(iter(self._arrays.values())).shape[0]
        if self._size + extra <= rows:
            return
        new_rows = max(2 * rows, self._size + extra)
        grown = self._allocate(new_rows)
        for k, arr in self._arrays.items():
            grown[k][: self._size] = arr[: self._size]
        self._arrays = grown

    def __len__(self) -> int:
        return self._size

    def append(self, *, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
               terminal: bool, timeout: bool, qpos: np.ndarray, qvel: np.ndarray,
               log_prob: float) -> None:
        """Append one step (`terminal` and `timeout` must not both be True)."""
        if terminal and timeout:
            raise ValueError("a step cannot be both terminal and a timeout")
        self._reserve(1)
        i = self._size
        row = {"observations": obs, "actions": action, "rewards": reward,
               "next_observations": next_obs, "terminals": terminal, "timeouts": timeout,
               "infos/qpos": qpos, "infos/qvel": qvel, "infos/action_log_probs": log_prob}
        for k, v in row.items():
            self._arrays[k][i] = v
        self._size += 1

    def extend(self, data: Mapping[str, np.ndarray]) -> None:
        """Append the rows of a dict with this log's keys (e.g. another log's `to_dict()`)."""
        n = int(np.asarray(data["rewards"]).shape[0])
        self._reserve(n)
        for k in self._arrays:
            self._arrays[k][self._size: self._size + n] = data[k]
        self._size += n

    def clear(self) -> None:
        """Forget every row (the allocation is kept)."""
        self._size = 0

    def to_dict(self, stop: int | None = None) -> dict[str, np.ndarray]:
        """Copies of the first `stop` rows (all by default), in append order."""
        n = self._size if stop is None else min(int(stop), self._size)
        return {k: arr[:n].copy() for k, arr in self._arrays.items()}


def cut_dataset(data: Mapping[str, np.ndarray], num_rows: int) -> dict[str, np.ndarray]:
    """The first `num_rows` rows of a raw dataset, with the data's end marked as a cut.

    If the new last row is neither terminal nor a timeout (the data ends inside an episode), it
    becomes a timeout, so that no transition ever appears to continue into the next episode.
    Keys that are not per-step arrays (`metadata/*`) are dropped.
    """
    n = int(np.asarray(data["rewards"]).shape[0])
    if not 1 <= num_rows <= n:
        raise ValueError(f"num_rows must be in [1, {n}], got {num_rows}")
    out = {k: np.array(v[:num_rows]) for k, v in data.items()
           if not k.startswith("metadata/") and np.ndim(v) >= 1 and len(v) == n}
    if not out["terminals"][-1]:
        out["timeouts"][-1] = True
    return out


def concat_datasets(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-step arrays of several raw datasets one after the other (medium-expert).

    Every part must have the same per-step keys; `metadata/*` keys are dropped. Each part should
    end on a terminal or timeout row (as `rollout_dataset` and `cut_dataset` guarantee), so no
    episode runs across the boundary; this is checked.
    """
    if not parts:
        raise ValueError("nothing to concatenate")
    keys = [k for k in parts[0] if not k.startswith("metadata/")]
    for i, part in enumerate(parts):
        got = sorted(k for k in part if not k.startswith("metadata/"))
        if got != sorted(keys):
            raise ValueError(f"part {i} has keys {got}, expected {sorted(keys)}")
        if not (part["terminals"][-1] or part["timeouts"][-1]):
            raise ValueError(f"part {i} ends inside an episode; cut it with cut_dataset first")
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in keys}


@dataclass(frozen=True)
class RolloutResult:
    """What `rollout_dataset` recorded.

    Attributes:
        data: the raw dataset (`TransitionLog.to_dict()` keys), exactly `num_samples` rows.
        episode_returns: undiscounted return of every *complete* episode in `data` (an
            episode cut by the end of the data is excluded), float64.
        episode_lengths: their lengths, int64.
        num_episodes: episodes in `data`, including a cut last one.
        num_env_steps: simulator steps taken (>= rows: unfinished episodes are discarded).
        seconds: wall-clock time of the rollout.
    """

    data: dict[str, np.ndarray]
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    num_episodes: int
    num_env_steps: int
    seconds: float

    @property
    def mean_return(self) -> float:
        """Mean return of the complete episodes (NaN when there is none)."""
        return float(np.mean(self.episode_returns)) if self.episode_returns.size else float("nan")

    @property
    def std_return(self) -> float:
        return float(np.std(self.episode_returns)) if self.episode_returns.size else float("nan")


def _sim_state(env: gymnasium.Env) -> tuple[np.ndarray, np.ndarray]:
    data = env.unwrapped.data
    return np.array(data.qpos, dtype=np.float64), np.array(data.qvel, dtype=np.float64)


def rollout_dataset(
    act_fn: ActFn,
    envs: Sequence[gymnasium.Env],
    *,
    num_samples: int,
    max_episode_steps: int | None = None,
    progress: bool = False,
    description: str = "sample",
) -> RolloutResult:
    """Roll out a behaviour in several simulators and record a D4RL-format dataset.

    The environments are stepped in a loop with one batched `act_fn` call per round (faster here
    than one environment at a time, and equal to `gymnasium.vector.SyncVectorEnv`, whose
    autoreset would hide the state before a reset step). Each environment's episode is kept in
    its own buffer and appended to the dataset when it ends, so episodes are contiguous, in the
    order they finished (ties by environment index). Once the finished and running episodes hold
    `num_samples` steps, no new episodes start; the running ones are played to their end and the
    data is cut to exactly `num_samples` rows (`cut_dataset`: a last row inside an episode
    becomes a timeout).

    Seeding: the caller seeds the environments (e.g. `make_env(task, seed=s)`, one seed each)
    and any generator `act_fn` draws from; this function draws nothing itself.

    Args:
        act_fn: observations `[N, S]` float32 -> (actions `[N, A]`, log-probs `[N]`), stochastic
            for D4RL's behaviour policies.
        envs: gymnasium MuJoCo environments (`env.unwrapped.data` gives qpos/qvel), each with
            its time limit (1000 steps from `make_env`).
        num_samples: rows to record.
        max_episode_steps: cut episodes after this many steps too (a timeout), e.g. to make
            timeouts appear quickly in tests; None keeps only the environments' own limit.
        progress: show a tqdm bar over recorded steps.
        description: the bar's label.

    Returns:
        The dataset and statistics of its episodes.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not envs:
        raise ValueError("need at least one environment")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
    start = time.perf_counter()
    num_envs = len(envs)
    obs_list = []
    for env in envs:
        obs, _ = env.reset()
        obs_list.append(np.asarray(obs, dtype=np.float32))
    qpos0, qvel0 = _sim_state(envs[0])
    qpos_dims = (qpos0.shape[0], qvel0.shape[0])
    obs_dim = obs_list[0].shape[0]
    action_dim = int(np.prod(envs[0].action_space.shape))
    obs_batch = np.stack(obs_list)  # [N, S]
    episodes = [TransitionLog(obs_dim, action_dim, *qpos_dims, capacity=1024)
                for _ in range(num_envs)]
    ep_return = np.zeros(num_envs)
    out = TransitionLog(obs_dim, action_dim, *qpos_dims, capacity=num_samples + 1024)
    returns: list[float] = []
    lengths: list[int] = []
    active = np.ones(num_envs, dtype=bool)
    env_steps = 0

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_samples, desc=description, unit="step", leave=False)
    while active.any():
        idx = np.flatnonzero(active)
        actions, log_probs = act_fn(obs_batch[idx])
        actions = np.asarray(actions, dtype=np.float32).reshape(len(idx), action_dim)
        log_probs = np.asarray(log_probs, dtype=np.float32).reshape(len(idx))
        for j, i in enumerate(idx):
            env = envs[i]
            qpos, qvel = _sim_state(env)
            next_obs, reward, terminated, truncated, _ = env.step(actions[j])
            next_obs = np.asarray(next_obs, dtype=np.float32)
            env_steps += 1
            ep = episodes[i]
            cut = bool(truncated) or (max_episode_steps is not None
                                      and len(ep) + 1 >= max_episode_steps)
            ep.append(obs=obs_batch[i], action=actions[j], reward=float(reward),
                      next_obs=next_obs, terminal=bool(terminated),
                      timeout=cut and not terminated, qpos=qpos, qvel=qvel,
                      log_prob=float(log_probs[j]))
            ep_return[i] += float(reward)
            if terminated or cut:
                before = len(out)
                out.extend(ep.to_dict())
                returns.append(float(ep_return[i]))
                lengths.append(len(ep))
                ep.clear()
                ep_return[i] = 0.0
                if bar is not None:
                    bar.update(min(len(out), num_samples) - min(before, num_samples))
                running = sum(len(e) for e in episodes)
                if len(out) + running >= num_samples:
                    active[i] = False  # enough steps are recorded or under way
                    continue
                next_obs, _ = env.reset()
                next_obs = np.asarray(next_obs, dtype=np.float32)
            obs_batch[i] = next_obs
    if bar is not None:
        bar.close()

    data = cut_dataset(out.to_dict(), num_samples)
    # complete episodes are those that end (terminal or time limit) within the kept rows
    ends = np.cumsum(lengths)
    complete = ends <= num_samples
    num_episodes = int(np.searchsorted(ends, num_samples, side="left") + 1)
    seconds = time.perf_counter() - start
    logger.info("%s: %d steps, %d episodes (%d complete), %.0f steps/s", description,
                num_samples, num_episodes, int(complete.sum()), env_steps / max(seconds, 1e-9))
    return RolloutResult(
        data=data,
        episode_returns=np.asarray(returns, dtype=np.float64)[complete],
        episode_lengths=np.asarray(lengths, dtype=np.int64)[complete],
        num_episodes=num_episodes,
        num_env_steps=env_steps,
        seconds=seconds,
    )
