"""Online SAC in a gymnasium simulator: the data collector of the replica datasets.

`OnlineSACTrainer` is SAC collecting its own data (random actions for `start_steps`, then the
stochastic actor; one update per environment step after `update_after`), evaluating the
deterministic policy every `eval_every` steps and keeping a `Snapshot` of the actor with each
evaluation, plus (optionally) every collected transition in D4RL's raw layout for
medium-replay. It checkpoints its whole state (mid-episode too) and resumes a killed run with
the numbers of an uninterrupted one. What is made of its snapshots (behaviour policies and
datasets by D4RL's protocol) is in `offlinerlkit.replica`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.datasets.replica import TransitionLog
from offlinerlkit.policy.sac import SACPolicy
from offlinerlkit.policy_trainer.evaluate import EvalResult, evaluate_policy
from offlinerlkit.utils.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_checkpoint,
    save_checkpoint,
)
from offlinerlkit.utils.tasks import TaskInfo

if TYPE_CHECKING:
    import gymnasium

    from offlinerlkit.envs.wrappers import TaskEnv
    from offlinerlkit.utils.logger import Logger

log = logging.getLogger(__name__)

__all__ = ["ONLINE_CHECKPOINT_PREFIX", "OnlineSACTrainer", "OnlineTrainResult", "Snapshot"]

#: File-name prefix of online SAC checkpoints (`<prefix>_<step>.pt`).
ONLINE_CHECKPOINT_PREFIX = "online_sac"


@dataclass(frozen=True)
class Snapshot:
    """The actor at one evaluation of an online run.

    Attributes:
        step: environment steps collected when it was taken (its data is rows `[0, step)`).
        actor_state: a CPU copy of the actor's `state_dict()`.
        eval_return: mean return of the deterministic evaluation episodes.
        eval_return_std: their standard deviation.
        train_return_avg: running mean of the last 10 training-episode returns (stochastic
            actions), None before the first episode ended.
        num_updates: gradient updates made so far.
    """

    step: int
    actor_state: dict[str, Tensor]
    eval_return: float
    eval_return_std: float
    train_return_avg: Optional[float]
    num_updates: int


@dataclass
class OnlineTrainResult:
    """What `OnlineSACTrainer.train` produced.

    Attributes:
        snapshots: one per evaluation, in order; the last is the final policy.
        transitions: every collected step in order (None when not recorded).
        episodes: `(end step, return, length)` of every finished training episode.
        num_steps: environment steps collected.
        num_updates: gradient updates made.
        seconds: wall-clock time of the run.
    """

    snapshots: list[Snapshot]
    transitions: Optional[TransitionLog]
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    num_steps: int = 0
    num_updates: int = 0
    seconds: float = 0.0


class OnlineSACTrainer:
    """Online SAC: collect with the stochastic actor, update every step, evaluate, snapshot.

    Step `t = 0, 1, ..., total_steps - 1`: the action is uniform in the action box while
    `t < start_steps`, else `a ~ pi(.|s)`; the transition goes into `buffer` with
    `done = terminated` (a time limit is not a terminal, so the target still bootstraps); once
    `t + 1 >= update_after`, one `policy.learn` on a uniform minibatch of `batch_size`. After
    every `eval_every` steps and after the last one, `eval_episodes` deterministic episodes on
    `eval_env` and a `Snapshot`. With `record_transitions`, every step is also kept in a
    `TransitionLog` with the simulator state before the step, the action's log-probability
    (uniform density for warm-up actions), `terminals` (terminated) and `timeouts` (cut by the
    time limit).

    Args:
        policy: the SAC algorithm (its actor is the behaviour).
        env: the training environment, seeded by the caller (a MuJoCo env: qpos/qvel are read
            from `env.unwrapped.data` when recording).
        eval_env: the evaluation environment, seeded by the caller.
        buffer: the replay buffer (capacity `total_steps` keeps everything, as D4RL's runs did).
        total_steps: environment steps to collect.
        start_steps: uniformly random actions for the first this many steps.
        update_after: first update after this many steps.
        batch_size: minibatch size.
        eval_every: environment steps between evaluations (and snapshots).
        eval_episodes: deterministic episodes per evaluation.
        record_transitions: keep every step for medium-replay.
        max_episode_steps: also cut episodes after this many steps (tests); None keeps the
            environment's own time limit.
        task: for normalised scores in the logs.
        rng: numpy generator of the warm-up actions (None: a fresh unseeded one).
        generator: torch generator of action sampling and minibatch indices (None: the
            policy's, else torch's global one).
        logger: receives one row per evaluation (phase `policy`); None logs nowhere.
        progress: show a tqdm bar over environment steps.
        checkpoint_dir: where `online_sac_<step>.pt` checkpoints go (the newest is kept);
            None writes none.
        checkpoint_every: a checkpoint at the first evaluation after each multiple of this
            many steps, and after the last step; 0 writes none. `resume()` then
            continues a killed run with the same numbers as an uninterrupted one.
    """

    def __init__(
        self,
        policy: SACPolicy,
        env: gymnasium.Env,
        *,
        eval_env: gymnasium.Env,
        buffer: ReplayBuffer,
        total_steps: int,
        start_steps: int = 10_000,
        update_after: int = 1_000,
        batch_size: int = 256,
        eval_every: int = 5_000,
        eval_episodes: int = 5,
        record_transitions: bool = True,
        max_episode_steps: Optional[int] = None,
        task: Optional[TaskInfo] = None,
        rng: Optional[np.random.Generator] = None,
        generator: Optional[torch.Generator] = None,
        logger: Optional[Logger] = None,
        progress: bool = False,
        checkpoint_dir: Optional[str | os.PathLike] = None,
        checkpoint_every: int = 0,
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every}")
        for name, value in (("total_steps", total_steps), ("batch_size", batch_size),
                            ("eval_every", eval_every), ("eval_episodes", eval_episodes)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if start_steps < 0 or update_after < 0:
            raise ValueError("start_steps and update_after must be >= 0")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        self.policy, self.env, self.eval_env, self.buffer = policy, env, eval_env, buffer
        self.total_steps, self.start_steps = int(total_steps), int(start_steps)
        self.update_after, self.batch_size = int(update_after), int(batch_size)
        self.eval_every, self.eval_episodes = int(eval_every), int(eval_episodes)
        self.record_transitions, self.max_episode_steps = record_transitions, max_episode_steps
        self.task, self.logger, self.progress = task, logger, progress
        self.rng = rng if rng is not None else np.random.default_rng()
        self.generator = generator if generator is not None else policy.generator
        space = env.action_space
        self.action_low = np.asarray(space.low, dtype=np.float32)
        self.action_high = np.asarray(space.high, dtype=np.float32)
        # log-density of the uniform warm-up actions: -sum_i log(high_i - low_i)
        self.uniform_log_prob = float(-np.log(self.action_high - self.action_low).sum())
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.action_dim = int(np.prod(space.shape))
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = int(checkpoint_every)
        self.result: Optional[OnlineTrainResult] = None  # set by _begin / load_state_dict

    def _act(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        """A stochastic action of the current actor and its log-probability."""
        with torch.no_grad():
            x = torch.as_tensor(obs, device=self.policy.device).unsqueeze(0)  # [1, S]
            action, log_prob = self.policy.actor(x).rsample(self.generator)  # [1, A], [1, 1]
        return action[0].cpu().numpy(), float(log_prob)

    def evaluate(self, num_episodes: int) -> EvalResult:
        """Deterministic episodes of the current actor on `eval_env`."""
        self.policy.eval()
        result = evaluate_policy(
            lambda obs: self.policy.act(obs, deterministic=True), self.eval_env,
            num_episodes=num_episodes, task=self.task,
            max_episode_steps=self.max_episode_steps or 1_000_000)
        self.policy.train()
        return result

    # --- loop state (also what a checkpoint holds) ---
    def _begin(self) -> None:
        """Fresh loop state: step 0, the first reset, an empty result."""
        sim = self.env.unwrapped.data if self.record_transitions else None
        transitions: Optional[TransitionLog] = None
        if sim is not None:
            transitions = TransitionLog(self.obs_dim, self.action_dim, sim.qpos.shape[0],
                                        sim.qvel.shape[0], capacity=self.total_steps + 1)
        self.result = OnlineTrainResult(snapshots=[], transitions=transitions)
        self.recent: deque[float] = deque(maxlen=10)
        self.step = self._checkpointed = 0
        obs, _ = self.env.reset()
        self.obs = np.asarray(obs, dtype=np.float32)
        self.ep_return, self.ep_len = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        """The loop's state after `self.step` steps: counters, the current episode, the
        simulators, the warm-up generator, the snapshots, the replay buffer and the recorded
        transitions (the policy and its generator are saved by the policy's own state dict)."""
        result = self.result
        return {
            "step": self.step, "obs": self.obs, "ep_return": self.ep_return,
            "ep_len": self.ep_len, "recent": list(self.recent),
            "num_updates": result.num_updates,
            "episodes": [list(e) for e in result.episodes],
            "snapshots": [dataclasses.asdict(snap) for snap in result.snapshots],
            "warmup_rng": dict(self.rng.bit_generator.state),
            "env": _task_env(self.env).get_sim_state(),
            "eval_env_rng": _task_env(self.eval_env).get_rng_state(),
            "buffer": self.buffer.state_dict(),
            "transitions": None if result.transitions is None else result.transitions.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` (the environments must be built as for the saved run)."""
        self._begin()
        self.step = self._checkpointed = int(state["step"])
        self.obs = np.asarray(state["obs"], dtype=np.float32)
        self.ep_return, self.ep_len = float(state["ep_return"]), int(state["ep_len"])
        self.recent = deque((float(r) for r in state["recent"]), maxlen=10)
        self.result.num_updates = int(state["num_updates"])
        self.result.episodes = [(int(a), float(b), int(c)) for a, b, c in state["episodes"]]
        self.result.snapshots = [Snapshot(**snap) for snap in state["snapshots"]]
        self.rng.bit_generator.state = dict(state["warmup_rng"])
        _task_env(self.env).set_sim_state(state["env"])
        if state["eval_env_rng"] is not None:
            _task_env(self.eval_env).set_rng_state(state["eval_env_rng"])
        self.buffer.load_state_dict(state["buffer"])
        if (state["transitions"] is None) != (self.result.transitions is None):
            raise CheckpointError("the checkpoint was written with a different "
                                  "record_transitions setting (medium-replay asked for or not)")
        if self.result.transitions is not None:
            self.result.transitions.extend(state["transitions"])

    def save_checkpoint(self) -> Optional[Path]:
        """Write `<checkpoint_dir>/online_sac_<step>.pt` (policy and loop); None without a dir."""
        if self.checkpoint_dir is None:
            return None
        path = save_checkpoint(self.checkpoint_dir, epoch=self.step, keep_last=1,
                               prefix=ONLINE_CHECKPOINT_PREFIX, policy=self.policy, trainer=self)
        self._checkpointed = self.step
        log.info("online SAC checkpoint at step %d: %s", self.step, path)
        return path

    def resume(self) -> bool:
        """Load the newest checkpoint of `checkpoint_dir`; returns whether there was one.

        `train()` then continues with exactly the numbers of an uninterrupted run.
        """
        if self.checkpoint_dir is None:
            return False
        remove_stale_temporaries(self.checkpoint_dir)
        path = latest_checkpoint(self.checkpoint_dir, prefix=ONLINE_CHECKPOINT_PREFIX)
        if path is None:
            if self.logger is not None:  # a start over: the old rows go
                self.logger.rewind(0, phase="policy")
            return False
        ckpt = load_checkpoint(path, map_location=self.policy.device)
        if int(ckpt["trainer"]["buffer"]["capacity"]) != self.buffer.capacity:
            raise CheckpointError(f"{path} was written by a run of "
                                  f"{int(ckpt['trainer']['buffer']['capacity'])} steps, not "
                                  f"{self.total_steps}; resume with the saved options")
        restore_checkpoint(ckpt, policy=self.policy, trainer=self)
        if self.logger is not None:  # rows logged after the checkpoint come again
            self.logger.rewind(self.step, phase="policy")
        log.info("online SAC resumed from %s at step %d of %d", path, self.step, self.total_steps)
        return True

    # --- the loop ---
    def train(self) -> OnlineTrainResult:
        """Collect the remaining steps (all `total_steps`, or those after `resume()`) with
        updates, evaluations and checkpoints; returns snapshots and data."""
        if self.result is None:
            self._begin()
        assert self.result is not None
        env, policy, result = self.env, self.policy, self.result
        transitions = result.transitions
        sim = env.unwrapped.data if transitions is not None else None
        start = time.perf_counter()
        last_eval_time, last_eval_step = start, self.step

        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="online SAC", unit="step")
        policy.train()
        obs = self.obs
        for t in range(self.step, self.total_steps):
            # --- act ---
            if sim is not None:
                qpos, qvel = sim.qpos.copy(), sim.qvel.copy()
            if t < self.start_steps:
                action = self.rng.uniform(self.action_low, self.action_high).astype(np.float32)
                log_prob = self.uniform_log_prob
            else:
                action, log_prob = self._act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            self.ep_return += float(reward)
            self.ep_len += 1
            cut = bool(truncated) or (self.max_episode_steps is not None
                                      and self.ep_len >= self.max_episode_steps)
            # --- store ---
            self.buffer.add_batch(
                torch.as_tensor(obs[None]), torch.as_tensor(action[None]),
                torch.tensor([float(reward)]), torch.as_tensor(next_obs[None]),
                torch.tensor([float(terminated)]))
            if transitions is not None:
                transitions.append(obs=obs, action=action, reward=float(reward),
                                   next_obs=next_obs, terminal=bool(terminated),
                                   timeout=cut and not terminated, qpos=qpos, qvel=qvel,
                                   log_prob=log_prob)
            if terminated or cut:
                result.episodes.append((t + 1, self.ep_return, self.ep_len))
                self.recent.append(self.ep_return)
                if self.logger is not None:
                    self.logger.record("train/episode_return", self.ep_return)
                    self.logger.record("train/episode_length", self.ep_len)
                obs, _ = env.reset()
                obs = np.asarray(obs, dtype=np.float32)
                self.ep_return, self.ep_len = 0.0, 0
            else:
                obs = next_obs
            # --- update ---
            if t + 1 >= self.update_after:
                metrics = policy.learn(self.buffer.sample(self.batch_size,
                                                          generator=self.generator))
                result.num_updates += 1
                if self.logger is not None:
                    self.logger.record_dict(metrics)
            self.step, self.obs = t + 1, obs
            # --- evaluate, snapshot, checkpoint ---
            step = t + 1
            if step % self.eval_every == 0 or step == self.total_steps:
                now = time.perf_counter()
                steps_per_s = (step - last_eval_step) / max(now - last_eval_time, 1e-9)
                evaluation = self.evaluate(self.eval_episodes)
                snap = Snapshot(
                    step=step,
                    actor_state={k: v.detach().cpu().clone()
                                 for k, v in policy.actor.state_dict().items()},
                    eval_return=evaluation.mean_return, eval_return_std=evaluation.std_return,
                    train_return_avg=float(np.mean(self.recent)) if self.recent else None,
                    num_updates=result.num_updates)
                result.snapshots.append(snap)
                self._log_eval(step, evaluation, snap, steps_per_s)
                if bar is not None:
                    bar.set_postfix(eval_return=f"{evaluation.mean_return:.1f}")
                if self.checkpoint_every and (
                        step // self.checkpoint_every > self._checkpointed // self.checkpoint_every
                        or step == self.total_steps):
                    self.save_checkpoint()
                last_eval_time, last_eval_step = time.perf_counter(), step
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        result.num_steps = self.total_steps
        result.seconds += time.perf_counter() - start
        return result

    def _log_eval(self, step: int, evaluation: EvalResult, snap: Snapshot,
                  steps_per_s: float) -> None:
        log.info("online SAC step %d: eval return %.1f +- %.1f (train avg %s), %.1f steps/s",
                 step, evaluation.mean_return, evaluation.std_return,
                 "n/a" if snap.train_return_avg is None else f"{snap.train_return_avg:.1f}",
                 steps_per_s)
        if self.logger is None:
            return
        self.logger.record_dict(evaluation.to_metrics())
        if snap.train_return_avg is not None:
            self.logger.record("train/return_avg10", snap.train_return_avg)
        self.logger.record("time/steps_per_second", steps_per_s)
        self.logger.dump(step, phase="policy")


def _task_env(env: gymnasium.Env) -> TaskEnv:
    """`env` as the `TaskEnv` that `make_env` returns (checkpoints need its state methods)."""
    from offlinerlkit.envs.wrappers import TaskEnv

    if not isinstance(env, TaskEnv):
        raise TypeError(f"checkpoints need environments built by make_env, got {type(env)}")
    return env
