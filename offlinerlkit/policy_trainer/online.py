"""Online SAC in a gymnasium simulator, saved behaviour policies, and D4RL-protocol replicas.

Three layers, each usable on its own:

* `OnlineSACTrainer`: SAC collecting its own data (random actions for `start_steps`, then the
  stochastic actor; one update per environment step after `update_after`), evaluating the
  deterministic policy every `eval_every` steps and keeping a `Snapshot` of the actor with each
  evaluation, plus (optionally) every collected transition in D4RL's raw layout for
  medium-replay.
* `BehaviourPolicy`: an actor with what is needed to rebuild it (robot, sizes, hidden widths)
  and its evaluated return, saved as `<out>/policies/<robot>/<level>.pt` and loaded without
  training again (`torch.load(weights_only=True)`).
* `make_replica` / `sample_from_policy`: D4RL's protocol (`shared/spec/DATA.md`): random = a
  randomly initialised actor; expert = the SAC policy at the end of training; medium = the
  snapshot whose evaluated return is closest to `medium_fraction` (1/3) of the expert's;
  medium-replay = the replay buffer up to the medium snapshot; medium-expert = medium then
  expert. Data is sampled stochastically (as D4RL's behaviour policies were) in several
  environments at once and written as D4RL v2 HDF5 files named by
  `offlinerlkit.datasets.replica.replica_file_name`, with provenance under `metadata/`.

Seeds (all derived from one `seed`, recorded in each file's metadata): SAC's training
environment `seed`, its evaluation environment `seed + 1`, its torch generator `seed`, its
warm-up action generator `seed`; the data of level `L` (index `k` in `POLICY_LEVELS`) is
sampled in environments `seed + 1000 (k + 1) + i` with a torch generator seeded
`seed + 1000 (k + 1)`. The actors' initial weights come from torch's global generator, which
the calling script seeds (`set_seed`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.datasets.hdf5 import write_d4rl_hdf5
from offlinerlkit.datasets.replica import (
    POLICY_LEVELS,
    REPLICA_LEVELS,
    REPLICA_SOURCE,
    REPLICA_VERSION,
    ActFn,
    RolloutResult,
    TransitionLog,
    concat_datasets,
    cut_dataset,
    replica_file_name,
    replica_policy_path,
    replica_task_name,
    rollout_dataset,
)
from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.policy.sac import SACPolicy
from offlinerlkit.policy_trainer.evaluate import EvalResult, evaluate_policy
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from offlinerlkit.utils.tasks import ROBOTS, TaskInfo, normalized_score, parse_task

if TYPE_CHECKING:
    import gymnasium

    from offlinerlkit.envs.wrappers import TaskEnv
    from offlinerlkit.utils.logger import Logger

log = logging.getLogger(__name__)

__all__ = [
    "BEHAVIOUR_FORMAT",
    "BehaviourPolicy",
    "LevelResult",
    "OnlineSACTrainer",
    "OnlineTrainResult",
    "ReplicaResult",
    "SACTrainOptions",
    "Snapshot",
    "choose_medium_snapshot",
    "make_replica",
    "replica_seeds",
    "sample_from_policy",
]

#: File-name prefix of online SAC checkpoints (`<prefix>_<step>.pt`).
ONLINE_CHECKPOINT_PREFIX = "online_sac"
#: `format` entry of a saved behaviour policy file.
BEHAVIOUR_FORMAT = "cocoa-rl behaviour policy"
_BEHAVIOUR_VERSION = 1


# --------------------------------------------------------------------------- online SAC


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
        path = latest_checkpoint(self.checkpoint_dir, prefix=ONLINE_CHECKPOINT_PREFIX)
        if path is None:
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


# --------------------------------------------------------------------------- behaviour policies


@dataclass
class BehaviourPolicy:
    """A behaviour policy (tanh-Gaussian actor) with what rebuilding and describing it needs.

    Saved with `save` as `torch.save` of plain data (`format`, `version`, `robot`, `level`,
    `obs_dim`, `action_dim`, `max_action`, `hidden_dims`, `actor` state dict, `info`), loadable
    with `torch.load(weights_only=True)`.

    Attributes:
        actor: the actor (plain encoder).
        robot: `hopper`, `halfcheetah` or `walker2d`.
        level: `random`, `medium` or `expert`.
        hidden_dims: the actor's backbone widths.
        info: provenance: `eval_return`, `eval_normalized`, `train_step`, `seed`, ... (numbers
            and strings only).
    """

    actor: TanhGaussianActor
    robot: str
    level: str
    hidden_dims: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> EnvSpec:
        """Observation and action sizes of the actor."""
        return EnvSpec(obs_dim=int(self.actor.encoder.output_dim),
                       action_dim=int(self.actor.mu.output_dim), max_action=self.actor.max_action)

    @classmethod
    def build(cls, robot: str, level: str, hidden_dims: Sequence[int], *,
              actor_state: Optional[Mapping[str, Tensor]] = None,
              info: Optional[Mapping[str, Any]] = None,
              device: torch.device | str = "cpu") -> BehaviourPolicy:
        """A new actor for `robot` (random initial weights from torch's global generator), with
        `actor_state` loaded when given."""
        if robot not in ROBOTS:
            raise ValueError(f"unknown robot {robot!r}: choose from {sorted(ROBOTS)}")
        sizes = ROBOTS[robot]
        spec = EnvSpec(int(sizes["obs_dim"]), int(sizes["action_dim"]))
        actor = build_tanh_actor(spec, tuple(hidden_dims))
        if actor_state is not None:
            actor.load_state_dict(actor_state)
        return cls(actor.to(device).eval(), robot, level, tuple(int(h) for h in hidden_dims),
                   dict(info or {}))

    def act_fn(self, *, generator: Optional[torch.Generator] = None,
               deterministic: bool = False) -> ActFn:
        """A batched numpy action function for `rollout_dataset`.

        Returns actions `[N, A]` and `log pi(a|s)` `[N]`; stochastic by default (D4RL's
        behaviour policies were sampled), with draws from `generator`.
        """
        device = next(self.actor.parameters()).device

        def act(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                dist = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=device))
                if deterministic:  # no draw: the mode, with a zero log-probability placeholder
                    mode = dist.mode()  # [N, A]
                    return mode.cpu().numpy(), np.zeros(mode.shape[0], dtype=np.float32)
                action, log_prob = dist.rsample(generator)  # [N, A], [N, 1]
            return action.cpu().numpy(), log_prob[:, 0].cpu().numpy()

        return act

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the policy atomically; an existing file is kept unless `overwrite`."""
        file = Path(path).expanduser()
        if file.exists() and not overwrite:
            raise FileExistsError(f"{file}: already exists and was left untouched; pass "
                                  "overwrite=True (--overwrite) to replace it")
        spec = self.spec
        payload = {
            "format": BEHAVIOUR_FORMAT, "version": _BEHAVIOUR_VERSION,
            "robot": self.robot, "level": self.level,
            "obs_dim": spec.obs_dim, "action_dim": spec.action_dim,
            "max_action": spec.max_action, "hidden_dims": list(self.hidden_dims),
            "actor": {k: v.detach().cpu() for k, v in self.actor.state_dict().items()},
            "info": dict(self.info),
        }
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, file)
        finally:
            tmp.unlink(missing_ok=True)
        return file

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu"
             ) -> BehaviourPolicy:
        """Rebuild a policy written by `save`.

        Raises:
            FileNotFoundError: no file at `path`.
            ValueError: the file is not a behaviour policy of this project.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"no behaviour policy file at {file}")
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise ValueError(f"{file}: cannot be read as a behaviour policy ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != BEHAVIOUR_FORMAT:
            raise ValueError(f"{file}: not a {BEHAVIOUR_FORMAT!r} file (written by "
                             "make_dataset.py / BehaviourPolicy.save)")
        policy = cls.build(str(payload["robot"]), str(payload["level"]),
                           [int(h) for h in payload["hidden_dims"]],
                           actor_state=payload["actor"], info=payload.get("info", {}),
                           device=device)
        spec = policy.spec
        if (spec.obs_dim, spec.action_dim) != (int(payload["obs_dim"]), int(payload["action_dim"])):
            raise ValueError(f"{file}: sizes {payload['obs_dim']}/{payload['action_dim']} do not "
                             f"match robot {payload['robot']}")
        return policy


# --------------------------------------------------------------------------- the replica


@dataclass(frozen=True)
class SACTrainOptions:
    """Online SAC settings of the behaviour-policy run (rlkit-style defaults, as D4RL used).

    Attributes:
        train_steps: environment steps of the SAC run (D4RL: 1M).
        hidden_dims: actor and critic widths.
        actor_lr, critic_lr, alpha_lr: Adam learning rates.
        gamma, tau: discount and target Polyak rate.
        batch_size: minibatch size.
        start_steps: uniformly random actions for this many first steps.
        update_after: first update after this many steps.
        eval_every: steps between evaluations and snapshots.
        eval_episodes: deterministic episodes per evaluation.
        final_eval_episodes: episodes of the careful evaluation of each behaviour policy.
        medium_fraction: medium = the snapshot closest to this fraction of the expert return.
        expert_choice: `final` (D4RL: trained to completion) or `best` (best evaluated snapshot).
    """

    train_steps: int = 1_000_000
    hidden_dims: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    start_steps: int = 10_000
    update_after: int = 1_000
    eval_every: int = 5_000
    eval_episodes: int = 5
    final_eval_episodes: int = 10
    medium_fraction: float = 1.0 / 3.0
    expert_choice: Literal["final", "best"] = "final"

    def __post_init__(self) -> None:
        if self.expert_choice not in ("final", "best"):
            raise ValueError(f"expert_choice must be 'final' or 'best', got {self.expert_choice!r}")
        if not 0.0 < self.medium_fraction < 1.0:
            raise ValueError(f"medium_fraction must be in (0, 1), got {self.medium_fraction}")


@dataclass(frozen=True)
class LevelResult:
    """One written replica dataset.

    Attributes:
        robot: the robot.
        level: the D4RL level.
        path: the HDF5 file.
        num_rows: steps in the file.
        num_episodes: episodes in the file (a cut last one included).
        behaviour_return: mean return of the file's complete episodes (the stochastic
            behaviour; for medium-replay, SAC's training episodes).
        behaviour_return_std: their standard deviation.
        behaviour_normalized: D4RL normalised score of `behaviour_return`.
        eval_return: deterministic evaluation of the behaviour policy (None for the mixed
            levels).
        eval_normalized: its normalised score.
        policy_step: SAC steps of the behaviour policy (0 for random).
        seconds: time spent sampling and writing this level.
    """

    robot: str
    level: str
    path: Path
    num_rows: int
    num_episodes: int
    behaviour_return: float
    behaviour_return_std: float
    behaviour_normalized: float
    eval_return: Optional[float]
    eval_normalized: Optional[float]
    policy_step: int
    seconds: float


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


def replica_seeds(seed: int, level: str, num_envs: int) -> tuple[list[int], int]:
    """The sampling seeds of a level: environment seeds and the torch generator's seed."""
    base = seed + 1000 * (POLICY_LEVELS.index(level) + 1)
    return [base + i for i in range(num_envs)], base


def _versions() -> dict[str, str]:
    import gymnasium
    import mujoco

    # plain str: torch's version is a str subclass that h5py cannot store
    return {"gymnasium": str(gymnasium.__version__), "mujoco": str(mujoco.__version__),
            "torch": str(torch.__version__), "numpy": str(np.__version__)}


def _episode_returns(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """Returns of the episodes that end inside `data` (by terminals/timeouts) and their count."""
    ends = np.flatnonzero(np.asarray(data["terminals"]) | np.asarray(data["timeouts"]))
    sums = np.cumsum(np.asarray(data["rewards"], dtype=np.float64))
    totals = sums[ends] - np.concatenate([[0.0], sums[ends[:-1]]]) if ends.size else np.zeros(0)
    return totals, int(ends.size)


class _Writer:
    """Writes the levels of one replica run with shared provenance."""

    def __init__(self, robot: str, out_dir: Path, *, seed: int, overwrite: bool,
                 common: Mapping[str, Any]) -> None:
        self.robot, self.out_dir, self.seed, self.overwrite = robot, out_dir, seed, overwrite
        self.common = dict(common)

    def task(self, level: str) -> TaskInfo:
        return parse_task(f"{self.robot}-{level}-{REPLICA_VERSION}")

    def path(self, level: str) -> Path:
        return self.out_dir / replica_file_name(self.task(level))

    def write(self, level: str, data: Mapping[str, np.ndarray], *, returns: np.ndarray,
              num_episodes: int, eval_return: Optional[float], policy_step: int,
              started: float, extra: Mapping[str, Any]) -> LevelResult:
        task = self.task(level)
        mean = float(np.mean(returns)) if returns.size else float("nan")
        std = float(np.std(returns)) if returns.size else float("nan")
        meta: dict[str, Any] = {
            **self.common,
            "task": replica_task_name(task), "d4rl_task": task.name, "level": level,
            "num_samples": int(len(data["rewards"])), "num_episodes": int(num_episodes),
            "num_complete_episodes": int(returns.size),
            "behaviour_return_mean": mean, "behaviour_return_std": std,
            "behaviour_return_normalized": normalized_score(self.robot, mean),
            **({"eval_return": float(eval_return),
                "eval_return_normalized": normalized_score(self.robot, eval_return)}
               if eval_return is not None else {}),
            "policy_train_step": int(policy_step),
            **extra,
        }
        path = write_d4rl_hdf5(self.path(level), data, metadata=meta, overwrite=self.overwrite)
        result = LevelResult(
            robot=self.robot, level=level, path=path, num_rows=int(len(data["rewards"])),
            num_episodes=int(num_episodes), behaviour_return=mean, behaviour_return_std=std,
            behaviour_normalized=normalized_score(self.robot, mean), eval_return=eval_return,
            eval_normalized=None if eval_return is None else normalized_score(self.robot,
                                                                              eval_return),
            policy_step=int(policy_step), seconds=time.perf_counter() - started)
        log.info("%s: %d rows, %d episodes, behaviour return %.1f (normalised %.1f) -> %s",
                 replica_task_name(task), result.num_rows, result.num_episodes, mean,
                 result.behaviour_normalized, path)
        return result


def _sample_level(behaviour: BehaviourPolicy, *, level: str, seed: int, num_samples: int,
                  num_envs: int, max_episode_steps: Optional[int], progress: bool,
                  make_env: Callable[[int], gymnasium.Env]) -> tuple[RolloutResult, list[int]]:
    env_seeds, gen_seed = replica_seeds(seed, level, num_envs)
    envs = [make_env(s) for s in env_seeds]
    generator = torch.Generator(device=next(behaviour.actor.parameters()).device)
    generator.manual_seed(gen_seed)  # a local generator: the global streams are untouched
    try:
        rollout = rollout_dataset(behaviour.act_fn(generator=generator), envs,
                                  num_samples=num_samples, max_episode_steps=max_episode_steps,
                                  progress=progress, description=f"sample {level}")
    finally:
        for env in envs:
            env.close()
    return rollout, env_seeds


def _evaluate_actor(behaviour: BehaviourPolicy, env: gymnasium.Env, *, num_episodes: int,
                    max_episode_steps: Optional[int]) -> float:
    act = behaviour.act_fn(deterministic=True)
    result = evaluate_policy(lambda obs: act(obs[None])[0][0], env, num_episodes=num_episodes,
                             max_episode_steps=max_episode_steps or 1_000_000)
    return result.mean_return


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
    versions = _versions()
    common = {
        "source": REPLICA_SOURCE, "robot": robot, "simulator": task0.gym_id,
        "max_episode_steps": int(max_episode_steps or task0.max_episode_steps),
        "versions": versions, "seed": int(seed), "num_envs": int(num_envs),
        "protocol": "D4RL (shared/spec/DATA.md) in gymnasium -v4; stochastic behaviour policies",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs the checkpoint_dir of the run to continue")
    policy_paths = {lv: replica_policy_path(out, robot, lv) for lv in policies}
    if resume and "random" in levels and policy_paths["random"].exists() \
            and (out / replica_file_name(f"{robot}-random-{REPLICA_VERSION}")).exists():
        levels.remove("random")  # finished before the run stopped
        log.info("random level already written by this run; kept")
    writer = _Writer(robot, out, seed=seed, overwrite=overwrite or resume, common=common)
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
        eval_return = _evaluate_actor(behaviour, eval_env, num_episodes=options.final_eval_episodes,
                                      max_episode_steps=max_episode_steps)
        eval_env.close()
        behaviour.info.update(eval_return=eval_return, train_step=0, seed=int(seed),
                              eval_return_normalized=normalized_score(robot, eval_return))
        result.policy_paths["random"] = behaviour.save(policy_paths["random"], overwrite=overwrite or resume)
        rollout, env_seeds = _sample_level(behaviour, level="random", seed=seed,
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
    spec = EnvSpec(task0.obs_dim, task0.action_dim)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)  # a local generator: the global streams are untouched
    sac = SACPolicy(build_tanh_actor(spec, options.hidden_dims),
                    build_critics(spec, options.hidden_dims, num_members=2),
                    actor_lr=options.actor_lr, critic_lr=options.critic_lr,
                    alpha_lr=options.alpha_lr, gamma=options.gamma, tau=options.tau,
                    auto_alpha=True, generator=generator, device=device)
    train_env, eval_env = make_env(task0, seed=seed), make_env(task0, seed=seed + 1)
    trainer = OnlineSACTrainer(
        sac, train_env, eval_env=eval_env,
        buffer=ReplayBuffer(options.train_steps, spec.obs_dim, spec.action_dim, device=device),
        total_steps=options.train_steps, start_steps=options.start_steps,
        update_after=options.update_after, batch_size=options.batch_size,
        eval_every=options.eval_every, eval_episodes=options.eval_episodes,
        record_transitions="medium-replay" in levels, max_episode_steps=max_episode_steps,
        task=task0, rng=np.random.default_rng(seed), generator=generator, logger=logger,
        progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    if resume and not trainer.resume():
        log.warning("no SAC checkpoint in %s yet: the SAC run starts from step 0", checkpoint_dir)
    run = trainer.train()
    train_env.close()
    eval_env.close()
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
    expert_return = _evaluate_actor(expert, eval_env, num_episodes=options.final_eval_episodes,
                                    max_episode_steps=max_episode_steps)
    chosen["expert"] = (expert_snap, expert, expert_return)
    target = options.medium_fraction * expert_return
    medium_snap = choose_medium_snapshot(run.snapshots, target, exclude_step=expert_snap.step)
    medium = BehaviourPolicy.build(robot, "medium", options.hidden_dims,
                                   actor_state=medium_snap.actor_state, device=device)
    eval_env.close()
    eval_env = make_env(task0, seed=seed + 1)
    medium_return = _evaluate_actor(medium, eval_env, num_episodes=options.final_eval_episodes,
                                    max_episode_steps=max_episode_steps)
    chosen["medium"] = (medium_snap, medium, medium_return)
    eval_env.close()
    result.medium_step, result.expert_return = medium_snap.step, expert_return
    log.info("expert: step %d, return %.1f; medium target %.1f: step %d, snapshot return %.1f, "
             "re-evaluated %.1f", expert_snap.step, expert_return, target, medium_snap.step,
             medium_snap.eval_return, medium_return)
    training_meta = {
        "train_steps": int(options.train_steps), "num_updates": int(run.num_updates),
        "sac": {"hidden_dims": list(options.hidden_dims), "actor_lr": options.actor_lr,
                "critic_lr": options.critic_lr, "alpha_lr": options.alpha_lr,
                "gamma": options.gamma, "tau": options.tau, "batch_size": options.batch_size,
                "start_steps": options.start_steps, "update_after": options.update_after,
                "eval_every": options.eval_every, "eval_episodes": options.eval_episodes,
                "expert_choice": options.expert_choice,
                "medium_fraction": options.medium_fraction},
        "train_env_seed": int(seed), "eval_env_seed": int(seed + 1),
        "eval_steps": np.asarray([s.step for s in run.snapshots], dtype=np.int64),
        "eval_returns": np.asarray([s.eval_return for s in run.snapshots], dtype=np.float64),
        "expert_step": int(expert_snap.step), "expert_return": float(expert_return),
        "medium_step": int(medium_snap.step), "medium_target_return": float(target),
    }
    for lv in ("medium", "expert"):
        snap, behaviour, ret = chosen[lv]
        behaviour.info.update(eval_return=ret, eval_return_normalized=normalized_score(robot, ret),
                              snapshot_eval_return=snap.eval_return, train_step=snap.step,
                              train_steps=options.train_steps, seed=int(seed))
        result.policy_paths[lv] = behaviour.save(policy_paths[lv], overwrite=overwrite or resume)
    result.timings["choose_and_save_policies"] = time.perf_counter() - started

    # --- sample medium and expert ---
    rollouts: dict[str, RolloutResult] = {}
    for lv in ("medium", "expert"):
        if lv not in levels and "medium-expert" not in levels:
            continue
        started = time.perf_counter()
        snap, behaviour, ret = chosen[lv]
        rollout, env_seeds = _sample_level(behaviour, level=lv, seed=seed,
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
        _, num_episodes = _episode_returns(data)
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


def sample_from_policy(
    policy_path: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    seed: int,
    num_samples: int,
    num_envs: int = 8,
    max_episode_steps: Optional[int] = None,
    eval_episodes: int = 10,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
    expected_robot: Optional[str] = None,
) -> LevelResult:
    """Sample a replica dataset from a saved behaviour policy, without training.

    The level (and file name) is the policy's own (`random`, `medium` or `expert`); the file
    records `policy_file` and `resampled_from_saved_policy = 1`. Use another `seed` than the
    original run's to get new episodes.

    Args:
        policy_path: a file written by `BehaviourPolicy.save` (`policies/<robot>/<level>.pt`).
        out_dir: the replica folder to write to.
        seed: sampling seeds are derived from it as in `make_replica`.
        num_samples: rows to record.
        num_envs: simulators stepped together.
        max_episode_steps: cut episodes earlier (tests only).
        eval_episodes: deterministic episodes to re-evaluate the policy (0: skip).
        device: torch device of the actor.
        overwrite: replace an existing file.
        progress: tqdm bar.
        expected_robot: raise a `ValueError` before sampling if the policy is of another robot.
    """
    from offlinerlkit.envs import make_env

    started = time.perf_counter()
    behaviour = BehaviourPolicy.load(policy_path, device=device)
    robot, level = behaviour.robot, behaviour.level
    if expected_robot is not None and expected_robot != robot:
        raise ValueError(f"{policy_path} is a {robot} policy, not {expected_robot}")
    task0 = parse_task(f"{robot}-random-{REPLICA_VERSION}")
    common = {
        "source": REPLICA_SOURCE, "robot": robot, "simulator": task0.gym_id,
        "max_episode_steps": int(max_episode_steps or task0.max_episode_steps),
        "versions": _versions(), "seed": int(seed), "num_envs": int(num_envs),
        "protocol": "D4RL (shared/spec/DATA.md) in gymnasium -v4; stochastic behaviour policies",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    writer = _Writer(robot, Path(out_dir).expanduser(), seed=seed, overwrite=overwrite,
                     common=common)
    if writer.path(level).exists() and not overwrite:
        raise FileExistsError(f"{writer.path(level)}: already exists and was left untouched; "
                              "choose another out_dir or pass --overwrite")
    eval_return: Optional[float] = None
    if eval_episodes > 0:
        env = make_env(task0, seed=seed + 1)
        eval_return = _evaluate_actor(behaviour, env, num_episodes=eval_episodes,
                                      max_episode_steps=max_episode_steps)
        env.close()
    rollout, env_seeds = _sample_level(
        behaviour, level=level, seed=seed, num_samples=num_samples, num_envs=num_envs,
        max_episode_steps=max_episode_steps, progress=progress,
        make_env=lambda s: make_env(task0, seed=s))
    info = {k: v for k, v in behaviour.info.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return writer.write(
        level, rollout.data, returns=rollout.episode_returns, num_episodes=rollout.num_episodes,
        eval_return=eval_return, policy_step=int(behaviour.info.get("train_step", 0)),
        started=started,
        extra={"behaviour": f"saved {level} policy {Path(policy_path).name}",
               "policy_file": str(Path(policy_path).expanduser().resolve()),
               "resampled_from_saved_policy": 1, "sampling_env_seeds": env_seeds,
               "policy_info": info})
