"""The model-based training loop (MOPO, MOBILE): model rollouts mixed into every batch."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.policy.anchors import Anchors
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.types import Batch


class MBPolicyTrainer(MFPolicyTrainer):
    """`MFPolicyTrainer` plus short model rollouts (spec 8.2).

    Every `rollout_freq` gradient steps (from step 0), `rollout_batch_size` dataset states are
    rolled out for `rollout_length` steps with the stochastic actor and the stochastic
    (random-elite) dynamics; rows that terminate are dropped from later steps. The transitions
    go to a model buffer holding the last `model_retain_epochs` rollouts. Each gradient step uses
    `int(batch_size * real_ratio)` dataset rows followed by model rows, and tells the policy how
    many leading rows are real (`learn(batch, num_real=...)`). The model buffer is part of the
    checkpoint, so a resumed run continues with the same rollouts.

    With COCOA's deterministic anchors and `anchor_cache` (default), no update computes an
    anchor of a row whose anchor is known: the dataset's states get theirs once before training
    (as in `MFPolicyTrainer`), and each rollout step computes the anchors of the states it
    writes (the dynamics and the seeker are frozen, so an anchor is a function of the state)
    and stores them with the rows in the model buffer.

    Args:
        policy: a policy whose `learn` accepts `num_real` (MOPO, MOBILE).
        dynamics: the trained forward dynamics; frozen here.
        rollout_freq: gradient steps between rollouts.
        rollout_batch_size: start states per rollout.
        rollout_length: model steps per rollout (0 disables rollouts).
        model_retain_epochs: rollouts kept in the model buffer.
        real_ratio: fraction of each batch drawn from the dataset.
        rollout_augmentation: False trains on dataset rows only (then `real_ratio` must be 1).
        **kwargs: the `MFPolicyTrainer` arguments.
    """

    def __init__(
        self,
        policy: BasePolicy,
        *,
        dynamics: EnsembleDynamics,
        rollout_freq: int = 1000,
        rollout_batch_size: int = 50000,
        rollout_length: int = 1,
        model_retain_epochs: int = 5,
        real_ratio: float = 0.05,
        rollout_augmentation: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, **kwargs)
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        if not rollout_augmentation and real_ratio != 1.0:
            raise ValueError("without rollout augmentation every row is real: set real_ratio to 1")
        if rollout_augmentation and rollout_length > 0 and real_ratio == 1.0:
            rollout_augmentation = False  # model rows would never be sampled
        self.dynamics = dynamics
        dynamics.model.eval()
        dynamics.model.requires_grad_(False)
        self.rollout_freq, self.rollout_batch_size = rollout_freq, rollout_batch_size
        self.rollout_length, self.real_ratio = rollout_length, real_ratio
        self.use_rollouts = rollout_augmentation and rollout_length > 0
        capacity = max(rollout_batch_size * max(rollout_length, 1) * model_retain_epochs, 1)
        self.model_buffer = ReplayBuffer(capacity, self.buffer.obs_dim, self.buffer.action_dim,
                                         device=self.buffer.device)

    def _row_anchors(self) -> Optional[Anchors]:
        """The policy's anchors when rows can carry them (`anchor_cache` and one deterministic
        function), else None."""
        anchors = getattr(self.policy, "anchors", None)
        if not self.anchor_cache or anchors is None or anchors.cache_fn is None:
            return None
        return anchors

    @torch.no_grad()
    def rollout(self) -> dict[str, float]:
        """Roll the policy out in the model from dataset states into the model buffer."""
        start = self.buffer.sample(self.rollout_batch_size)
        obs, anchors = start.obs, self._row_anchors()
        if anchors is not None and len(self.model_buffer) and not self.model_buffer.has_anchors:
            anchors = None  # rows of a run resumed from an older checkpoint carry none
        obs_anchor = None
        if anchors is not None:
            obs_anchor = start.obs_anchor if start.obs_anchor is not None else anchors.precompute(obs)
        rewards, num = [], 0
        for _ in range(self.rollout_length):
            if obs_anchor is None:
                action = self.policy.act_tensor(obs, deterministic=False)
            else:  # the stored anchors stand for the actor's (one deterministic function)
                action = self.policy.act_tensor(obs, deterministic=False, anchor=obs_anchor)
            next_obs, reward, terminal, _ = self.dynamics.step(obs, action, sampling="random_elite")
            next_anchor = None if anchors is None else anchors.precompute(next_obs)
            self.model_buffer.add_batch(obs, action, reward, next_obs, terminal,
                                        obs_anchor=obs_anchor, next_obs_anchor=next_anchor)
            num += obs.shape[0]
            rewards.append(reward.reshape(-1))
            alive = ~terminal.reshape(-1)
            if not bool(alive.any()):
                break
            obs = next_obs[alive]
            obs_anchor = None if next_anchor is None else next_anchor[alive]
        reward_all = torch.cat(rewards)
        info = {"rollout_info/num_transitions": float(num),
                "rollout_info/reward_mean": reward_all.mean().item(),
                "rollout_info/reward_std": reward_all.std().item()}  # unbiased, as the original
        self.logger.info(f"num rollout transitions: {num}, reward mean: "
                         f"{info['rollout_info/reward_mean']:.4f}, reward std: "
                         f"{info['rollout_info/reward_std']:.4f}")
        return info

    def uses_dataset_anchors(self) -> bool:
        return True  # model rows carry their own anchors (rollout), dataset rows precomputed ones

    def train_step(self) -> dict[str, float]:
        if self.use_rollouts and self.num_timesteps % self.rollout_freq == 0:
            self.logger.record_dict(self.rollout())
        num_real = int(self.batch_size * self.real_ratio) if self.use_rollouts else self.batch_size
        real = self.buffer.sample(num_real)
        if num_real == self.batch_size:
            return self.policy.learn(real, num_real=num_real)  # type: ignore[call-arg]
        fake = self.model_buffer.sample(self.batch_size - num_real)
        return self.policy.learn(Batch.cat([real, fake]), num_real=num_real)  # type: ignore[call-arg]

    def extra_state(self) -> dict[str, Any]:
        return {"model_buffer": self.model_buffer.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "model_buffer" in state:
            self.model_buffer.load_state_dict(state["model_buffer"])
