"""Replica datasets from saved behaviour policies: no training for random, medium, expert and
medium-expert; medium-replay re-created by SAC up to the medium policy's step.

The project ships D4RL-strength behaviour policies (`SHIPPED_ROOT/policies/<robot>/<level>.pt`,
with `provenance.json`); any folder laid out like a `make_dataset.py` output folder works too.
Sampling uses the seeds of `make_replica` (`replica_seeds`), so the data of a level is the data
`make_replica` would have sampled from that policy with that seed.

medium-replay is SAC's replay buffer up to the medium snapshot: it is not in a policy file, so it
is collected again by an online SAC run with the medium policy's recorded options and seed, cut
at its step (the cost of that many online SAC steps; `benchmarks/suite.py --only online` prints
the steps/s of this machine). The run is the same protocol, not bit-for-bit the original buffer:
float rounding differs between machines.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from offlinerlkit.datasets.replica import (
    POLICY_LEVELS,
    REPLICA_LEVELS,
    REPLICA_VERSION,
    RolloutResult,
    concat_datasets,
    cut_dataset,
    replica_policy_path,
)
from offlinerlkit.replica.behaviour import BehaviourPolicy
from offlinerlkit.replica.make import ReplicaResult, SACTrainOptions, build_sac_trainer
from offlinerlkit.replica.sampling import (
    LevelResult,
    LevelWriter,
    common_metadata,
    episode_returns,
    sample_level,
)
from offlinerlkit.utils.tasks import ROBOTS, TaskInfo, parse_task

log = logging.getLogger(__name__)

__all__ = ["SHIPPED", "SHIPPED_ROOT", "make_from_policies", "policies_root", "shipped_robots"]

#: `policies_root(SHIPPED)`: the behaviour policies that ship with the package.
SHIPPED = "shipped"
#: The folder holding `policies/<robot>/<level>.pt` of the shipped policies.
SHIPPED_ROOT = Path(__file__).resolve().parent


def shipped_robots() -> dict[str, list[str]]:
    """Robots with shipped behaviour policies and their levels."""
    found: dict[str, list[str]] = {}
    for robot in sorted(ROBOTS):
        levels = [lv for lv in POLICY_LEVELS if replica_policy_path(SHIPPED_ROOT, robot, lv).is_file()]
        if levels:
            found[robot] = levels
    return found


def policies_root(source: str | os.PathLike) -> Path:
    """The folder holding `policies/<robot>/<level>.pt`: the package's for `SHIPPED`, else
    `source` itself (a `make_dataset.py` output folder)."""
    return SHIPPED_ROOT if str(source) == SHIPPED else Path(source).expanduser()


def _load(root: Path, robot: str, level: str, device: torch.device | str) -> BehaviourPolicy:
    path = replica_policy_path(root, robot, level)
    if not path.is_file():
        if root == SHIPPED_ROOT:
            shipped = ", ".join(f"{r} ({', '.join(lvs)})" for r, lvs in shipped_robots().items())
            raise FileNotFoundError(
                f"no shipped {level} policy for {robot} (shipped: {shipped or 'none'}); make one "
                f"with `python run_example/make_dataset.py --robot {robot}` (1M SAC steps)")
        raise FileNotFoundError(f"no {level} behaviour policy at {path}; it is written by "
                                f"`make_dataset.py --robot {robot} --out_dir {root}`")
    policy = BehaviourPolicy.load(path, device=device)
    if (policy.robot, policy.level) != (robot, level):
        raise ValueError(f"{path} holds the {policy.robot} {policy.level} policy, not the "
                         f"{robot} {level} one")
    return policy


def make_from_policies(
    robot: str,
    *,
    source: str | os.PathLike,
    levels: Sequence[str],
    out_dir: str | os.PathLike,
    seed: int,
    num_samples: int,
    num_envs: int = 8,
    max_episode_steps: Optional[int] = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
) -> ReplicaResult:
    """Write replica datasets of `robot` sampled from saved behaviour policies.

    Args:
        robot: `hopper`, `halfcheetah` or `walker2d`.
        source: `SHIPPED` or a folder with `policies/<robot>/<level>.pt`.
        levels: a subset of `REPLICA_LEVELS`; medium-replay re-runs SAC (module docstring).
        out_dir: the replica folder to write to.
        seed: sampling seeds as in `make_replica`.
        num_samples: rows of the random, medium and expert datasets.
        num_envs: simulators stepped together.
        max_episode_steps: cut episodes earlier (tests only).
        device: torch device.
        overwrite: replace existing files (otherwise every output is checked first).
        progress: tqdm bars.
    """
    from offlinerlkit.envs import make_env

    if robot not in ROBOTS:
        raise ValueError(f"unknown robot {robot!r}: choose from {sorted(ROBOTS)}")
    levels = list(dict.fromkeys(levels))
    unknown = [lv for lv in levels if lv not in REPLICA_LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels must be a non-empty subset of {list(REPLICA_LEVELS)}, got {levels}")
    root = policies_root(source)
    needed = [lv for lv in POLICY_LEVELS if lv in levels
              or (lv in ("medium", "expert") and "medium-expert" in levels)
              or (lv == "medium" and "medium-replay" in levels)]
    policies = {lv: _load(root, robot, lv, device) for lv in needed}  # all found before any work
    task0 = parse_task(f"{robot}-random-{REPLICA_VERSION}")
    writer = LevelWriter(robot, Path(out_dir).expanduser(), seed=seed, overwrite=overwrite,
                         common=common_metadata(task0, max_episode_steps=max_episode_steps,
                                                seed=seed, num_envs=num_envs))
    if not overwrite:
        existing = [str(writer.path(lv)) for lv in levels if writer.path(lv).exists()]
        if existing:
            raise FileExistsError("these outputs exist and were left untouched: "
                                  + ", ".join(existing) + "; choose another out_dir or pass "
                                  "--overwrite")
    result = ReplicaResult(robot=robot)
    rollouts: dict[str, RolloutResult] = {}
    for lv, behaviour in policies.items():
        if lv not in levels and not (lv != "random" and "medium-expert" in levels):
            continue
        started = time.perf_counter()
        rollout, env_seeds = sample_level(
            behaviour, level=lv, seed=seed, num_samples=num_samples, num_envs=num_envs,
            max_episode_steps=max_episode_steps, progress=progress,
            make_env=lambda s: make_env(task0, seed=s))
        rollouts[lv] = rollout
        path = replica_policy_path(root, robot, lv)
        result.policy_paths[lv] = path
        if lv in levels:
            result.levels[lv] = writer.write(
                lv, rollout.data, returns=rollout.episode_returns,
                num_episodes=rollout.num_episodes, eval_return=behaviour.info.get("eval_return"),
                policy_step=int(behaviour.info.get("train_step", 0)), started=started,
                extra={"behaviour": f"saved {lv} policy", "policy_file": str(path),
                       "sampling_env_seeds": env_seeds,
                       "policy_provenance": json.dumps(behaviour.info, sort_keys=True)})
        result.timings[lv] = time.perf_counter() - started
    if "medium-expert" in levels:
        started = time.perf_counter()
        med, exp = rollouts["medium"], rollouts["expert"]
        result.levels["medium-expert"] = writer.write(
            "medium-expert", concat_datasets([med.data, exp.data]),
            returns=np.concatenate([med.episode_returns, exp.episode_returns]),
            num_episodes=med.num_episodes + exp.num_episodes, eval_return=None,
            policy_step=int(policies["expert"].info.get("train_step", 0)), started=started,
            extra={"behaviour": "medium dataset followed by expert dataset",
                   "medium_rows": int(len(med.data["rewards"])),
                   "medium_policy_file": str(result.policy_paths["medium"]),
                   "expert_policy_file": str(result.policy_paths["expert"])})
        result.timings["medium-expert"] = time.perf_counter() - started
    if "medium-replay" in levels:
        result.levels["medium-replay"] = _recreate_medium_replay(
            policies["medium"], writer, task0, device=device, progress=progress,
            max_episode_steps=max_episode_steps)
        result.timings["medium-replay"] = result.levels["medium-replay"].seconds
    return result


def _recreate_medium_replay(medium: BehaviourPolicy, writer: LevelWriter, task0: TaskInfo, *,
                            device: torch.device | str, progress: bool,
                            max_episode_steps: Optional[int]) -> LevelResult:
    """Online SAC with the medium policy's recorded options and seed, up to its step.

    The networks' initial weights come from torch's global generator seeded with that seed, as
    `make_dataset.py` seeds it; this is done inside `fork_rng`, so the caller's streams are
    left as they were.
    """
    info = medium.info
    if "sac_options" not in info or "train_step" not in info:
        raise ValueError("this medium policy does not record its SAC options and step "
                         "(sac_options, train_step), so its replay buffer cannot be re-created; "
                         "make medium-replay with make_dataset.py --robot instead")
    started = time.perf_counter()
    saved = json.loads(str(info["sac_options"]))
    options = SACTrainOptions(**{**saved, "hidden_dims": tuple(saved["hidden_dims"]),
                                 "train_steps": int(info["train_step"])})
    seed = int(info["seed"])
    log.info("re-creating medium-replay: %d online SAC steps (seed %d)", options.train_steps, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # as make_dataset.py seeds before SAC builds its networks
        trainer = build_sac_trainer(task0, options, seed=seed, device=device,
                                    record_transitions=True, max_episode_steps=max_episode_steps,
                                    progress=progress)
        run = trainer.train()
    trainer.env.close()
    trainer.eval_env.close()
    assert run.transitions is not None
    step = options.train_steps
    data = cut_dataset(run.transitions.to_dict(stop=step), step)
    _, num_episodes = episode_returns(data)
    returns = np.asarray([r for end, r, _ in run.episodes if end <= step])
    return writer.write(
        "medium-replay", data, returns=returns, num_episodes=num_episodes, eval_return=None,
        policy_step=step, started=started,
        extra={"behaviour": f"SAC replay buffer, steps 0..{step - 1}, re-created with the "
                            "medium policy's recorded SAC options and seed",
               "recreated": 1, "recreate_seconds": time.perf_counter() - started})
