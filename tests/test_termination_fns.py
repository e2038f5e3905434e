"""Tests of `offlinerlkit.dynamics.termination_fns`.

The rules are checked on hand-made vectors (every threshold, NaN, the ±100 rules, shapes) and
against the simulators' own healthy checks on real gymnasium `-v4` states: long rollouts with
random and biased actions (continued after the fall, so that fallen states are well represented)
and states set with `set_state(qpos, qvel)` just inside and just outside each threshold.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from offlinerlkit.dynamics.termination_fns import (
    TerminationFn,
    get_termination_fn,
    halfcheetah_termination_fn,
    hopper_termination_fn,
    never_terminate,
    walker2d_termination_fn,
)
from offlinerlkit.utils.tasks import TaskError

FNS = {
    "halfcheetah": (halfcheetah_termination_fn, 17, 6),
    "hopper": (hopper_termination_fn, 11, 3),
    "walker2d": (walker2d_termination_fn, 17, 6),
}


def _done(fn: TerminationFn, next_obs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Call `fn` on a batch of next observations (obs and action are irrelevant); bool `[B]`."""
    next_obs = torch.as_tensor(next_obs)
    obs = torch.zeros_like(next_obs)
    action = torch.zeros(next_obs.shape[0], 3, dtype=next_obs.dtype)
    done = fn(obs, action, next_obs)
    assert done.dtype == torch.bool and done.shape == (next_obs.shape[0], 1)
    return done[:, 0].numpy()


def _healthy_hopper(batch: int = 1) -> torch.Tensor:
    obs = torch.zeros(batch, 11)
    obs[:, 0] = 1.25
    return obs


def _healthy_walker(batch: int = 1) -> torch.Tensor:
    obs = torch.zeros(batch, 17)
    obs[:, 0] = 1.25
    return obs


# --- vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("robot", sorted(FNS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device(robot: str, dtype: torch.dtype) -> None:
    fn, obs_dim, action_dim = FNS[robot]
    for device in ("cpu", "meta"):
        obs = torch.zeros(5, obs_dim, dtype=dtype, device=device)
        action = torch.zeros(5, action_dim, dtype=dtype, device=device)
        for f in (fn, never_terminate):
            done = f(obs, action, obs)
            assert done.shape == (5, 1) and done.dtype == torch.bool
            assert done.device == obs.device
    # extra leading dimensions are kept: [E, B, S] -> [E, B, 1]
    obs, action = torch.zeros(2, 4, obs_dim), torch.zeros(2, 4, action_dim)
    assert fn(obs, action, obs).shape == (2, 4, 1)
    # an empty batch works
    obs, action = torch.zeros(0, obs_dim), torch.zeros(0, action_dim)
    assert fn(obs, action, obs).shape == (0, 1)


def test_halfcheetah_hundred_rule() -> None:
    obs = torch.zeros(8, 17)
    obs[1, 3] = 99.99
    obs[2, 16] = -99.99
    obs[3, 0] = 100.0
    obs[4, 5] = -100.0
    obs[5, 9] = 1e6
    obs[6, 2] = float("nan")
    obs[7, 7] = float("-inf")
    np.testing.assert_array_equal(_done(halfcheetah_termination_fn, obs), [0, 0, 0, 1, 1, 1, 1, 1])


def test_hopper_rules() -> None:
    rows = []

    def case(index: int, value: float, done: bool) -> None:
        obs = _healthy_hopper()[0]
        obs[index] = value
        rows.append((obs, done))

    case(0, 0.7 + 1e-4, False)
    case(0, 0.7, True)  # strict: height must exceed 0.7
    case(0, 0.5, True)
    case(0, 150.0, False)  # the height is not bounded by the |.| < 100 rule, only finite
    case(0, float("inf"), True)
    case(1, 0.2 - 1e-4, False)
    case(1, -0.2 + 1e-4, False)
    case(1, 0.2, True)
    case(1, -0.2, True)
    case(1, -0.3, True)  # upstream took abs(angle < 0.2), which kept negative angles alive
    case(1, -5.0, True)
    case(4, 99.9, False)
    case(4, 100.0, True)
    case(10, -100.0, True)
    case(7, float("nan"), True)
    case(7, float("inf"), True)
    next_obs = torch.stack([obs for obs, _ in rows])
    np.testing.assert_array_equal(_done(hopper_termination_fn, next_obs), [d for _, d in rows])


def test_walker2d_rules() -> None:
    rows = []

    def case(index: int, value: float, done: bool) -> None:
        obs = _healthy_walker()[0]
        obs[index] = value
        rows.append((obs, done))

    case(0, 0.8 + 1e-4, False)
    case(0, 0.8, True)
    case(0, 2.0 - 1e-4, False)
    case(0, 2.0, True)
    case(0, 150.0, True)
    case(1, 1.0 - 1e-4, False)
    case(1, -1.0 + 1e-4, False)
    case(1, 1.0, True)
    case(1, -1.0, True)
    case(5, 99.9, False)
    case(5, 100.0, True)
    case(16, -100.0, True)
    case(9, float("nan"), True)
    next_obs = torch.stack([obs for obs, _ in rows])
    np.testing.assert_array_equal(_done(walker2d_termination_fn, next_obs), [d for _, d in rows])


def test_rules_use_next_obs_only() -> None:
    healthy, fallen = _healthy_hopper(), _healthy_hopper()
    fallen[:, 0] = 0.1
    action = torch.zeros(1, 3)
    assert hopper_termination_fn(fallen, action, healthy).item() is False
    assert hopper_termination_fn(healthy, action, fallen).item() is True


def test_never_terminate() -> None:
    obs = torch.full((4, 11), float("nan"))
    assert not never_terminate(obs, torch.zeros(4, 3), obs).any()


@pytest.mark.parametrize(
    ("task", "fn"),
    [
        ("halfcheetah-medium-expert-v2", halfcheetah_termination_fn),
        ("hopper-medium-replay-v2", hopper_termination_fn),
        ("walker2d-random-v0", walker2d_termination_fn),
        ("Hopper-v4", hopper_termination_fn),
        ("walker2d", walker2d_termination_fn),
    ],
)
def test_get_termination_fn(task: str, fn: TerminationFn) -> None:
    assert get_termination_fn(task) is fn


@pytest.mark.parametrize("task", ["ant-medium-v2", "halfcheetahvel", "pen-human-v1", ""])
def test_get_termination_fn_unknown(task: str) -> None:
    expected = r"supported robots are \['halfcheetah', 'hopper', 'walker2d'\]"
    with pytest.raises(TaskError, match=expected):
        get_termination_fn(task)


# --- real simulator states ------------------------------------------------------------------------


def _policy(kind: int, rng: np.random.Generator, action_dim: int):
    """An episode's start kick and actions, by `kind`.

    0: uniform; 1: biased noisy; 2: all +1 or all -1 (falls forward); 3: bang-bang gait;
    4: torso kicked backward, then all +1 (falls backward); 5: torso kicked forward, uniform.
    Returns `(kick, act)`: the torso angular velocity to start with (or None) and `act(step)`.
    """
    bias = rng.uniform(-1.0, 1.0, action_dim)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    kick = {4: rng.uniform(4.0, 8.0), 5: -rng.uniform(2.0, 6.0)}.get(kind)

    def act(step: int) -> np.ndarray:
        if kind in (0, 5):
            action = rng.uniform(-1.0, 1.0, action_dim)
        elif kind == 1:
            action = bias + 0.3 * rng.normal(size=action_dim)
        elif kind == 2:
            action = np.full(action_dim, sign)
        elif kind == 3:
            action = np.sign(np.sin(step / 5.0)) * bias + 0.2 * rng.normal(size=action_dim)
        else:
            action = 1.0 - 0.1 * rng.random(action_dim)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return kick, act


def _simulate(task: str, *, num_episodes: int, steps_after_fall: int, seed: int = 0):
    """Roll out episodes (see `_policy`), continuing `steps_after_fall` steps past termination.

    Returns float32 `obs, action, next_obs`, the simulator's `terminated` flags and the simulator's
    `(z, angle) = qpos[1:3]` after each step.
    """
    from offlinerlkit.envs import make_env

    env = make_env(task, seed=seed)
    rng = np.random.default_rng(seed)
    action_dim = env.action_space.shape[0]
    obs_rows, action_rows, next_rows, terminated_rows, pose_rows = [], [], [], [], []
    for episode in range(num_episodes):
        kick, act = _policy(episode % 6, rng, action_dim)
        obs, _ = env.reset()
        if kick is not None:  # start from the reset pose with the torso rotating
            sim = env.unwrapped
            qvel = sim.data.qvel.copy()
            qvel[2] = kick
            sim.set_state(sim.data.qpos.copy(), qvel)
            obs = env.observation(sim._get_obs())
        after_fall = 0
        for step in range(1000):
            action = act(step)
            next_obs, _, terminated, truncated, _ = env.step(action)
            obs_rows.append(obs)
            action_rows.append(action)
            next_rows.append(next_obs)
            terminated_rows.append(terminated)
            pose_rows.append(env.unwrapped.data.qpos[1:3].copy())
            obs = next_obs
            after_fall += int(terminated)
            if truncated or after_fall > steps_after_fall:
                break
    stack = np.stack
    return (
        stack(obs_rows), stack(action_rows), stack(next_rows),
        np.asarray(terminated_rows, dtype=bool), stack(pose_rows),
    )


@pytest.mark.parametrize(
    ("task", "z_min", "z_max", "angle_max"),
    [("hopper-medium-v2", 0.7, np.inf, 0.2), ("walker2d-medium-v2", 0.8, 2.0, 1.0)],
)
def test_agrees_with_simulator_on_rollouts(
    task: str, z_min: float, z_max: float, angle_max: float
) -> None:
    obs, action, next_obs, terminated, pose = _simulate(task, num_episodes=96, steps_after_fall=30)
    assert obs.dtype == next_obs.dtype == np.float32
    done = get_termination_fn(task)(
        torch.from_numpy(obs), torch.from_numpy(action), torch.from_numpy(next_obs)
    )[:, 0].numpy()
    mismatches = np.flatnonzero(done != terminated)
    first = next_obs[mismatches[:3]]
    assert mismatches.size == 0, f"{mismatches.size} mismatches, first next_obs: {first}"
    # both outcomes, and every way of falling, are well represented (height alone deciding is
    # rare in rollouts: the boundary test covers it)
    z, angle = pose[:, 0], pose[:, 1]
    assert (~terminated).sum() >= 1000 and terminated.sum() >= 2000
    assert (z <= z_min).sum() >= 100, "no state fell below the height threshold"
    assert (angle <= -angle_max).sum() >= 100, "no state fell forward"
    assert (angle >= angle_max).sum() >= 100, "no state fell backward"
    assert ((z > z_min) & (z < z_max) & (np.abs(angle) >= angle_max)).sum() >= 100  # angle alone


def _boundary_states(task: str, rng: np.random.Generator):
    """(qpos, qvel) pairs with height and angle just inside / outside the healthy thresholds."""
    if task.startswith("hopper"):
        nq, nv = 6, 6
        heights = [0.7 - 1e-2, 0.7 - 1e-5, 0.7 + 1e-5, 0.7 + 1e-2, 1.25, 3.0]
        angles = [-0.2 - 1e-3, -0.2 - 1e-5, -0.2 + 1e-5, 0.0, 0.2 - 1e-5, 0.2 + 1e-5, 0.2 + 1e-3]
        joint_extremes = [99.99, 100.01, -99.99, -100.01]  # |state| < 100 on joint positions
    else:
        nq, nv = 9, 9
        heights = [0.8 - 1e-2, 0.8 - 1e-5, 0.8 + 1e-5, 1.25, 2.0 - 1e-5, 2.0 + 1e-5, 2.1]
        angles = [-1.0 - 1e-3, -1.0 - 1e-5, -1.0 + 1e-5, 0.0, 1.0 - 1e-5, 1.0 + 1e-5, 1.0 + 1e-3]
        joint_extremes = []
    states = []
    for height, angle in itertools.product(heights, angles):
        qpos = np.concatenate([[rng.normal(), height, angle], rng.uniform(-0.5, 0.5, nq - 3)])
        qvel = rng.uniform(-9.0, 9.0, nv)  # inside the observation's ±10 velocity clip
        states.append((qpos, qvel))
    for value in joint_extremes:
        qpos = np.array([0.0, 1.25, 0.0, value, 0.0, 0.0])
        states.append((qpos, np.zeros(nv)))
    return states


@pytest.mark.parametrize("task", ["hopper-medium-v2", "walker2d-medium-v2"])
def test_agrees_with_simulator_at_boundaries(task: str) -> None:
    from offlinerlkit.envs import make_env

    env = make_env(task, seed=0)
    env.reset()
    sim = env.unwrapped
    fn = get_termination_fn(task)
    rows64, expected = [], []
    for qpos, qvel in _boundary_states(task, np.random.default_rng(0)):
        sim.set_state(qpos, qvel)
        rows64.append(sim._get_obs())  # the simulator's own (float64) observation of this state
        expected.append(not sim.is_healthy)
    expected = np.asarray(expected)
    assert expected.sum() >= 10 and (~expected).sum() >= 5
    obs64 = np.stack(rows64)
    obs32 = np.stack([env.observation(row) for row in rows64])  # what make_env returns
    assert obs32.dtype == np.float32
    np.testing.assert_array_equal(_done(fn, obs64), expected)
    np.testing.assert_array_equal(_done(fn, obs32), expected)


def test_hopper_velocity_bound_is_unobservable() -> None:
    """The simulator's |qvel| < 100 check cannot be seen: observations clip velocities to ±10."""
    from offlinerlkit.envs import make_env

    env = make_env("hopper-medium-v2", seed=0)
    env.reset()
    sim = env.unwrapped
    qvel = np.zeros(6)
    qvel[3] = 150.0
    sim.set_state(np.array([0.0, 1.25, 0.0, 0.0, 0.0, 0.0]), qvel)
    obs = env.observation(sim._get_obs())
    assert not sim.is_healthy
    assert obs[8] == 10.0
    assert not _done(hopper_termination_fn, obs[None])[0]


def test_halfcheetah_never_terminates_on_rollouts() -> None:
    obs, action, next_obs, terminated, _ = _simulate(
        "halfcheetah-medium-v2", num_episodes=8, steps_after_fall=0
    )
    assert len(terminated) == 8 * 1000 and not terminated.any()
    done = halfcheetah_termination_fn(
        torch.from_numpy(obs), torch.from_numpy(action), torch.from_numpy(next_obs)
    )
    assert not done.any()
