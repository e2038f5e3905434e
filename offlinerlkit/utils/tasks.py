"""Task names: parsing, sizes, cache file names, simulator ids and normalised scores.

A D4RL MuJoCo task name is `<robot>-<level>-<version>`, e.g. `hopper-medium-replay-v2`.
The reference returns are D4RL's own (`REF_MIN_SCORE` / `REF_MAX_SCORE`); they are the same for
every level and version of a robot. `replica:<D4RL task>` names a locally made dataset of the
same task; `minari:<dataset id>` a local Minari dataset, whose simulator, sizes and reference
returns are read from the dataset (`offlinerlkit.utils.minari_task`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from offlinerlkit.utils.errors import UserError

ROBOTS: dict[str, dict[str, object]] = {
    "halfcheetah": {"obs_dim": 17, "action_dim": 6, "gym_id": "HalfCheetah-v4",
                    "ref_min": -280.178953, "ref_max": 12135.0},
    "hopper": {"obs_dim": 11, "action_dim": 3, "gym_id": "Hopper-v4",
               "ref_min": -20.272305, "ref_max": 3234.3},
    "walker2d": {"obs_dim": 17, "action_dim": 6, "gym_id": "Walker2d-v4",
                 "ref_min": 1.629008, "ref_max": 4592.3},
}
LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
VERSIONS = ("v0", "v1", "v2")
#: Prefix of locally made datasets that follow D4RL's protocol (`replica:hopper-medium-v2`);
#: they share the D4RL task's simulator and scores but are never mixed up with D4RL's files.
REPLICA_PREFIX = "replica:"
#: Episodes in D4RL locomotion data and evaluation are cut at this many steps.
MAX_EPISODE_STEPS = 1000

_TASK_RE = re.compile(r"^(?P<robot>[a-z0-9]+)-(?P<level>[a-z-]+)-(?P<version>v\d+)$")


class TaskError(UserError, ValueError):
    """Raised for a task name that is not a supported D4RL MuJoCo locomotion task."""


@dataclass(frozen=True)
class TaskInfo:
    """Everything the project derives from a D4RL task name.

    Attributes:
        name: the full task name, e.g. `hopper-medium-replay-v2`.
        robot: `halfcheetah`, `hopper` or `walker2d`.
        level: `random`, `medium`, `expert`, `medium-replay`, `medium-expert` or `full-replay`.
        version: `v0`, `v1` or `v2`.
        obs_dim, action_dim: observation and action sizes.
        gym_id: the gymnasium environment used to evaluate (`-v4`, same model and reward as D4RL's).
        d4rl_file_name: the HDF5 file name the `d4rl` package caches the data under.
        ref_min_score, ref_max_score: D4RL's reference returns for the normalised score.
        max_episode_steps: episode time limit (1000).
        source: `d4rl` for D4RL's data, `replica` for a locally made dataset (the name then
            carries the `replica:` prefix; `d4rl_file_name` is still D4RL's), `minari` for a
            Minari dataset (`minari:<id>`; level and version are the id's, `d4rl_file_name` empty).
        score_source: whose reference returns `ref_*_score` are: `d4rl`, or `minari` (the Minari
            dataset's own `ref_min_score`/`ref_max_score`).
        env_spec: for Minari, the JSON of the gymnasium `EnvSpec` the dataset records for
            evaluation (id, version, keyword arguments, time limit); None: `gym_id` as is.
        dataset_id: the Minari dataset id (None for D4RL and replica tasks).
        minari_version: the Minari version that wrote the dataset, when recorded.
    """

    name: str
    robot: str
    level: str
    version: str
    obs_dim: int
    action_dim: int
    gym_id: str
    d4rl_file_name: str
    ref_min_score: float
    ref_max_score: float
    max_episode_steps: int = MAX_EPISODE_STEPS
    source: str = "d4rl"
    score_source: str = "d4rl"
    env_spec: str | None = None
    dataset_id: str | None = None
    minari_version: str | None = None

    @property
    def d4rl_name(self) -> str:
        """The D4RL task name without the replica prefix."""
        return f"{self.robot}-{self.level}-{self.version}"

    @property
    def env_version(self) -> str | None:
        """The simulator version of `gym_id` (`Hopper-v5` -> `v5`), None without one."""
        head, _, version = self.gym_id.rpartition("-")
        return version if head and re.fullmatch(r"v\d+", version) else None

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the evaluation environment is made with (empty for D4RL)."""
        return dict(json.loads(self.env_spec).get("kwargs") or {}) if self.env_spec else {}

    def normalized_score(self, raw_return: float) -> float:
        """Normalised score in percent, `100 * (R - min) / (max - min)`, with this task's
        reference returns (D4RL's, or a Minari dataset's own: Minari's `get_normalized_score`
        times 100)."""
        lo, hi = self.ref_min_score, self.ref_max_score
        return 100.0 * (float(raw_return) - lo) / (hi - lo)

    def record(self) -> dict[str, Any]:
        """What a run records about its task (`hyper_param.json`): data, simulator and scores."""
        out: dict[str, Any] = {
            "name": self.name, "source": self.source, "robot": self.robot,
            "obs_dim": self.obs_dim, "action_dim": self.action_dim, "env_id": self.gym_id,
            "env_version": self.env_version, "env_kwargs": self.env_kwargs,
            "max_episode_steps": self.max_episode_steps, "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score, "score_source": self.score_source}
        if self.source == "minari":
            out.update(dataset_id=self.dataset_id, dataset_version=self.version,
                       minari_version=self.minari_version)
        return out


def d4rl_file_name(robot: str, level: str, version: str) -> str:
    """The file name D4RL downloads a task to (the last part of its URL).

    v1/v2: `<robot>_<level with '-' -> '_'>-<version>.hdf5`; v0 has no version suffix and calls
    medium-replay `mixed` (and walker2d's v0 mixed file `walker_mixed.hdf5`).
    """
    if version == "v0":
        if level == "medium-replay":
            return "walker_mixed.hdf5" if robot == "walker2d" else f"{robot}_mixed.hdf5"
        return f"{robot}_{level.replace('-', '_')}.hdf5"
    return f"{robot}_{level.replace('-', '_')}-{version}.hdf5"


def parse_task(name: str) -> TaskInfo:
    """Parse a D4RL MuJoCo task name, raising `TaskError` with the accepted forms if it is not one.

    `replica:<task>` names the locally made dataset of `<task>` (same simulator and scores);
    `minari:<dataset id>` a local Minari dataset, described by its own metadata
    (`minari_task.minari_task_info`: the dataset must be in the local store).
    """
    if isinstance(name, str) and name.strip().lower().startswith("minari:"):
        from offlinerlkit.utils.minari_task import minari_task_info

        return minari_task_info(name)
    text = name.strip().lower() if isinstance(name, str) else None
    replica = text is not None and text.startswith(REPLICA_PREFIX)
    if replica:
        text = text[len(REPLICA_PREFIX):]
    match = _TASK_RE.match(text) if text is not None else None
    if match is None or match["robot"] not in ROBOTS or match["level"] not in LEVELS or (
        match["version"] not in VERSIONS
    ):
        raise TaskError(
            f"unknown task {name!r}: expected '<robot>-<level>-<version>' with robot in "
            f"{sorted(ROBOTS)}, level in {list(LEVELS)} and version in {list(VERSIONS)}, "
            "e.g. 'hopper-medium-replay-v2' (or 'replica:<task>', 'minari:<dataset id>')"
        )
    robot, level, version = match["robot"], match["level"], match["version"]
    if level == "full-replay" and version == "v0":
        raise TaskError(f"unknown task {name!r}: full-replay exists only for v1 and v2")
    info = ROBOTS[robot]
    return TaskInfo(
        name=f"{REPLICA_PREFIX if replica else ''}{robot}-{level}-{version}",
        robot=robot,
        level=level,
        version=version,
        obs_dim=int(info["obs_dim"]),
        action_dim=int(info["action_dim"]),
        gym_id=str(info["gym_id"]),
        d4rl_file_name=d4rl_file_name(robot, level, version),
        ref_min_score=float(info["ref_min"]),
        ref_max_score=float(info["ref_max"]),
        source="replica" if replica else "d4rl",
    )


def robot_of(name: str) -> str:
    """The robot of a task name (`hopper-medium-v2` -> `hopper`), raising `TaskError` if unknown."""
    text = name.strip().lower() if isinstance(name, str) else ""
    if text.startswith(REPLICA_PREFIX):
        text = text[len(REPLICA_PREFIX):]
    robot = text.split("-")[0] if text else None
    if robot not in ROBOTS:
        raise TaskError(f"unknown robot in task {name!r}: expected one of {sorted(ROBOTS)}")
    return robot


def normalized_score(robot: str, raw_return: float) -> float:
    """D4RL normalised score in percent for `robot` (a robot name or any task name of it)."""
    info = ROBOTS[robot_of(robot)]
    lo, hi = float(info["ref_min"]), float(info["ref_max"])
    return 100.0 * (float(raw_return) - lo) / (hi - lo)
