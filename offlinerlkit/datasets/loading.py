"""Finding a task's dataset on this machine and loading it as transitions.

Nothing here downloads. For a D4RL task the places, in order, are:

1. an explicit `dataset_path` (a file, or a folder holding the task's D4RL file name); if it is
   given and missing, that is an error, never a fall-through;
2. `$D4RL_DATASET_DIR/<file>` when that variable is set, else `~/.d4rl/datasets/<file>`;
3. the folder the `d4rl` package itself uses (only if `d4rl` is installed; its `DATASET_PATH`).

A task `minari:<dataset id>` is looked up in the local Minari store (`$MINARI_DATASETS_PATH`,
else `~/.minari/datasets`) and read with `minari`, if installed.

A task `replica:<D4RL task>` (or `dataset_source="replica"`) is a locally made dataset
(`offlinerlkit.datasets.replica`, `run_example/make_dataset.py`): only `dataset_path` or
`$COCOA_REPLICA_DIR` (else `~/.cocoa/replica`) is searched, for `<robot>_<level>-v2-replica.hdf5`;
D4RL's places are never searched for it, and its `metadata/source` is checked on reading.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from offlinerlkit.datasets.checks import check_dataset_values
from offlinerlkit.datasets.errors import DatasetError, DatasetNotFoundError
from offlinerlkit.datasets.hdf5 import read_d4rl_hdf5
from offlinerlkit.datasets.minari_data import read_minari_episodes
from offlinerlkit.datasets.qlearning import qlearning_dataset
from offlinerlkit.datasets.replica import (
    REPLICA_SOURCE,
    check_replica_metadata,
    find_replica_file,
    is_replica_task,
    replica_task_name,
    split_replica_task,
)
from offlinerlkit.utils.minari_task import (
    is_minari_task,
    minari_dataset_dir,
    minari_dataset_id,
    missing_dataset_message,
    require_minari,
)
from offlinerlkit.utils.tasks import parse_task

logger = logging.getLogger(__name__)

#: Environment variable naming the folder of D4RL files (the one the `d4rl` package uses too).
D4RL_DIR_ENV = "D4RL_DATASET_DIR"

SourceKind = Literal["path", "d4rl_dir", "d4rl_package", "minari", "replica"]
#: Where a D4RL task's data may come from: D4RL's own files, or a locally made replica.
DatasetSourceName = Literal["d4rl", "replica"]

@dataclass(frozen=True)
class DatasetSource:
    """Where a task's data was found.

    Attributes:
        kind: `path` (explicit `dataset_path`), `d4rl_dir` (`$D4RL_DATASET_DIR` or
            `~/.d4rl/datasets`), `d4rl_package` (the `d4rl` package's own folder), `minari`, or
            `replica` (a locally made dataset, `offlinerlkit.datasets.replica`).
        path: the HDF5 file, or for Minari the dataset's `data` folder.
        description: one human-readable line (for logs and run records).
        task: the task name (`hopper-medium-v2`, `minari:mujoco/hopper/medium-v0`,
            `replica:hopper-medium-v2`; a replica always carries its prefix).
    """

    kind: SourceKind
    path: Path
    description: str
    task: str


def d4rl_dataset_dir() -> Path:
    """The D4RL cache folder: `$D4RL_DATASET_DIR` if set, else `~/.d4rl/datasets`."""
    root = os.environ.get(D4RL_DIR_ENV)
    return Path(root).expanduser() if root else Path.home() / ".d4rl" / "datasets"


def _d4rl_package_dirs() -> list[Path] | None:
    """The dataset folders the installed `d4rl` package uses, or None if it is not installed.

    Only reads `DATASET_PATH` attributes; nothing that can download is called.
    """
    try:
        installed = "d4rl" in sys.modules or importlib.util.find_spec("d4rl") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return None
    dirs: list[Path] = []
    for name in ("d4rl.offline_env", "d4rl.utils", "d4rl"):
        try:
            module = importlib.import_module(name)
        except Exception:  # d4rl's imports fail in many ways (gym, mujoco_py): treat as absent
            logger.debug("could not import %s", name, exc_info=True)
            continue
        value = getattr(module, "DATASET_PATH", None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            folder = Path(value).expanduser()
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def _find_minari(task: str, dataset_path: str | os.PathLike | None) -> DatasetSource:
    dataset_id = minari_dataset_id(task)
    if dataset_path is not None:
        raise ValueError(
            f"dataset_path ({dataset_path}) applies to D4RL HDF5 files; a Minari dataset "
            f"('{task}') is read from the Minari store: set MINARI_DATASETS_PATH to its folder"
        )
    require_minari(task)
    data_dir = minari_dataset_dir() / dataset_id / "data"
    if not (data_dir / "metadata.json").is_file():
        raise DatasetNotFoundError(missing_dataset_message(task, dataset_id), places=[str(data_dir)])
    return DatasetSource(kind="minari", path=data_dir,
                         description=f"Minari dataset {dataset_id} at {data_dir}", task=task)


def find_dataset(task: str, *, dataset_path: str | os.PathLike | None = None,
                 dataset_source: DatasetSourceName | None = None) -> DatasetSource:
    """Find the local data of `task` without reading it (see the module docstring for the order).

    Args:
        task: a D4RL task name (`hopper-medium-v2`), `replica:<D4RL task>` or
            `minari:<dataset id>`.
        dataset_path: an explicit D4RL HDF5 file, or a folder holding the task's D4RL file
            (for a replica: the replica file, or a folder holding it).
        dataset_source: `replica` reads a locally made dataset for a plain D4RL task name
            (the same as the `replica:` prefix); `d4rl` or None: as the name says.

    Returns:
        The source to read.

    Raises:
        TaskError: `task` is not a known D4RL task or a valid Minari id.
        DatasetNotFoundError: nothing was found; the message lists every place looked at.
    """
    if is_minari_task(task):
        return _find_minari(task.strip(), dataset_path)
    if dataset_source not in (None, "d4rl", "replica"):
        raise ValueError(f"dataset_source must be 'd4rl' or 'replica', got {dataset_source!r}")
    if is_replica_task(task) or dataset_source == "replica":
        if dataset_source == "d4rl":
            raise ValueError(f"task {task!r} names a replica but dataset_source is 'd4rl'")
        path, description = find_replica_file(task, dataset_path=dataset_path)
        return DatasetSource(kind="replica", path=path, description=description,
                             task=replica_task_name(task))
    info = parse_task(task)
    file_name = info.d4rl_file_name
    how = (
        f"To provide it: put the D4RL file '{file_name}' in {d4rl_dataset_dir()}, or set "
        f"{D4RL_DIR_ENV} to the folder holding it, or pass --dataset_path "
        f"/path/to/{file_name}. Downloads are never attempted."
    )

    if dataset_path is not None:
        given = Path(dataset_path).expanduser()
        candidate = given / file_name if given.is_dir() else given
        if candidate.is_file():
            return DatasetSource(
                kind="path", path=candidate, description=f"dataset_path {candidate}", task=task
            )
        place = f"{candidate} (dataset_path)"
        raise DatasetNotFoundError(
            f"no dataset for task '{info.name}' at the given dataset_path: {place} does not "
            "exist. Check the path (it may be a D4RL HDF5 file or a folder holding "
            f"'{file_name}'); other places are not searched when dataset_path is given.",
            places=[place],
        )

    places: list[str] = []
    cache_dir = d4rl_dataset_dir()
    cache_file = cache_dir / file_name
    origin = f"${D4RL_DIR_ENV}" if os.environ.get(D4RL_DIR_ENV) else (
        f"default D4RL cache; {D4RL_DIR_ENV} is not set"
    )
    if cache_file.is_file():
        return DatasetSource(
            kind="d4rl_dir", path=cache_file, description=f"{cache_file} ({origin})", task=task
        )
    places.append(f"{cache_file} ({origin})")

    package_dirs = _d4rl_package_dirs()
    if package_dirs is None:
        places.append("d4rl package: not installed (optional; only its local folder is used)")
    else:
        if not package_dirs:
            places.append("d4rl package: installed, but its DATASET_PATH could not be read")
        for folder in package_dirs:
            candidate = folder / file_name
            if candidate.is_file():
                return DatasetSource(
                    kind="d4rl_package",
                    path=candidate,
                    description=f"{candidate} (d4rl package DATASET_PATH)",
                    task=task,
                )
            places.append(f"{candidate} (d4rl package DATASET_PATH)")

    raise DatasetNotFoundError(
        f"no dataset found for task '{info.name}'. Looked in:\n"
        + "".join(f"  - {place}\n" for place in places)
        + how,
        places=places,
    )


def load_from_source(
    source: DatasetSource, *, terminate_on_end: bool = False, accept_anomalies: bool = False
) -> dict[str, np.ndarray]:
    """Read a found dataset as the transition dict.

    D4RL files are validated against the task and passed through `qlearning_dataset` with the
    task's episode length; Minari episodes go through `episodes_to_transitions`
    (`terminate_on_end` does not apply: every step is kept). Absurd rewards, actions outside
    the action space and non-binary terminals are refused (`datasets.checks`).

    Args:
        source: from `find_dataset`.
        terminate_on_end: see `qlearning_dataset`.
        accept_anomalies: load data with such values anyway (each logged as a warning).

    Raises:
        DatasetAnomalyError: the data holds such values and `accept_anomalies` is False.

    Returns:
        `observations (N,S) f32`, `actions (N,A) f32`, `next_observations (N,S) f32`,
        `rewards (N,) f32`, `terminals (N,) bool`.
    """
    if source.kind == "minari":
        data = read_minari_episodes(source.path)
        check_dataset_values(data, source=str(source.path), accept=accept_anomalies)
    else:
        info = parse_task(split_replica_task(source.task)[1])
        raw = read_d4rl_hdf5(source.path, task=info.name)
        if source.kind == "replica":
            check_replica_metadata(raw, source=str(source.path))
        elif str(raw.get("metadata/source", "")) == REPLICA_SOURCE:
            raise DatasetError(
                f"{source.path} is a locally made replica, not D4RL's data: address it as "
                f"'{replica_task_name(info)}' (or dataset_source='replica')")
        check_dataset_values(raw, source=str(source.path), accept=accept_anomalies)
        data = qlearning_dataset(
            raw, terminate_on_end=terminate_on_end, max_episode_steps=info.max_episode_steps
        )
    logger.info(
        "dataset for %s: %s (%d transitions)", source.task, source.description,
        len(data["rewards"]),
    )
    return data


def load_dataset(
    task: str,
    *,
    dataset_path: str | os.PathLike | None = None,
    dataset_source: DatasetSourceName | None = None,
    terminate_on_end: bool = False,
    accept_anomalies: bool = False,
) -> dict[str, np.ndarray]:
    """Find and load the transitions of `task` (`find_dataset`, then `load_from_source`).

    Args:
        task: a D4RL task name (`hopper-medium-v2`), `replica:<D4RL task>` or
            `minari:<dataset id>`.
        dataset_path: an explicit D4RL HDF5 file (or folder holding the task's file).
        dataset_source: see `find_dataset`.
        terminate_on_end: see `qlearning_dataset`.
        accept_anomalies: see `load_from_source`.

    Returns:
        The transition dict: `observations (N,S) f32`, `actions (N,A) f32`,
        `next_observations (N,S) f32`, `rewards (N,) f32`, `terminals (N,) bool`.

    Raises:
        TaskError: an unknown task name.
        DatasetNotFoundError: no data found; the message lists every place looked at.
        DatasetError: the data is unreadable or invalid (the message names the file).
    """
    source = find_dataset(task, dataset_path=dataset_path, dataset_source=dataset_source)
    return load_from_source(source, terminate_on_end=terminate_on_end,
                            accept_anomalies=accept_anomalies)
