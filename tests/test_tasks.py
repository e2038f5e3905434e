"""Tests of `offlinerlkit.utils.tasks`: task-name parsing, D4RL file names and normalised scores."""
from __future__ import annotations

import itertools

import pytest

from offlinerlkit.utils.tasks import (
    LEVELS,
    ROBOTS,
    VERSIONS,
    TaskError,
    TaskInfo,
    normalized_score,
    parse_task,
    robot_of,
)

SIZES = {"halfcheetah": (17, 6), "hopper": (11, 3), "walker2d": (17, 6)}
GYM_IDS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}
# D4RL's REF_MIN_SCORE / REF_MAX_SCORE (shared/spec/DATA.md)
REF_SCORES = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
VALID = [
    (robot, level, version)
    for robot, level, version in itertools.product(sorted(SIZES), LEVELS, VERSIONS)
    if not (level == "full-replay" and version == "v0")
]


def test_supported_sets() -> None:
    assert set(ROBOTS) == set(SIZES)
    assert set(LEVELS) == {
        "random", "medium", "expert", "medium-replay", "medium-expert", "full-replay"
    }
    assert set(VERSIONS) == {"v0", "v1", "v2"}


@pytest.mark.parametrize(("robot", "level", "version"), VALID)
def test_parse_every_task(robot: str, level: str, version: str) -> None:
    name = f"{robot}-{level}-{version}"
    info = parse_task(name)
    assert isinstance(info, TaskInfo)
    assert (info.name, info.robot, info.level, info.version) == (name, robot, level, version)
    assert (info.obs_dim, info.action_dim) == SIZES[robot]
    assert info.gym_id == GYM_IDS[robot]
    assert (info.ref_min_score, info.ref_max_score) == REF_SCORES[robot]
    assert info.max_episode_steps == 1000
    assert info.d4rl_file_name.endswith(".hdf5")
    assert robot_of(name) == robot


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        ("halfcheetah-medium-expert-v2", "halfcheetah_medium_expert-v2.hdf5"),
        ("hopper-medium-replay-v2", "hopper_medium_replay-v2.hdf5"),
        ("walker2d-random-v2", "walker2d_random-v2.hdf5"),
        ("hopper-full-replay-v2", "hopper_full_replay-v2.hdf5"),
        ("halfcheetah-expert-v1", "halfcheetah_expert-v1.hdf5"),
        ("walker2d-full-replay-v1", "walker2d_full_replay-v1.hdf5"),
        ("hopper-medium-v0", "hopper_medium.hdf5"),
        ("walker2d-medium-expert-v0", "walker2d_medium_expert.hdf5"),
        ("halfcheetah-medium-replay-v0", "halfcheetah_mixed.hdf5"),
        ("hopper-medium-replay-v0", "hopper_mixed.hdf5"),
    ],
)
def test_d4rl_file_names(name: str, file_name: str) -> None:
    assert parse_task(name).d4rl_file_name == file_name


def test_walker2d_v0_medium_replay_file_name() -> None:
    assert parse_task("walker2d-medium-replay-v0").d4rl_file_name == "walker_mixed.hdf5"


def test_parse_normalises_case_and_whitespace() -> None:
    assert parse_task("  Hopper-Medium-Replay-V2 ").name == "hopper-medium-replay-v2"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ant-medium-v2", "robot in ['halfcheetah', 'hopper', 'walker2d']"),
        ("hopper-mediocre-v2", "level in"),
        ("hopper-medium-v3", "version in ['v0', 'v1', 'v2']"),
        ("hopper-medium", "'<robot>-<level>-<version>'"),
        ("", "e.g. 'hopper-medium-replay-v2'"),
        ("hopper-full-replay-v0", "only for v1 and v2"),
    ],
)
def test_unknown_task_raises_helpful_error(name: str, fragment: str) -> None:
    with pytest.raises(TaskError) as excinfo:
        parse_task(name)
    assert fragment in str(excinfo.value)
    assert repr(name) in str(excinfo.value)


def test_task_error_is_value_error() -> None:
    assert issubclass(TaskError, ValueError)
    with pytest.raises(ValueError):
        parse_task(123)  # type: ignore[arg-type]


def test_robot_of() -> None:
    assert robot_of("walker2d-medium-expert-v2") == "walker2d"
    assert robot_of("hopper") == "hopper"
    with pytest.raises(TaskError, match="expected one of"):
        robot_of("ant-medium-v2")


@pytest.mark.parametrize("robot", sorted(SIZES))
def test_normalized_score_reference_points(robot: str) -> None:
    lo, hi = REF_SCORES[robot]
    assert normalized_score(robot, lo) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(robot, hi) == pytest.approx(100.0)
    assert normalized_score(robot, (lo + hi) / 2) == pytest.approx(50.0)
    info = parse_task(f"{robot}-medium-v2")
    assert info.normalized_score(lo) == pytest.approx(0.0, abs=1e-9)
    assert info.normalized_score(hi) == pytest.approx(100.0)
    # any task name of the robot works as the first argument
    assert normalized_score(f"{robot}-expert-v0", hi) == pytest.approx(100.0)


def test_normalized_score_unknown_robot() -> None:
    with pytest.raises(TaskError):
        normalized_score("ant", 0.0)


def test_task_info_is_frozen() -> None:
    info = parse_task("hopper-medium-v2")
    with pytest.raises(AttributeError):
        info.obs_dim = 3  # type: ignore[misc]
