"""Small D4RL-format datasets collected in the real simulator, for tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from offlinerlkit.datasets import write_d4rl_hdf5
from offlinerlkit.envs import make_env
from offlinerlkit.utils.tasks import parse_task


def collect(task: str, num_steps: int = 1200, *, seed: int = 0, max_episode_steps: int = 200
            ) -> dict[str, np.ndarray]:
    """Random-action transitions in D4RL's raw layout (with timeouts, qpos and qvel)."""
    env = make_env(task, seed=seed)
    rng = np.random.default_rng(seed)
    keys = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
            "infos/qpos", "infos/qvel")
    out: dict[str, list] = {k: [] for k in keys}
    obs, _ = env.reset()
    steps = 0
    for _ in range(num_steps):
        sim = env.unwrapped.data
        out["infos/qpos"].append(sim.qpos.copy())
        out["infos/qvel"].append(sim.qvel.copy())
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        timeout = truncated or steps >= max_episode_steps
        for k, v in zip(keys[:6], (obs, action, reward, next_obs, terminated, timeout and not terminated)):
            out[k].append(v)
        obs = next_obs
        if terminated or timeout:
            obs, _ = env.reset()
            steps = 0
    env.close()
    data = {k: np.asarray(v) for k, v in out.items()}
    for k in ("observations", "actions", "rewards", "next_observations"):
        data[k] = data[k].astype(np.float32)
    data["terminals"] = data["terminals"].astype(bool)
    data["timeouts"] = data["timeouts"].astype(bool)
    return data


def write_task_file(folder: Path, task: str, num_steps: int = 1200) -> Path:
    """Write `<folder>/<D4RL file name of task>` with simulator data; returns its path."""
    return write_d4rl_hdf5(Path(folder) / parse_task(task).d4rl_file_name, collect(task, num_steps),
                           metadata={"source": "cocoa-rl tests: uniform random actions"})
