"""The gymnasium wrapper `make_env` puts around a D4RL task's simulator (imports gymnasium)."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from offlinerlkit.utils.tasks import TaskInfo


class TaskEnv(gym.ObservationWrapper):
    """Casts observations to float32, seeds the first reset and carries the task's `TaskInfo`.

    The simulator's observations are float64; datasets, networks and termination functions use
    float32, so the cast happens once, here. `observation_space` is the wrapped Box with dtype
    float32.

    Args:
        env: the gymnasium environment of the task's robot (a Box observation space).
        task: the task the environment evaluates.
        seed: passed to the first `reset()` that has no seed of its own; `None` for none.
    """

    def __init__(self, env: gym.Env, task: TaskInfo, *, seed: int | None = None) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"expected a Box observation space, got {space}")
        self.observation_space = gym.spaces.Box(
            low=space.low.astype(np.float32),
            high=space.high.astype(np.float32),
            shape=space.shape,
            dtype=np.float32,
        )
        self.task = task
        self._first_reset_seed = seed

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset; the first call falls back on the constructor's seed when `seed` is None."""
        if seed is None:
            seed = self._first_reset_seed
        self._first_reset_seed = None
        return super().reset(seed=seed, options=options)

    def get_rng_state(self) -> dict[str, Any] | None:
        """The simulator's random-generator state (None before it was first seeded or reset)."""
        if getattr(self.env.unwrapped, "_np_random", None) is None:
            return None
        return dict(self.env.unwrapped.np_random.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Continue the random stream from `state` (resume); the pending first-reset seed is dropped."""
        self.env.unwrapped.np_random.bit_generator.state = dict(state)
        self._first_reset_seed = None

    def get_sim_state(self) -> dict[str, Any]:
        """Everything that decides the next steps mid-episode, for an exact resume.

        `physics`: MuJoCo's integration state (`mjSTATE_INTEGRATION`: time, qpos, qvel, act,
        the solver's warm start, controls and applied forces), `elapsed_steps`: the time
        limit's step count, `rng`: the reset stream (`get_rng_state`). Requires a reset env.
        """
        import mujoco

        sim = self.env.unwrapped
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(sim.model, spec), dtype=np.float64)
        mujoco.mj_getState(sim.model, sim.data, physics, spec)
        return {"physics": physics, "elapsed_steps": int(_time_limit(self.env)._elapsed_steps),
                "rng": self.get_rng_state()}

    def set_sim_state(self, state: dict[str, Any]) -> None:
        """Continue exactly where `get_sim_state` left off (resets first if never reset)."""
        import mujoco

        if not getattr(self.env, "_has_reset", True) or _time_limit(self.env)._elapsed_steps is None:
            self.reset()
        sim = self.env.unwrapped
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.asarray(state["physics"], dtype=np.float64)
        if physics.shape != (mujoco.mj_stateSize(sim.model, spec),):
            raise ValueError(f"saved simulator state has shape {physics.shape}, this "
                             f"{self.task.robot} simulator needs "
                             f"({mujoco.mj_stateSize(sim.model, spec)},)")
        mujoco.mj_setState(sim.model, sim.data, physics, spec)
        mujoco.mj_forward(sim.model, sim.data)
        _time_limit(self.env)._elapsed_steps = int(state["elapsed_steps"])
        if state.get("rng") is not None:
            self.set_rng_state(state["rng"])

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Return the observation as a float32 array."""
        return np.asarray(observation, dtype=np.float32)


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit:
    """The `TimeLimit` wrapper inside `env` (make_env always adds one)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    raise TypeError("the environment has no TimeLimit wrapper (build it with make_env)")
