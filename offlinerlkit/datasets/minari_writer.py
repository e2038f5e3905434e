"""Writing D4RL-layout data (our replicas) as Minari datasets, readable by any Minari tool.

A Minari dataset is a list of episodes (`observations` with one more row than `actions`) plus
metadata: the environment spec it was recorded in, the one to evaluate in, and the reference
returns of the normalised score. `write_minari_dataset` splits D4RL-layout arrays into episodes
and writes them with Minari's own `create_dataset_from_buffers` into the local Minari store
(`$MINARI_DATASETS_PATH`, else `~/.minari/datasets`), where `minari:<id>` tasks find them.
Needs `minari` (the `minari` extra); it is imported only here, on use.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from offlinerlkit.datasets.errors import DatasetError
from offlinerlkit.datasets.hdf5 import read_d4rl_hdf5
from offlinerlkit.datasets.replica import check_replica_metadata
from offlinerlkit.utils.minari_task import MINARI_INSTALL, minari_dataset_dir
from offlinerlkit.utils.tasks import TaskInfo, parse_task

__all__ = ["d4rl_to_episodes", "export_replica_to_minari", "replica_minari_id",
           "write_minari_dataset"]

#: Namespace of the replica datasets in the Minari store (`cocoa-replica/hopper/medium-v0`).
REPLICA_NAMESPACE = "cocoa-replica"


def d4rl_to_episodes(data: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split D4RL-layout arrays into Minari episodes.

    An episode ends on a `terminals` or `timeouts` row, at the last row, and wherever
    `next_observations[i]` is not `observations[i + 1]` (a seam between concatenated parts).
    Each episode has `observations (T+1, S)` (its rows' observations, then the last row's next
    observation), `actions (T, A)`, `rewards (T,)`, `terminations (T,)` (the terminals) and
    `truncations (T,)` (True on the last row of an episode that did not terminate).

    Raises:
        DatasetError: `next_observations` is missing (the last observation of each episode
            would be unknown), or the arrays disagree in length.
    """
    for key in ("observations", "actions", "rewards", "terminals", "next_observations"):
        if key not in data:
            raise DatasetError(f"the data has no '{key}'; Minari episodes need it")
    obs, next_obs = np.asarray(data["observations"]), np.asarray(data["next_observations"])
    n = len(obs)
    terminals = np.asarray(data["terminals"], dtype=bool).reshape(-1)
    timeouts = np.asarray(data.get("timeouts", np.zeros(n, bool)), dtype=bool).reshape(-1)
    if n == 0 or any(len(np.asarray(data[k])) != n for k in ("actions", "rewards", "next_observations")) \
            or len(terminals) != n or len(timeouts) != n:
        raise DatasetError(f"per-step arrays must be non-empty and of one length ({n} observations)")
    ends = terminals | timeouts
    ends[:-1] |= np.any(next_obs[:-1] != obs[1:], axis=-1)
    ends[-1] = True
    episodes, start = [], 0
    for end in np.flatnonzero(ends):
        rows = slice(start, end + 1)
        episode_terminals = terminals[rows].copy()
        truncations = np.zeros_like(episode_terminals)
        truncations[-1] = not episode_terminals[-1]
        episodes.append({
            "observations": np.concatenate([obs[rows], next_obs[end:end + 1]]),
            "actions": np.asarray(data["actions"])[rows],
            "rewards": np.asarray(data["rewards"], dtype=np.float64).reshape(-1)[rows],
            "terminations": episode_terminals, "truncations": truncations})
        start = end + 1
    return episodes


def _env_spec(task: TaskInfo, max_episode_steps: int) -> Any:
    """The gymnasium `EnvSpec` of `task`'s simulator, with the given time limit."""
    import gymnasium
    from gymnasium.envs.registration import EnvSpec

    spec = EnvSpec.from_json(task.env_spec) if task.env_spec else gymnasium.spec(task.gym_id)
    return dataclasses.replace(spec, max_episode_steps=int(max_episode_steps))


def write_minari_dataset(dataset_id: str, data: Mapping[str, np.ndarray], *, task: TaskInfo,
                         recorded_max_episode_steps: int | None = None,
                         algorithm_name: str | None = None, description: str | None = None,
                         overwrite: bool = False) -> Path:
    """Write D4RL-layout `data` of `task` as the Minari dataset `dataset_id` in the local store.

    The dataset records `task`'s simulator as its environment (`env_spec`, with the time limit
    the data was recorded under) and as its evaluation environment (`eval_env_spec`, with the
    task's own limit), and `task`'s reference returns as `ref_min_score`/`ref_max_score`.

    Args:
        dataset_id: the Minari id, `<namespace>/<robot>/<name>-v<version>`.
        data: D4RL-layout arrays (`observations`, `actions`, `rewards`, `terminals`,
            `timeouts`, `next_observations`), episodes contiguous.
        task: the task the data belongs to (simulator, sizes, reference returns).
        recorded_max_episode_steps: the time limit the data was recorded with (default: the
            task's).
        algorithm_name, description: Minari's descriptive metadata.
        overwrite: replace an existing dataset of that id (else it is an error).

    Returns:
        The dataset's `data` folder.

    Raises:
        DatasetError: minari is missing, the id exists (without `overwrite`), or the data cannot
            be split into episodes or written.
    """
    try:
        import gymnasium
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
    except ImportError as exc:
        raise DatasetError(f"writing a Minari dataset needs the minari package: {MINARI_INSTALL}"
                           ) from exc
    data_dir = minari_dataset_dir() / dataset_id / "data"
    if data_dir.exists():
        if not overwrite:
            raise DatasetError(f"the Minari dataset {dataset_id} already exists at {data_dir}; "
                               "pass --overwrite to replace it")
        minari.delete_dataset(dataset_id)
    episodes = d4rl_to_episodes(data)
    buffers = [EpisodeBuffer(id=i, observations=ep["observations"], actions=ep["actions"],
                             rewards=list(ep["rewards"]), terminations=list(ep["terminations"]),
                             truncations=list(ep["truncations"]), infos={})
               for i, ep in enumerate(episodes)]
    box = gymnasium.spaces.Box
    obs_dtype, act_dtype = np.asarray(data["observations"]).dtype, np.asarray(data["actions"]).dtype
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Minari's notices about author / permalink fields
            minari.create_dataset_from_buffers(
                dataset_id, buffers,
                env=_env_spec(task, recorded_max_episode_steps or task.max_episode_steps),
                eval_env=_env_spec(task, task.max_episode_steps),
                observation_space=box(-np.inf, np.inf, (task.obs_dim,), obs_dtype),
                action_space=box(-1.0, 1.0, (task.action_dim,), act_dtype),
                ref_min_score=task.ref_min_score, ref_max_score=task.ref_max_score,
                algorithm_name=algorithm_name, description=description, author="cocoa-rl",
                data_format="hdf5")
    except Exception as exc:  # minari raises ValueError, OSError, AssertionError, ...
        raise DatasetError(f"cannot write the Minari dataset {dataset_id} "
                           f"({type(exc).__name__}: {exc})") from exc
    return data_dir


def replica_minari_id(task: TaskInfo) -> str:
    """The Minari id of a replica level: `cocoa-replica/<robot>/<level>-v0`."""
    return f"{REPLICA_NAMESPACE}/{task.robot}/{task.level}-v0"


def export_replica_to_minari(path: str | os.PathLike, *, robot: str, level: str,
                             overwrite: bool = False) -> tuple[str, Path]:
    """Write a replica HDF5 file (`make_dataset.py`) as a Minari dataset too.

    The Minari dataset records the replica's simulator (`-v4`) and D4RL's reference returns, so
    `minari:cocoa-replica/<robot>/<level>-v0` trains and scores like `replica:<robot>-<level>-v2`.

    Returns:
        (the Minari dataset id, its `data` folder).

    Raises:
        DatasetError: the file is not a replica, or `write_minari_dataset`'s errors.
    """
    raw = read_d4rl_hdf5(path)
    check_replica_metadata(raw, source=str(path))
    task = parse_task(f"{robot}-{level}-v2")
    simulator = str(raw.get("metadata/simulator", task.gym_id))
    if simulator != task.gym_id:
        raise DatasetError(f"{path} was recorded in {simulator}, not {task.gym_id}")
    steps = raw.get("metadata/max_episode_steps")
    dataset_id = replica_minari_id(task)
    return dataset_id, write_minari_dataset(
        dataset_id, raw, task=task,
        recorded_max_episode_steps=int(steps) if steps is not None else None,
        algorithm_name="cocoa-rl replica (D4RL protocol, online SAC)",
        description=f"cocoa-rl replica of D4RL {task.d4rl_name}, made locally in {task.gym_id} "
                    f"from {Path(path).name}", overwrite=overwrite)
