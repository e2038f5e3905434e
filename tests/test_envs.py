"""Tests of `offlinerlkit.envs.make_env`: gymnasium `-v4` MuJoCo envs, float32, limits, seeding."""
from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

from offlinerlkit.envs import make_env, task_of
from offlinerlkit.utils.tasks import parse_task

TASKS = ["halfcheetah-medium-v2", "hopper-medium-replay-v2", "walker2d-random-v2"]


@pytest.mark.parametrize("task", TASKS)
def test_sizes_dtype_and_gym_id(task: str) -> None:
    info = parse_task(task)
    env = make_env(task, seed=0)
    assert env.unwrapped.spec.id == info.gym_id
    assert env.spec.max_episode_steps == info.max_episode_steps == 1000
    assert env.observation_space.shape == (info.obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (info.action_dim,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)

    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (info.obs_dim,)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.dtype == np.float32 and obs.shape == (info.obs_dim,)
    assert np.isfinite(reward) and not truncated


def test_accepts_task_info_and_exposes_it() -> None:
    info = parse_task("hopper-expert-v2")
    env = make_env(info)
    assert env.unwrapped.spec.id == "Hopper-v4"
    assert task_of(env) == info
    assert task_of(make_env("walker2d-medium-v2")) == parse_task("walker2d-medium-v2")
    # found through wrappers added by the caller, absent on plain gymnasium envs
    assert task_of(gym.wrappers.RecordEpisodeStatistics(env)) == info
    assert task_of(gym.make("CartPole-v1")) is None


def test_v4_deprecation_warning_silenced_and_nothing_else() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env("hopper-medium-v2", seed=0)
        env.reset()
        env.step(env.action_space.sample())
    assert not [w for w in caught if "out of date" in str(w.message)]
    assert not caught, [str(w.message) for w in caught]


def test_mujoco_compile_warning_goes_to_logging(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """HalfCheetah's model triggers MuJoCo's `settotalmass` deprecation: logged, not written to
    MUJOCO_LOG.TXT in the working directory; MuJoCo's own handler is restored afterwards."""
    import mujoco

    monkeypatch.chdir(tmp_path)
    with caplog.at_level("DEBUG", logger="offlinerlkit.envs.make"):
        make_env("halfcheetah-medium-v2")
    assert any("settotalmass" in record.getMessage() for record in caplog.records)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert mujoco.get_mju_user_warning() is None


def test_truncated_after_1000_steps() -> None:
    env = make_env("halfcheetah-medium-v2", seed=0)  # HalfCheetah never terminates
    env.reset()
    zeros = np.zeros(env.action_space.shape, dtype=np.float32)
    for step in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(zeros)
        assert not terminated
        assert truncated == (step == 1000)


def _rollout(env: gym.Env, num_episodes: int, num_steps: int) -> np.ndarray:
    """Observations of a few short random-action episodes run back to back (no reset seeds)."""
    rows = []
    for _ in range(num_episodes):
        obs, _ = env.reset()
        rows.append(obs)
        for _ in range(num_steps):
            obs, *_ = env.step(env.action_space.sample())
            rows.append(obs)
    return np.stack(rows)


@pytest.mark.parametrize("task", TASKS)
def test_seed_reproducible(task: str) -> None:
    first = _rollout(make_env(task, seed=7), num_episodes=3, num_steps=5)
    second = _rollout(make_env(task, seed=7), num_episodes=3, num_steps=5)
    other = _rollout(make_env(task, seed=8), num_episodes=3, num_steps=5)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.filterwarnings("ignore:.*Hopper-v4 is out of date:DeprecationWarning")
def test_seed_applies_to_first_reset_only() -> None:
    """make_env(seed) followed by plain resets equals a gymnasium env reset once with that seed."""
    env = make_env("hopper-medium-v2", seed=3)
    reference = gym.make("Hopper-v4")
    ref_first, _ = reference.reset(seed=3)
    ref_second, _ = reference.reset()
    first, _ = env.reset()
    second, _ = env.reset()
    np.testing.assert_array_equal(first, ref_first.astype(np.float32))
    np.testing.assert_array_equal(second, ref_second.astype(np.float32))
    assert not np.array_equal(first, second)


def test_explicit_reset_seed_wins() -> None:
    a, _ = make_env("hopper-medium-v2", seed=1).reset(seed=5)
    b, _ = make_env("hopper-medium-v2", seed=2).reset(seed=5)
    np.testing.assert_array_equal(a, b)


def test_action_space_seeded() -> None:
    a = make_env("walker2d-medium-v2", seed=4).action_space.sample()
    b = make_env("walker2d-medium-v2", seed=4).action_space.sample()
    np.testing.assert_array_equal(a, b)


def test_unknown_task() -> None:
    from offlinerlkit.utils.tasks import TaskError

    with pytest.raises(TaskError):
        make_env("ant-medium-v2")


def test_missing_mujoco_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "gymnasium\[mujoco\]"'):
        make_env("hopper-medium-v2")
