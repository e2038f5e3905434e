"""`make_replica`: D4RL's protocol for one robot, from online SAC to the five datasets.

D4RL's protocol (`shared/spec/DATA.md`): random = a randomly initialised actor; expert = the SAC
policy at the end of training; medium = the snapshot whose evaluated return is closest to
`medium_fraction` (1/3) of the expert's; medium-replay = the replay buffer up to the medium
snapshot; medium-expert = medium then expert.

Seeds (all derived from one `seed`, recorded in each file's metadata): SAC's training
environment `seed`, its evaluation environment `seed + 1`, its torch generator `seed`, its
warm-up action generator `seed`; sampling seeds as in `offlinerlkit.replica.sampling`. The
actors' initial weights come from torch's global generator, which the calling script seeds
(`set_seed`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
import torch

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.datasets.replica import (
    REPLICA_LEVELS,
    REPLICA_VERSION,
    RolloutResult,
    concat_datasets,
    cut_dataset,
    replica_file_name,
    replica_policy_path,
)
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.policy.sac import SACHyperparams, SACPolicy
from offlinerlkit.policy_trainer.online import OnlineSACTrainer, Snapshot
from offlinerlkit.replica.behaviour import BehaviourPolicy
from offlinerlkit.replica.sampling import (
    LevelResult,
    LevelWriter,
    common_metadata,
    episode_returns,
    evaluate_actor,
    sample_level,
)
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.fields import opt
from offlinerlkit.utils.tasks import ROBOTS, TaskInfo, normalized_score, parse_task

if TYPE_CHECKING:
    import gymnasium

    from offlinerlkit.utils.logger import Logger

log = logging.getLogger(__name__)

__all__ = ["ReplicaResult", "SACTrainOptions", "build_online_sac", "build_sac_trainer",
           "choose_medium_snapshot", "make_replica"]


@dataclass(frozen=True)
class SACTrainOptions:
    """Online SAC settings of the behaviour-policy run (rlkit-style defaults, as D4RL used).

    Declared once: `run_example/make_dataset.py`'s config inherits these fields (their help
    lines are its `--help`), and `train_options()` gives them back as this class.
    """

    train_steps: int = opt(1_000_000, "environment steps of the online SAC run (D4RL: 1M)")
    hidden_dims: tuple[int, ...] = opt((256, 256), "SAC actor/critic widths")
    actor_lr: float = opt(3e-4, "SAC actor learning rate")
    critic_lr: float = opt(3e-4, "SAC critic learning rate")
    alpha_lr: float = opt(3e-4, "SAC entropy-weight learning rate")
    gamma: float = opt(0.99, "discount")
    tau: float = opt(0.005, "target Polyak rate")
    batch_size: int = opt(256, "SAC minibatch size")
    start_steps: int = opt(10_000, "uniformly random actions for the first steps")
    update_after: int = opt(1_000, "first SAC update after this many steps")
    eval_every: int = opt(5_000, "steps between evaluations and policy snapshots")
    eval_episodes: int = opt(5, "deterministic episodes per evaluation")
    final_eval_episodes: int = opt(10, "episodes of the final evaluation of each behaviour policy")
    medium_fraction: float = opt(1.0 / 3.0, "medium = snapshot closest to this fraction of the "
                                            "expert return")
    expert_choice: Literal["final", "best"] = opt("final", "expert = final snapshot (D4RL) or the "
                                                           "best evaluated one")

    def __post_init__(self) -> None:
        if self.expert_choice not in ("final", "best"):
            raise ValueError(f"expert_choice must be 'final' or 'best', got {self.expert_choice!r}")
        if not 0.0 < self.medium_fraction < 1.0:
            raise ValueError(f"medium_fraction must be in (0, 1), got {self.medium_fraction}")

    def train_options(self) -> SACTrainOptions:
        """These fields alone, as a `SACTrainOptions` (from a config that inherits them)."""
        return SACTrainOptions(**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(SACTrainOptions)})

    def hyperparams(self) -> SACHyperparams:
        """The SAC policy's hyper-parameters these options give (auto-alpha, constant rates)."""
        return SACHyperparams(actor_lr=self.actor_lr, critic_lr=self.critic_lr,
                              alpha_lr=self.alpha_lr, gamma=self.gamma, tau=self.tau,
                              auto_alpha=True)

    def as_metadata(self) -> dict[str, Any]:
        """The options as plain data (lists, numbers, strings) for files and provenance."""
        data = dataclasses.asdict(self.train_options())
        data["hidden_dims"] = list(self.hidden_dims)
        return data



def build_online_sac(options: SACTrainOptions, spec: EnvSpec, *, generator: torch.Generator,
                     device: torch.device | str) -> SACPolicy:
    """A fresh SAC policy for the online run (initial weights from torch's global generator;
    every draw of its updates and actions from `generator`)."""
    return SACPolicy(build_tanh_actor(spec, options.hidden_dims),
                     build_critics(spec, options.hidden_dims, num_members=2),
                     hp=options.hyperparams(), generator=generator, device=device)


@dataclass
class ReplicaResult:
    """Everything `make_replica` wrote, with timings (seconds per phase)."""

    robot: str
    levels: dict[str, LevelResult] = field(default_factory=dict)
    policy_paths: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    medium_step: Optional[int] = None
    expert_return: Optional[float] = None
    eval_curve: list[tuple[int, float]] = field(default_factory=list)



def choose_medium_snapshot(snapshots: Sequence[Snapshot], target_return: float, *,
                           exclude_step: Optional[int] = None) -> Snapshot:
    """The snapshot whose evaluated return is closest to `target_return` (earliest on ties).

    D4RL's medium policy: training stopped at about one third of the expert's return.

    Args:
        snapshots: candidates, in training order.
        target_return: e.g. `expert_return / 3`.
        exclude_step: a step not to choose (the expert's own snapshot), unless it is the only one.
    """
    candidates = [s for s in snapshots if s.step != exclude_step] or list(snapshots)
    if not candidates:
        raise ValueError("no snapshots to choose from")
    gaps = [abs(s.eval_return - target_return) for s in candidates]
    return candidates[int(np.argmin(gaps))]





def build_sac_trainer(task: TaskInfo, options: SACTrainOptions, *, seed: int,
                      device: torch.device | str, record_transitions: bool,
                      max_episode_steps: Optional[int] = None, logger: Optional[Logger] = None,
                      progress: bool = False,
                      checkpoint_dir: Optional[str | os.PathLike] = None,
                      checkpoint_every: int = 0) -> OnlineSACTrainer:
    """The online SAC run of `make_replica` (seeds as in the module docstring; the actor's and
    critics' initial weights come from torch's global generator)."""
    from offlinerlkit.envs import make_env

    spec = EnvSpec(task.obs_dim, task.action_dim)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)  # a local generator: the global streams are untouched
    return OnlineSACTrainer(
        build_online_sac(options, spec, generator=generator, device=device), make_env(task, seed=seed), eval_env=make_env(task, seed=seed + 1),
        buffer=ReplayBuffer(options.train_steps, spec.obs_dim, spec.action_dim, device=device),
        total_steps=options.train_steps, start_steps=options.start_steps,
        update_after=options.update_after, batch_size=options.batch_size,
        eval_every=options.eval_every, eval_episodes=options.eval_episodes,
        record_transitions=record_transitions, max_episode_steps=max_episode_steps,
        task=task, rng=np.random.default_rng(seed), generator=generator, logger=logger,
        progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)


def make_replica(
    robot: str,
    *,
    levels: Sequence[str] = REPLICA_LEVELS,
    out_dir: str | os.PathLike,
    seed: int,
    num_samples: int = 1_000_000,
    options: SACTrainOptions = SACTrainOptions(),
    num_envs: int = 8,
    max_episode_steps: Optional[int] = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
    logger: Optional[Logger] = None,
    checkpoint_dir: Optional[str | os.PathLike] = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> ReplicaResult:
    """Make D4RL-protocol datasets of one robot in gymnasium's `-v4` simulator.

    Order: random (a fresh actor, evaluated deterministically, sampled stochastically); then,
    if any other level is asked for, one online SAC run of `options.train_steps` steps with
    snapshots, expert = its final (or best) snapshot, medium = the snapshot closest to
    `medium_fraction` of the expert's re-evaluated return; medium and expert are sampled,
    medium-replay is the SAC run's data up to the medium snapshot, medium-expert = medium then
    expert. Behaviour policies go to `<out_dir>/policies/<robot>/{random,medium,expert}.pt`
    (random only when asked for), datasets to `<out_dir>/<replica_file_name>`.

    Every output path is checked before any work starts: existing files are never replaced
    unless `overwrite`.

    Args:
        robot: `hopper`, `halfcheetah` or `walker2d`.
        levels: a subset of `REPLICA_LEVELS`.
        out_dir: the replica folder.
        seed: the seed everything is derived from (module docstring); the caller must also have
            seeded torch's global generator (`set_seed`), which initialises the actors.
        num_samples: rows of the random, medium and expert datasets (D4RL: 1M);
            medium-expert has twice as many, medium-replay as many as SAC collected until medium.
        options: the SAC run.
        num_envs: simulators stepped together when sampling.
        max_episode_steps: cut episodes earlier than the 1000-step limit (tests only).
        device: torch device of SAC and sampling.
        overwrite: replace existing output files.
        progress: tqdm bars.
        logger: receives the SAC run's rows; None logs only through `logging`.
        checkpoint_dir, checkpoint_every: the SAC run's checkpoints (`OnlineSACTrainer`).
        resume: continue the SAC run from the newest checkpoint in `checkpoint_dir`; a random
            level whose dataset and policy exist is kept, and the outputs written after SAC
            (which a killed run may have left half done) are written again.

    Returns:
        Paths, returns and timings of everything written.
    """
    from offlinerlkit.envs import make_env

    if robot not in ROBOTS:
        raise ValueError(f"unknown robot {robot!r}: choose from {sorted(ROBOTS)}")
    levels = list(dict.fromkeys(levels))
    unknown = [lv for lv in levels if lv not in REPLICA_LEVELS]
    if unknown or not levels:
        raise ValueError(f"levels must be a non-empty subset of {list(REPLICA_LEVELS)}, "
                         f"got {levels}")
    if num_samples < 1 or num_envs < 1:
        raise ValueError("num_samples and num_envs must be positive")
    out = Path(out_dir).expanduser()
    needs_sac = any(lv != "random" for lv in levels)
    policies = (["random"] if "random" in levels else []) + (["medium", "expert"] if needs_sac
                                                             else [])
    task0 = parse_task(f"{robot}-random-{REPLICA_VERSION}")
    common = common_metadata(task0, max_episode_steps=max_episode_steps, seed=seed,
                             num_envs=num_envs)
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs the checkpoint_dir of the run to continue")
    policy_paths = {lv: replica_policy_path(out, robot, lv) for lv in policies}
    if resume and "random" in levels and policy_paths["random"].exists() \
            and (out / replica_file_name(f"{robot}-random-{REPLICA_VERSION}")).exists():
        levels.remove("random")  # finished before the run stopped
        log.info("random level already written by this run; kept")
    writer = LevelWriter(robot, out, seed=seed, overwrite=overwrite or resume, common=common)
    if not (overwrite or resume):
        existing = [str(p) for p in [writer.path(lv) for lv in levels] + list(policy_paths.values())
                    if p.exists()]
        if existing:
            raise FileExistsError("these outputs exist and were left untouched: "
                                  + ", ".join(existing)
                                  + "; choose another out_dir or pass --overwrite")
    result = ReplicaResult(robot=robot)

    def env_factory(s: int) -> gymnasium.Env:
        return make_env(task0, seed=s)

    # --- random ---
    if "random" in levels:
        started = time.perf_counter()
        # Forked so that the global stream (and so SAC's initial weights) does not depend on
        # whether random was asked for: the random actor has SAC's initial actor weights.
        with torch.random.fork_rng(devices=[]):
            behaviour = BehaviourPolicy.build(robot, "random", options.hidden_dims, device=device)
        eval_env = make_env(task0, seed=seed + 1)
        eval_return = evaluate_actor(behaviour, eval_env, num_episodes=options.final_eval_episodes,
                                      max_episode_steps=max_episode_steps)
        eval_env.close()
        behaviour.info.update(eval_return=eval_return, train_step=0, seed=int(seed),
                              eval_return_normalized=normalized_score(robot, eval_return))
        result.policy_paths["random"] = behaviour.save(policy_paths["random"], overwrite=overwrite or resume)
        rollout, env_seeds = sample_level(behaviour, level="random", seed=seed,
                                           num_samples=num_samples, num_envs=num_envs,
                                           max_episode_steps=max_episode_steps,
                                           progress=progress, make_env=env_factory)
        result.levels["random"] = writer.write(
            "random", rollout.data, returns=rollout.episode_returns,
            num_episodes=rollout.num_episodes, eval_return=eval_return, policy_step=0,
            started=started, extra={"behaviour": "randomly initialised tanh-Gaussian actor",
                                    "sampling_env_seeds": env_seeds,
                                    "policy_file": str(result.policy_paths["random"])})
        result.timings["random"] = time.perf_counter() - started
    if not needs_sac:
        return result

    # --- online SAC ---
    started = time.perf_counter()
    trainer = build_sac_trainer(
        task0, options, seed=seed, device=device, record_transitions="medium-replay" in levels,
        max_episode_steps=max_episode_steps, logger=logger, progress=progress,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    if resume and not trainer.resume():
        log.warning("no SAC checkpoint in %s yet: the SAC run starts from step 0", checkpoint_dir)
    run = trainer.train()
    trainer.env.close()
    trainer.eval_env.close()
    result.timings["train"] = time.perf_counter() - started
    result.eval_curve = [(s.step, s.eval_return) for s in run.snapshots]

    # --- choose expert and medium; re-evaluate both carefully ---
    started = time.perf_counter()
    final = run.snapshots[-1]
    expert_snap = (final if options.expert_choice == "final"
                   else max(run.snapshots, key=lambda s: s.eval_return))
    chosen: dict[str, tuple[Snapshot, BehaviourPolicy, float]] = {}
    expert = BehaviourPolicy.build(robot, "expert", options.hidden_dims,
                                   actor_state=expert_snap.actor_state, device=device)
    eval_env = make_env(task0, seed=seed + 1)
    expert_return = evaluate_actor(expert, eval_env, num_episodes=options.final_eval_episodes,
                                    max_episode_steps=max_episode_steps)
    chosen["expert"] = (expert_snap, expert, expert_return)
    target = options.medium_fraction * expert_return
    medium_snap = choose_medium_snapshot(run.snapshots, target, exclude_step=expert_snap.step)
    medium = BehaviourPolicy.build(robot, "medium", options.hidden_dims,
                                   actor_state=medium_snap.actor_state, device=device)
    eval_env.close()
    eval_env = make_env(task0, seed=seed + 1)
    medium_return = evaluate_actor(medium, eval_env, num_episodes=options.final_eval_episodes,
                                    max_episode_steps=max_episode_steps)
    chosen["medium"] = (medium_snap, medium, medium_return)
    eval_env.close()
    result.medium_step, result.expert_return = medium_snap.step, expert_return
    log.info("expert: step %d, return %.1f; medium target %.1f: step %d, snapshot return %.1f, "
             "re-evaluated %.1f", expert_snap.step, expert_return, target, medium_snap.step,
             medium_snap.eval_return, medium_return)
    training_meta = {
        "train_steps": int(options.train_steps), "num_updates": int(run.num_updates),
        "sac": options.as_metadata(),
        "train_env_seed": int(seed), "eval_env_seed": int(seed + 1),
        "eval_steps": np.asarray([s.step for s in run.snapshots], dtype=np.int64),
        "eval_returns": np.asarray([s.eval_return for s in run.snapshots], dtype=np.float64),
        "expert_step": int(expert_snap.step), "expert_return": float(expert_return),
        "medium_step": int(medium_snap.step), "medium_target_return": float(target),
    }
    for lv in ("medium", "expert"):
        snap, behaviour, ret = chosen[lv]
        behaviour.info.update(eval_return=ret, eval_return_normalized=normalized_score(robot, ret),
                              eval_episodes=options.final_eval_episodes,
                              snapshot_eval_return=snap.eval_return, train_step=snap.step,
                              train_steps=options.train_steps, seed=int(seed),
                              sac_options=json.dumps(options.as_metadata()))
        result.policy_paths[lv] = behaviour.save(policy_paths[lv], overwrite=overwrite or resume)
    result.timings["choose_and_save_policies"] = time.perf_counter() - started

    # --- sample medium and expert ---
    rollouts: dict[str, RolloutResult] = {}
    for lv in ("medium", "expert"):
        if lv not in levels and "medium-expert" not in levels:
            continue
        started = time.perf_counter()
        snap, behaviour, ret = chosen[lv]
        rollout, env_seeds = sample_level(behaviour, level=lv, seed=seed,
                                           num_samples=num_samples, num_envs=num_envs,
                                           max_episode_steps=max_episode_steps,
                                           progress=progress, make_env=env_factory)
        rollouts[lv] = rollout
        if lv in levels:
            result.levels[lv] = writer.write(
                lv, rollout.data, returns=rollout.episode_returns,
                num_episodes=rollout.num_episodes, eval_return=ret, policy_step=snap.step,
                started=started, extra={"behaviour": f"SAC snapshot at step {snap.step}",
                                        "sampling_env_seeds": env_seeds,
                                        "policy_file": str(result.policy_paths[lv]),
                                        "training": training_meta})
        result.timings[lv] = time.perf_counter() - started

    # --- medium-replay ---
    if "medium-replay" in levels:
        started = time.perf_counter()
        assert run.transitions is not None
        data = cut_dataset(run.transitions.to_dict(stop=medium_snap.step), medium_snap.step)
        returns = np.asarray([r for end, r, _ in run.episodes if end <= medium_snap.step])
        _, num_episodes = episode_returns(data)
        result.levels["medium-replay"] = writer.write(
            "medium-replay", data, returns=returns, num_episodes=num_episodes, eval_return=None,
            policy_step=medium_snap.step, started=started,
            extra={"behaviour": f"SAC replay buffer, steps 0..{medium_snap.step - 1} "
                                f"(uniform random actions for the first {options.start_steps})",
                   "training": training_meta})
        result.timings["medium-replay"] = time.perf_counter() - started

    # --- medium-expert ---
    if "medium-expert" in levels:
        started = time.perf_counter()
        med, exp = rollouts["medium"], rollouts["expert"]
        data = concat_datasets([med.data, exp.data])
        returns = np.concatenate([med.episode_returns, exp.episode_returns])
        result.levels["medium-expert"] = writer.write(
            "medium-expert", data, returns=returns,
            num_episodes=med.num_episodes + exp.num_episodes, eval_return=None,
            policy_step=expert_snap.step, started=started,
            extra={"behaviour": "medium dataset followed by expert dataset",
                   "medium_rows": int(len(med.data["rewards"])),
                   "medium_eval_return": float(medium_return),
                   "expert_eval_return": float(expert_return),
                   "medium_policy_file": str(result.policy_paths["medium"]),
                   "expert_policy_file": str(result.policy_paths["expert"]),
                   "training": training_meta})
        result.timings["medium-expert"] = time.perf_counter() - started
    return result
