"""The model-free training loop: epochs of gradient steps, evaluation, logging, checkpoints."""
from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.envs.wrappers import TaskEnv
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy_trainer.evaluate import evaluate_policy
from offlinerlkit.utils.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    restore_checkpoint,
    save_checkpoint,
)
from offlinerlkit.utils.errors import FAILURE_EXIT, UserError
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.tasks import TaskInfo

log = logging.getLogger(__name__)

#: File-name prefix of policy checkpoints in `<run>/checkpoint/`.
CHECKPOINT_PREFIX = "policy"
#: Final policy weights, written at the end of training.
FINAL_POLICY_FILE = "policy.pth"


class MFPolicyTrainer:
    """Trains a policy on dataset batches (spec 8.1) and evaluates it after every epoch (spec 8.3).

    Each epoch runs `step_per_epoch` calls of `policy.learn` on uniform samples of `buffer`,
    steps the learning-rate schedulers, evaluates `eval_episodes` deterministic episodes and
    logs one row at timestep = cumulative gradient steps, including
    `eval/last_10_performance` (the mean normalised score of the last 10 evaluations). A
    resumable checkpoint is written every `checkpoint_freq` epochs and after the last one; the
    final weights go to `<run>/model/policy.pth`.

    Args:
        policy: the algorithm.
        buffer: the dataset.
        logger: where metrics go (the trainer is the only component that logs).
        run_dir: the run directory (checkpoints, final model).
        env: evaluation environment, seeded once by the caller; None skips evaluation.
        task: the task (for normalised scores); None logs raw returns only.
        epochs, step_per_epoch, batch_size, eval_episodes: the loop's sizes.
        checkpoint_freq, keep_checkpoints: checkpoint cadence and how many are kept.
        progress: show a progress bar per epoch.
        step_context: a factory of the context each training step runs in (e.g. bf16
            autocast, `utils.speed.step_context`); None: none.
        anchor_cache: with COCOA's deterministic anchors, compute the anchors of every
            dataset state once before training and let the updates reuse them (same values;
            one anchor call per update fewer). Off: every update computes them.
    """

    def __init__(
        self,
        policy: BasePolicy,
        *,
        buffer: ReplayBuffer,
        logger: Logger,
        run_dir: RunDir,
        env: Optional[gym.Env],
        task: Optional[TaskInfo],
        epochs: int,
        step_per_epoch: int,
        batch_size: int,
        eval_episodes: int,
        checkpoint_freq: int = 50,
        keep_checkpoints: int = 2,
        progress: bool = True,
        step_context: Optional[Callable[[], contextlib.AbstractContextManager[Any]]] = None,
        anchor_cache: bool = True,
    ) -> None:
        self.step_context = step_context or contextlib.nullcontext
        self.anchor_cache = anchor_cache
        self.policy, self.buffer, self.logger, self.run_dir = policy, buffer, logger, run_dir
        self.env, self.task = env, task
        self.epochs, self.step_per_epoch, self.batch_size = epochs, step_per_epoch, batch_size
        self.eval_episodes = eval_episodes
        self.checkpoint_freq, self.keep_checkpoints = checkpoint_freq, keep_checkpoints
        self.progress = progress
        self.epoch = 0  # epochs completed
        self.num_timesteps = 0
        self.last_10: deque[float] = deque(maxlen=10)

    # --- hooks for subclasses (the model-based trainer) ---
    def uses_dataset_anchors(self) -> bool:
        """Whether updates see dataset rows alone, so precomputed anchors would be used."""
        return True

    def precompute_anchors(self) -> None:
        """Attach the anchors of every dataset state to the buffer (`anchor_cache`), once."""
        anchors = getattr(self.policy, "anchors", None)
        if (not self.anchor_cache or anchors is None or anchors.cache_fn is None
                or self.buffer.has_anchors or not self.uses_dataset_anchors()):
            return
        start = time.time()
        self.buffer.set_anchors(anchors.precompute(self.buffer.stored("obs")),
                                anchors.precompute(self.buffer.stored("next_obs")))
        self.logger.info(f"COCOA: anchors of the {len(self.buffer):,} dataset transitions' states "
                         f"computed once in {time.time() - start:.1f} s; updates reuse them")

    def train_step(self) -> dict[str, float]:
        """One gradient step on a fresh minibatch; returns the policy's metrics."""
        return self.policy.learn(self.buffer.sample(self.batch_size))

    def extra_state(self) -> dict[str, Any]:
        """Additional state a subclass needs in the checkpoint."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state

    # --- state ---
    def state_dict(self) -> dict[str, Any]:
        """Loop counters, the evaluation history and the simulator's RNG state."""
        env_rng = self.env.get_rng_state() if isinstance(self.env, TaskEnv) else None
        return {"epoch": self.epoch, "num_timesteps": self.num_timesteps,
                "last_10": list(self.last_10), "env_rng": env_rng, "extra": self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.num_timesteps = int(state["epoch"]), int(state["num_timesteps"])
        self.last_10 = deque((float(x) for x in state["last_10"]), maxlen=10)
        if state.get("env_rng") is not None and isinstance(self.env, TaskEnv):
            self.env.set_rng_state(state["env_rng"])
        self.load_extra_state(state.get("extra", {}))

    def save(self) -> None:
        """Write a resumable checkpoint of everything that changes during training."""
        save_checkpoint(self.run_dir.checkpoint, epoch=self.epoch, keep_last=self.keep_checkpoints,
                        prefix=CHECKPOINT_PREFIX, policy=self.policy, trainer=self)

    def resume(self) -> bool:
        """Load the newest checkpoint of this run, if any; returns whether one was loaded.

        Temporary files of a write that a kill interrupted are removed first."""
        for folder in (self.run_dir.checkpoint, self.run_dir.model, self.run_dir.record,
                       self.run_dir.result):
            remove_stale_temporaries(folder)
        path = latest_checkpoint(self.run_dir.checkpoint, prefix=CHECKPOINT_PREFIX)
        if path is None:
            return False
        restore_checkpoint(load_checkpoint(path, map_location=self.policy.device),
                           policy=self.policy, trainer=self)
        self.logger.info(f"resumed from {path} after epoch {self.epoch} "
                         f"({self.num_timesteps} gradient steps)")
        return True

    # --- the loop ---
    def evaluate(self) -> dict[str, float]:
        """Deterministic evaluation episodes; returns the `eval/*` metrics."""
        if self.env is None or self.eval_episodes == 0:
            return {}
        self.policy.eval()
        result = evaluate_policy(lambda obs: self.policy.act(obs, deterministic=True), self.env,
                                 num_episodes=self.eval_episodes, task=self.task)
        self.policy.train()
        return result.to_metrics()

    def train(self, on_epoch: Optional[Callable[[int, dict[str, float]], None]] = None
              ) -> dict[str, float]:
        """Run the remaining epochs; returns the last logged row."""
        row: dict[str, float] = {}
        self.precompute_anchors()
        self.policy.train()
        for epoch in range(self.epoch + 1, self.epochs + 1):
            start = time.time()
            bar = tqdm(range(self.step_per_epoch), desc=f"epoch {epoch}/{self.epochs}",
                       disable=not self.progress, leave=False)
            for _ in bar:
                with self.step_context():
                    metrics = self.train_step()
                check_finite(metrics, epoch=epoch, step=self.num_timesteps)
                self.logger.record_dict(metrics)
                self.num_timesteps += 1
                if self.num_timesteps % 50 == 0:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(metrics.items())[:3]})
            self.policy.step_schedulers()
            self.logger.record("time/train_one_epoch", time.time() - start)
            start = time.time()
            eval_metrics = self.evaluate()
            if eval_metrics:
                self.logger.record("time/eval_one_epoch", time.time() - start)
                self.logger.record_dict(eval_metrics)
                if "eval/normalized_episode_reward" in eval_metrics:
                    self.last_10.append(eval_metrics["eval/normalized_episode_reward"])
                    self.logger.record("eval/last_10_performance", float(np.mean(self.last_10)))
            self.epoch = epoch
            row = self.logger.dump(self.num_timesteps, phase="policy")
            if epoch % self.checkpoint_freq == 0 or epoch == self.epochs:
                self.save()
            if on_epoch is not None:
                on_epoch(epoch, row)
        self.save_final()
        return row

    def save_final(self) -> None:
        """Write the trained networks to `<run>/model/policy.pth`."""
        state = {k: v.state_dict() for k, v in self.policy.nets.items()}
        path = atomic_write(self.run_dir.model / FINAL_POLICY_FILE, lambda f: torch.save(state, f))
        self.logger.info(f"final policy written to {path}")


class TrainingDivergedError(UserError, FloatingPointError):
    """A loss turned NaN or infinite; the scripts end with its one-line message (exit 1)."""

    exit_code = FAILURE_EXIT


def check_finite(metrics: Mapping[str, float], *, epoch: int, step: int) -> None:
    """Stop with a clear error when a loss turns NaN or infinite."""
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        raise TrainingDivergedError(
            f"non-finite training metrics at epoch {epoch}, gradient step {step}: {bad}. "
            "Lower the learning rates, check the dataset for extreme values, or resume from the "
            "last checkpoint with different settings."
        )

