"""Minari task names: `minari:<dataset id>` -> `TaskInfo`, read from the dataset's own metadata.

A Minari dataset records how it was made in `<store>/<id>/data/metadata.json`: the gymnasium
environment spec it was recorded in (`env_spec`), the one to evaluate in (`eval_env_spec`, id,
version and keyword arguments), its observation and action spaces, and optionally its reference
returns (`ref_min_score`/`ref_max_score`). Everything a task needs is read from there, never
guessed from the robot's name: a `mujoco/hopper/medium-v0` dataset is evaluated in the
`Hopper-v5` it records, a dataset recorded in `Hopper-v4` in `Hopper-v4`.

Only the JSON file is read here (no `minari` import); the `minari` package must still be
installed, as reading the episodes needs it. Nothing downloads.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

from offlinerlkit.utils.tasks import MAX_EPISODE_STEPS, ROBOTS, TaskError, TaskInfo

#: Prefix that marks a task name as a Minari dataset id: `minari:mujoco/hopper/medium-v0`.
MINARI_PREFIX = "minari:"
#: How to install what reading Minari datasets needs.
MINARI_INSTALL = "pip install 'cocoa-rl[minari]'"
#: Environment variable of Minari's local store (Minari's own).
MINARI_DIR_ENV = "MINARI_DATASETS_PATH"
#: gymnasium environment names of the supported robots.
ENV_ROBOTS = {"HalfCheetah": "halfcheetah", "Hopper": "hopper", "Walker2d": "walker2d"}

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*-v(?P<version>\d+)$")
_ENV_ID_RE = re.compile(r"^(?:(?P<namespace>[\w:.-]+)/)?(?P<name>[\w:.-]+?)(?:-v(?P<version>\d+))?$")


def is_minari_task(task: object) -> bool:
    """Whether `task` is a `minari:<dataset id>` name."""
    return isinstance(task, str) and task.strip().lower().startswith(MINARI_PREFIX)


def minari_dataset_id(task: str) -> str:
    """The dataset id of `minari:<id>` (case kept), checked to be a valid Minari id.

    Raises:
        TaskError: not of the form `minari:<namespace>/<name>-v<version>`.
    """
    dataset_id = task.strip()[len(MINARI_PREFIX):].strip()
    if not _ID_RE.match(dataset_id) or ".." in dataset_id.split("/"):
        raise TaskError(
            f"invalid Minari dataset id {dataset_id!r} in task {task!r}: expected "
            "'minari:<namespace>/<name>-v<version>', e.g. 'minari:mujoco/hopper/medium-v0'")
    return dataset_id


def minari_dataset_dir() -> Path:
    """The local Minari store: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets` (as Minari)."""
    root = os.environ.get(MINARI_DIR_ENV)
    return Path(root).expanduser() if root else Path.home() / ".minari" / "datasets"


def local_minari_ids(store: Path | None = None) -> list[str]:
    """The ids of every dataset in the local store (folders `<id>/data/metadata.json`), sorted."""
    store = minari_dataset_dir() if store is None else Path(store)
    if not store.is_dir():
        return []
    return sorted(str(meta.parent.parent.relative_to(store).as_posix())
                  for meta in store.glob("**/data/metadata.json"))


def missing_dataset_message(task: str, dataset_id: str) -> str:
    """One line: the dataset is not in the local store, which ids are, and how to get it."""
    store = minari_dataset_dir()
    origin = MINARI_DIR_ENV if os.environ.get(MINARI_DIR_ENV) else f"default; {MINARI_DIR_ENV} unset"
    ids = local_minari_ids(store)
    listed = ", ".join(ids) if ids else "none"
    return (f"no Minari dataset {dataset_id!r} (task {task!r}) in the local store {store} "
            f"({origin}); local ids: {listed}. Nothing is downloaded at run time: run "
            f"`minari download {dataset_id}` on a machine with network, then copy its "
            f"~/.minari/datasets to {store} (or set {MINARI_DIR_ENV} to the copy)")


def require_minari(task: str) -> None:
    """Raise `TaskError` naming the extra when the `minari` package is not installed."""
    try:
        found = importlib.util.find_spec("minari") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise TaskError(f"task {task!r} is a Minari dataset, but the minari package is not "
                        f"installed: {MINARI_INSTALL}")


def read_minari_metadata(task: str) -> dict[str, Any]:
    """The `metadata.json` of a `minari:<id>` task's local dataset.

    Raises:
        TaskError: an invalid id, minari not installed, the dataset not in the local store, or
            a metadata file that is not JSON.
    """
    dataset_id = minari_dataset_id(task)
    require_minari(task)
    path = minari_dataset_dir() / dataset_id / "data" / "metadata.json"
    if not path.is_file():
        raise TaskError(missing_dataset_message(task, dataset_id))
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TaskError(f"{path} is not readable JSON ({exc}); copy the dataset again") from exc
    if not isinstance(meta, dict):
        raise TaskError(f"{path} does not hold a JSON object; copy the dataset again")
    return meta


def _json_field(meta: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    """A field Minari stores as a JSON string (spaces, env specs), decoded; None if absent."""
    value = meta.get(key)
    if value is None:
        return None
    try:
        decoded = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise TaskError(f"{where}: '{key}' is not valid JSON ({exc})") from exc
    if not isinstance(decoded, dict):
        raise TaskError(f"{where}: '{key}' is not a JSON object")
    return decoded


def _box_size(meta: dict[str, Any], key: str, where: str) -> int:
    space = _json_field(meta, key, where)
    shape = None if space is None else space.get("shape")
    if space is None or space.get("type") != "Box" or not isinstance(shape, list) or len(shape) != 1:
        raise TaskError(f"{where}: the {key.replace('_', ' ')} is {space and space.get('type')} "
                        f"with shape {shape}; only flat Box spaces (MuJoCo locomotion) are supported")
    return int(shape[0])


def split_env_id(env_id: str) -> tuple[str, str | None]:
    """`Hopper-v5` -> (`Hopper`, `v5`); an id without a version gives None."""
    match = _ENV_ID_RE.match(env_id)
    if match is None:
        return env_id, None
    return match["name"], (f"v{match['version']}" if match["version"] is not None else None)


def minari_task_info(task: str) -> TaskInfo:
    """The `TaskInfo` of `minari:<dataset id>`, from the local dataset's metadata.

    The evaluation environment is the dataset's `eval_env_spec` (else its `env_spec`), as
    Minari's `recover_environment(eval_env=True)`; the robot is that environment's, and the
    observation/action sizes recorded by the dataset must be that robot's. The reference
    returns are the dataset's own when it has both (`score_source="minari"`), else D4RL's for the
    robot (`score_source="d4rl"`).

    Raises:
        TaskError: any of `read_minari_metadata`'s problems; no recorded environment; a robot
            other than HalfCheetah, Hopper or Walker2d; sizes that are not the robot's.
    """
    dataset_id = minari_dataset_id(task)
    meta = read_minari_metadata(task)
    where = f"Minari dataset {dataset_id}"
    recorded = _json_field(meta, "env_spec", where)
    spec = _json_field(meta, "eval_env_spec", where) or recorded
    if spec is None or not spec.get("id"):
        raise TaskError(f"{where} records no environment (env_spec / eval_env_spec), so its "
                        "policies cannot be evaluated; recreate it with its environment")
    name, _ = split_env_id(str(spec["id"]))
    robot = ENV_ROBOTS.get(name)
    if robot is None:
        raise TaskError(f"{where} is recorded in {spec['id']!r}; supported environments are "
                        f"{sorted(ENV_ROBOTS)} (MuJoCo locomotion)")
    if recorded is not None and ENV_ROBOTS.get(split_env_id(str(recorded.get("id", "")))[0]) != robot:
        raise TaskError(f"{where}: its data was recorded in {recorded.get('id')!r} but its "
                        f"evaluation environment is {spec['id']!r}; they must be the same robot")
    sizes = (_box_size(meta, "observation_space", where), _box_size(meta, "action_space", where))
    expected = (int(ROBOTS[robot]["obs_dim"]), int(ROBOTS[robot]["action_dim"]))
    if sizes != expected:
        raise TaskError(f"{where}: observation/action sizes {sizes[0]}/{sizes[1]} are not "
                        f"{robot}'s standard {expected[0]}/{expected[1]} (environment "
                        f"{spec['id']} with {spec.get('kwargs') or 'no'} keyword arguments); "
                        "only the standard observations are supported")
    ref_min, ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
    own_scores = ref_min is not None and ref_max is not None
    if own_scores and not float(ref_max) > float(ref_min):
        raise TaskError(f"{where}: reference returns min {ref_min} >= max {ref_max}")
    *_, last = dataset_id.split("/")
    level, _, version = last.rpartition("-")
    return TaskInfo(
        name=f"{MINARI_PREFIX}{dataset_id}", robot=robot, level=level, version=version,
        obs_dim=sizes[0], action_dim=sizes[1], gym_id=str(spec["id"]), d4rl_file_name="",
        ref_min_score=float(ref_min if own_scores else ROBOTS[robot]["ref_min"]),
        ref_max_score=float(ref_max if own_scores else ROBOTS[robot]["ref_max"]),
        max_episode_steps=int(spec.get("max_episode_steps") or MAX_EPISODE_STEPS),
        source="minari", score_source="minari" if own_scores else "d4rl",
        env_spec=json.dumps(spec, sort_keys=True), dataset_id=dataset_id,
        minari_version=str(meta["minari_version"]) if meta.get("minari_version") else None)
