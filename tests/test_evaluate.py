"""Tests of `offlinerlkit.policy_trainer.evaluate`: the evaluation protocol and its metrics."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from offlinerlkit.policy_trainer.evaluate import EvalResult, evaluate_policy
from offlinerlkit.utils.tasks import normalized_score, parse_task

TASK = "hopper-medium-v2"
METRIC_KEYS = {
    "eval/normalized_episode_reward",
    "eval/normalized_episode_reward_std",
    "eval/episode_reward",
    "eval/episode_reward_std",
    "eval/episode_length",
    "eval/episode_length_std",
}


def _zeros(action_dim: int):
    def policy(obs: np.ndarray) -> np.ndarray:
        return np.zeros(action_dim, dtype=np.float32)

    return policy


# --- EvalResult -----------------------------------------------------------------------------------


def test_metrics_from_known_returns() -> None:
    result = EvalResult(
        returns=np.array([1.0, 2.0, 3.0]), lengths=np.array([10, 20, 30]),
        ref_min_score=0.0, ref_max_score=10.0,
    )
    metrics = result.to_metrics()
    assert set(metrics) == METRIC_KEYS
    assert all(type(value) is float for value in metrics.values())
    assert metrics["eval/normalized_episode_reward"] == pytest.approx(20.0)
    assert metrics["eval/normalized_episode_reward_std"] == pytest.approx(100 * np.sqrt(2 / 3) / 10)
    assert metrics["eval/episode_reward"] == pytest.approx(2.0)
    assert metrics["eval/episode_reward_std"] == pytest.approx(np.sqrt(2 / 3))  # population std
    assert metrics["eval/episode_length"] == pytest.approx(20.0)
    assert metrics["eval/episode_length_std"] == pytest.approx(np.sqrt(200 / 3))
    assert result.num_episodes == 3


def test_no_reference_scores_omits_normalised_keys() -> None:
    result = EvalResult(returns=np.array([5.0]), lengths=np.array([7]))
    assert result.normalized_score is None and result.normalized_score_std is None
    assert set(result.to_metrics()) == METRIC_KEYS - {
        "eval/normalized_episode_reward",
        "eval/normalized_episode_reward_std",
    }


def test_result_is_frozen_and_read_only() -> None:
    result = EvalResult(returns=[1.0, 2.0], lengths=[3, 4])
    assert result.returns.dtype == np.float64 and result.lengths.dtype == np.int64
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.returns = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError):
        result.returns[0] = 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"returns": [1.0, 2.0], "lengths": [1]},
        {"returns": [], "lengths": []},
        {"returns": [1.0], "lengths": [1], "ref_min_score": 0.0},
    ],
)
def test_result_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EvalResult(**kwargs)


# --- evaluate_policy on a real simulator ----------------------------------------------------------


@pytest.fixture(scope="module")
def gym():
    import gymnasium

    return gymnasium


def _manual_rollout(gym, seed: int, num_episodes: int) -> tuple[list[float], list[int]]:
    """The protocol written out by hand on a plain gymnasium env: seed once, zero actions."""
    env = gym.make("Hopper-v4")
    returns, lengths = [], []
    for episode in range(num_episodes):
        env.reset(seed=seed if episode == 0 else None)
        total, length, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.zeros(3, dtype=np.float32))
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    return returns, lengths


@pytest.mark.filterwarnings("ignore:.*Hopper-v4 is out of date:DeprecationWarning")
def test_matches_manual_rollout(gym) -> None:
    from offlinerlkit.envs import make_env

    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs)
        return np.zeros(3, dtype=np.float32)

    result = evaluate_policy(policy, make_env(TASK, seed=0), num_episodes=3, task=TASK)
    returns, lengths = _manual_rollout(gym, seed=0, num_episodes=3)
    np.testing.assert_array_equal(result.lengths, lengths)
    np.testing.assert_array_equal(result.returns, returns)
    assert all(obs.dtype == np.float32 and obs.shape == (11,) for obs in seen)
    assert len(seen) == sum(lengths)
    assert len(set(lengths)) > 1  # episodes differ: the seed is applied once, not per episode
    assert max(lengths) < 1000  # zero actions fall over: the episodes end on `terminated`

    info = parse_task(TASK)
    metrics = result.to_metrics()
    assert set(metrics) == METRIC_KEYS
    assert metrics["eval/normalized_episode_reward"] == pytest.approx(
        normalized_score("hopper", np.mean(returns))
    )
    assert metrics["eval/normalized_episode_reward_std"] == pytest.approx(
        100 * np.std(returns) / (info.ref_max_score - info.ref_min_score)
    )
    assert metrics["eval/episode_reward"] == pytest.approx(np.mean(returns))
    assert metrics["eval/episode_reward_std"] == pytest.approx(np.std(returns))
    assert metrics["eval/episode_length"] == pytest.approx(np.mean(lengths))
    assert metrics["eval/episode_length_std"] == pytest.approx(np.std(lengths))


def test_same_seed_same_result(gym) -> None:
    from offlinerlkit.envs import make_env

    def run(seed: int) -> EvalResult:
        return evaluate_policy(_zeros(3), make_env(TASK, seed=seed), num_episodes=3, task=TASK)

    first, second, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first.returns, second.returns)
    np.testing.assert_array_equal(first.lengths, second.lengths)
    assert first.to_metrics() == second.to_metrics()
    assert not np.array_equal(first.returns, other.returns)


def test_task_info_and_no_task(gym) -> None:
    from offlinerlkit.envs import make_env

    with_info = evaluate_policy(
        _zeros(3), make_env(TASK, seed=0), num_episodes=1, task=parse_task(TASK)
    )
    without = evaluate_policy(_zeros(3), make_env(TASK, seed=0), num_episodes=1)
    assert with_info.normalized_score == pytest.approx(normalized_score(TASK, with_info.returns[0]))
    assert "eval/normalized_episode_reward" not in without.to_metrics()
    np.testing.assert_array_equal(with_info.returns, without.returns)


def test_step_limit_and_truncation(gym) -> None:
    from offlinerlkit.envs import make_env

    capped = evaluate_policy(
        _zeros(3), make_env(TASK, seed=0), num_episodes=2, max_episode_steps=5, progress=True
    )
    np.testing.assert_array_equal(capped.lengths, [5, 5])
    # HalfCheetah never terminates: the episode ends on the env's 1000-step truncation
    cheetah = evaluate_policy(_zeros(6), make_env("halfcheetah-medium-v2", seed=0), num_episodes=1)
    np.testing.assert_array_equal(cheetah.lengths, [1000])


@pytest.mark.parametrize("shape", [(1, 3), (2,), ()])
def test_wrong_action_shape(gym, shape: tuple[int, ...]) -> None:
    from offlinerlkit.envs import make_env

    with pytest.raises(ValueError, match=r"action of shape .* action space has shape \(3,\)"):
        evaluate_policy(lambda obs: np.zeros(shape), make_env(TASK, seed=0), num_episodes=1)


@pytest.mark.parametrize("kwargs", [{"num_episodes": 0}, {"num_episodes": 1, "max_episode_steps": 0}])
def test_bad_counts(gym, kwargs: dict) -> None:
    from offlinerlkit.envs import make_env

    with pytest.raises(ValueError, match="must be positive"):
        evaluate_policy(_zeros(3), make_env(TASK, seed=0), **kwargs)
