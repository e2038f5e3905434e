"""The speeds a results grid's compute estimate is made from (`run_example/run_results.py`).

Measured on this machine with the benchmark workloads (`workloads.py`, the paper's network
sizes) at the task's observation/action sizes, on the current torch thread setting:

* each (algorithm, variant) policy update, batch 256 (`suite.measure_update`; model-free COCOA
  variants with the dataset's anchors precomputed, as they train);
* simulator steps with a 256x256 actor choosing the actions (evaluation, data sampling);
* dynamics-ensemble training steps (7 members x 200x4, batch 256);
* online SAC (medium-replay data): one simulator step and one SAC update (MOPO alone's update
  is SAC's, 256x2, batch 256) per environment step.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Optional

import torch
from suite import measure_update
from workloads import dynamics_train_its, make_batch, new_ensemble, synthetic_transitions

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.envs import make_env
from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.nets.mlp import MLP
from offlinerlkit.pipeline.grid import Rates
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.tasks import TaskInfo

__all__ = ["env_steps_per_second", "measure_rates"]


def env_steps_per_second(task: TaskInfo, *, steps: int = 500, seed: int = 0) -> float:
    """Simulator steps/s of `task`'s environment with an untrained 256x256 actor acting."""
    env = make_env(task, seed=seed)
    actor = DeterministicActor(MLP(task.obs_dim, (256, 256)), task.action_dim)
    obs, _ = env.reset(seed=seed)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            action = actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return steps / seconds


def measure_rates(task: TaskInfo, pairs: Sequence[tuple[str, str]], *, repeats: int = 10,
                  device: Optional[torch.device] = None) -> Rates:
    """Measure every rate of `Rates` for the (algorithm, variant) pairs of a grid.

    Args:
        task: the robot's task (sizes, simulator).
        pairs: (algo, variant) of each update to time.
        repeats: timed updates (median) per pair, after one warm-up.
        device: where the networks run (default: the CPU).
    """
    device = device or torch.device("cpu")
    spec = EnvSpec(task.obs_dim, task.action_dim)
    batch = make_batch(spec, 256, device, seed=0)
    updates: dict[tuple[str, str], float] = {}
    for algo, variant in dict.fromkeys(list(pairs) + [("mopo", "alone")]):
        cocoa = variant == "cocoa"
        stats = measure_update(algo, cocoa, spec, batch, device, repeats, 1,
                               precomputed_anchors=cocoa and not ALGORITHMS[algo].model_based)
        updates[(algo, variant)] = 1.0 / stats.seconds
    env_rate = env_steps_per_second(task)
    gen = torch.Generator().manual_seed(0)
    dynamics = new_ensemble(spec, "forward", device)
    x, y = dynamics.training_pairs(*synthetic_transitions(4096, spec, device, gen))
    dyn_rate = dynamics_train_its(dynamics, x, y, steps=5, batch_size=256, repeats=3,
                                  device=device, generator=gen)
    sac_rate = 1.0 / (1.0 / updates[("mopo", "alone")] + 1.0 / env_rate)
    return Rates(updates={p: updates[p] for p in pairs}, env_steps=env_rate,
                 dynamics_steps=dyn_rate, sac_steps=sac_rate)
