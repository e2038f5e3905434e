"""Reward transforms (spec 2.3): trajectory splitting, return-range normalisation, z-score, shift."""
from __future__ import annotations

import numpy as np
import pytest

from offlinerlkit.datasets.errors import DatasetError
from offlinerlkit.datasets.transforms import (
    normalize_rewards_by_return_range,
    shift_rewards,
    trajectory_ends,
    trajectory_returns,
    zscore_rewards,
)


def _chain(starts: list[float], lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """2-D states whose first coordinate walks +1 per step; one continuous chain per start."""
    xs = np.concatenate([s0 + np.arange(length) for s0, length in zip(starts, lengths)])
    obs = np.stack([xs, np.zeros_like(xs)], 1).astype(np.float32)
    next_obs = obs.copy()
    next_obs[:, 0] += 1
    return obs, next_obs


@pytest.fixture
def hand_made() -> dict[str, np.ndarray]:
    """Four trajectories in 9 rows.

    * rows 0-1: cut by a terminal at row 1, although obs[2] == next_obs[1] (continuity holds);
    * rows 2-3: cut by a discontinuity after row 3 (obs[4] = 100 != next_obs[3] = 4);
    * rows 4-6: continuous, with a gap of 1e-7 (below the 1e-6 tolerance) after row 4;
    * rows 7-8: ends at the last index with no terminal and nothing after it.
    """
    obs, next_obs = _chain([0.0, 100.0, 200.0], [4, 3, 2])
    terminals = np.zeros(9, bool)
    terminals[1] = True
    obs[5, 1] += 1e-7  # tiny mismatch inside the second chain: not a boundary
    rewards = np.array([1, 2, 3, -4, 5, 0, 2, 0.5, 0.5], np.float32)
    return {"observations": obs, "actions": np.zeros((9, 1), np.float32),
            "next_observations": next_obs, "rewards": rewards, "terminals": terminals}


def test_trajectory_ends_terminal_discontinuity_and_last_index(hand_made) -> None:
    ends = trajectory_ends(hand_made)
    assert np.flatnonzero(ends).tolist() == [1, 3, 6, 8]
    np.testing.assert_allclose(trajectory_returns(hand_made), [3.0, -1.0, 7.0, 1.0])


def test_trajectory_ends_detects_multidimensional_gap() -> None:
    obs, next_obs = _chain([0.0], [3])
    obs[2, 1] = 2e-6  # only the second coordinate jumps
    data = {"observations": obs, "next_observations": next_obs, "terminals": np.zeros(3, bool),
            "rewards": np.zeros(3, np.float32)}
    assert trajectory_ends(data).tolist() == [False, True, True]


def test_normalize_by_return_range_hand_computed(hand_made) -> None:
    out = normalize_rewards_by_return_range(hand_made)
    # returns 3, -1, 7, 1 -> range 8 -> factor 1000 / 8
    np.testing.assert_allclose(out["rewards"], hand_made["rewards"] * 125.0, rtol=1e-6)
    assert out["rewards"].dtype == np.float32 and out["rewards"].shape == (9,)
    np.testing.assert_allclose(normalize_rewards_by_return_range(hand_made, scale=8.0)["rewards"],
                               hand_made["rewards"], rtol=1e-6)


def test_transforms_return_new_dict_and_leave_input_untouched(hand_made) -> None:
    before = {k: v.copy() for k, v in hand_made.items()}
    for fn in (normalize_rewards_by_return_range, zscore_rewards,
               lambda d: shift_rewards(d, shift=-1.0)):
        out = fn(hand_made)
        assert out is not hand_made and out["rewards"] is not hand_made["rewards"]
        assert set(out) == set(hand_made)
        assert out["observations"] is hand_made["observations"]  # untouched arrays are shared
        for key, value in before.items():
            np.testing.assert_array_equal(hand_made[key], value)


def test_normalize_matches_loop_reference_on_random_data() -> None:
    """The vectorised split equals the original per-row loop, on random cuts and terminals."""
    rng = np.random.default_rng(0)
    n = 500
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    next_obs = np.roll(obs, -1, axis=0)
    jumps = rng.random(n) < 0.03
    next_obs[jumps] += 0.5
    terminals = rng.random(n) < 0.02
    rewards = rng.normal(size=n).astype(np.float32)
    data = {"observations": obs, "next_observations": next_obs, "terminals": terminals,
            "rewards": rewards, "actions": np.zeros((n, 1), np.float32)}

    returns, current = [], 0.0
    for i in range(n):  # the original's loop
        current += float(rewards[i])
        cut = i == n - 1 or terminals[i] or np.linalg.norm(obs[i + 1] - next_obs[i]) > 1e-6
        if cut:
            returns.append(current)
            current = 0.0
    np.testing.assert_allclose(trajectory_returns(data), returns, rtol=1e-5, atol=1e-5)
    expected = rewards / (max(returns) - min(returns)) * 1000.0
    np.testing.assert_allclose(normalize_rewards_by_return_range(data)["rewards"], expected,
                               rtol=1e-5)


def test_normalize_keeps_column_shape() -> None:
    obs, next_obs = _chain([0.0, 50.0], [2, 2])
    data = {"observations": obs, "next_observations": next_obs, "terminals": np.zeros(4, bool),
            "rewards": np.array([[1.0], [1.0], [0.0], [3.0]], np.float32)}
    out = normalize_rewards_by_return_range(data, scale=2.0)  # returns 2, 3: range 1
    assert out["rewards"].shape == (4, 1)
    np.testing.assert_allclose(out["rewards"][:, 0], [2.0, 2.0, 0.0, 6.0])


def test_normalize_equal_returns_raises() -> None:
    obs, next_obs = _chain([0.0, 50.0], [2, 2])
    data = {"observations": obs, "next_observations": next_obs, "terminals": np.zeros(4, bool),
            "rewards": np.array([1.0, 1.0, 0.5, 1.5], np.float32)}
    with pytest.raises(DatasetError, match="same return"):
        normalize_rewards_by_return_range(data)
    one = {k: v[:2] for k, v in data.items()}  # a single trajectory
    with pytest.raises(DatasetError, match="same return"):
        normalize_rewards_by_return_range(one)


def test_zscore_rewards() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 6.0], np.float32)
    out = zscore_rewards({"rewards": rewards})["rewards"]
    expected = (rewards - 3.0) / (np.sqrt(3.5) + 1e-3)  # population std of [1, 2, 3, 6]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    const = zscore_rewards({"rewards": np.full(3, 2.0, np.float32)}, eps=0.5)["rewards"]
    np.testing.assert_array_equal(const, np.zeros(3, np.float32))  # std 0: divided by eps


def test_shift_rewards_antmaze_forms() -> None:
    rewards = np.array([0.0, 1.0], np.float32)
    np.testing.assert_array_equal(shift_rewards({"rewards": rewards}, shift=-1.0)["rewards"],
                                  [-1.0, 0.0])
    np.testing.assert_array_equal(
        shift_rewards({"rewards": rewards}, shift=-0.5, scale=4.0)["rewards"], [-2.0, 2.0])
    ints = shift_rewards({"rewards": np.array([0, 1])}, shift=0.5)["rewards"]
    assert ints.dtype == np.float32


def test_bad_shapes_raise() -> None:
    with pytest.raises(DatasetError):
        zscore_rewards({"rewards": np.zeros((3, 2), np.float32)})
    obs, next_obs = _chain([0.0], [3])
    with pytest.raises(DatasetError):
        trajectory_ends({"observations": obs, "next_observations": next_obs[:2],
                         "terminals": np.zeros(3, bool)})
    with pytest.raises(DatasetError, match="rows"):
        trajectory_returns({"observations": obs, "next_observations": next_obs,
                            "terminals": np.zeros(3, bool), "rewards": np.zeros(4, np.float32)})
