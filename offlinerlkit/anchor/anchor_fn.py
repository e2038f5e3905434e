"""Anchor functions: map a batch of states to their anchors (spec §5.1-5.3).

An anchor function is a plain callable `fn(obs [N, S]) -> anchor [N, S]` (the policies'
`AnchorFn`). The policies call it once per distinct state batch, without gradients, and pass
the result to the networks (`delta = obs - anchor`).

* `rollout_anchor_fn` (the paper's method, spec §5.1): walk the anchor seeker through the
  learned forward model for `H` steps; deterministic.
* `closest_delta_anchor_fn` (the original's `top_10_d` ablation, spec §5.2, §12.22): pick, from
  a random sample of dataset states, the one whose difference to `s` looks most like a
  difference between two dataset states; random.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.types import AnchorFn

__all__ = ["AnchorFn", "ClosestDeltaAnchorFn", "RolloutAnchorFn", "closest_delta_anchor_fn",
           "rollout_anchor_fn"]


class RolloutAnchorFn:
    """`anchor(s) = Phi^H(s)`, the anchor seeker rolled through the forward model (spec §5.1).

        x_0 = s,   x_h = mean_{e in elites} f_e(x_{h-1}, pi~(x_{h-1})),   anchor = x_H

    `f_e` is elite `e`'s predicted next state (`EnsembleDynamics.predict_mean`, the original's
    deterministic elite-mean step); reward, termination and penalty are not computed. The result
    is a deterministic function of `s` (the seeker has no dropout), computed without gradients.
    `H = 0` returns `s` itself (then `delta = 0`).

    Shapes: obs `[N, S]` -> anchor `[N, S]` (float32, on the dynamics' device).

    Args:
        seeker: the (frozen) anchor seeker `pi~`, on the dynamics' device.
        dynamics: the forward dynamics.
        horizon: `H >= 0` (the original's `actor_horizon_len` / `critic_horizon_len`).
    """

    #: The same state always gets the same anchor, so anchors of fixed states may be cached.
    deterministic = True

    def __init__(self, seeker: nn.Module, dynamics: EnsembleDynamics, horizon: int) -> None:
        if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 0:
            raise ValueError(f"horizon must be an int >= 0, got {horizon!r}")
        if dynamics.direction != "forward":
            raise ValueError("anchor rollouts need forward dynamics, got "
                             f"direction={dynamics.direction!r}")
        for name in ("obs_dim", "action_dim"):
            have = getattr(seeker, name, None)
            if have is not None and have != getattr(dynamics, name):
                raise ValueError(f"the seeker has {name}={have} but the dynamics "
                                 f"{getattr(dynamics, name)}; they come from different tasks")
        self.seeker = seeker
        self.dynamics = dynamics
        self.horizon = int(horizon)

    @torch.no_grad()
    def __call__(self, obs: Tensor) -> Tensor:
        anchor = obs
        for _ in range(self.horizon):
            anchor = self.dynamics.predict_mean(anchor, self.seeker(anchor))  # [N, S]
        return anchor

    def __repr__(self) -> str:
        seeker = getattr(self.seeker, "extra_repr", lambda: "")()
        return (f"RolloutAnchorFn(horizon={self.horizon}, seeker=AnchorSeeker({seeker}), "
                f"dynamics={self.dynamics.direction} ensemble of {self.dynamics.model.num_members} "
                f"members / {self.dynamics.num_elites} elites)")


def rollout_anchor_fn(seeker: nn.Module, dynamics: EnsembleDynamics, horizon: int) -> RolloutAnchorFn:
    """The paper's anchor function `Phi^H` (see `RolloutAnchorFn`)."""
    return RolloutAnchorFn(seeker, dynamics, horizon)


class ClosestDeltaAnchorFn:
    """The original's `top_10_d` anchors, renamed `closest_delta` (spec §5.2, §12.22).

    Setup: `N` "train deltas" `D = obs[perm_1] - obs[perm_2]` from two independent random
    permutations of the dataset states. Each call, with `P = sample_size`:

    1. sample `P` train deltas `D'` (with replacement);
    2. split the query batch into chunks of 32 if `B % 32 == 0`, else 100 if `B % 100 == 0`,
       else one chunk of `B`;
    3. per chunk, sample `P` candidate dataset states `c_j` (with replacement); for each query
       `s` and candidate, `dist(s, c_j) = min_{d in D'} ||(s - c_j) - d||^2`;
    4. `anchor(s) = c_{j*}`, `j* = argmin_j dist(s, c_j)` (the smallest, despite the name).

    The original built a faiss exact-L2 index on every call; this uses `torch.cdist` (exact
    differences, no matrix-product shortcut). It is random: the same input gives different
    anchors on different calls.

    Shapes: obs `[B, S]` -> anchor `[B, S]` float32, on the dataset's device.

    Args:
        dataset_obs: the dataset states `[N, S]` (the device of the computation).
        sample_size: `P` (the original's `closest_obs_sample_size`, 500).
        generator: torch generator on the dataset's device, used for the setup and every call.
    """

    #: Sampled afresh on every call: anchors must not be cached.
    deterministic = False

    #: query rows per distance block (bounds memory at `rows * P * P` floats)
    block_rows = 32

    def __init__(self, dataset_obs: Tensor, *, sample_size: int = 500,
                 generator: torch.Generator | None = None) -> None:
        obs = torch.as_tensor(dataset_obs, dtype=torch.float32)
        if obs.dim() != 2 or obs.shape[0] < 1:
            raise ValueError(f"dataset_obs must be [N >= 1, S], got {tuple(obs.shape)}")
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}")
        self.dataset_obs = obs
        self.sample_size = int(sample_size)
        self.generator = generator
        n = obs.shape[0]
        perm_1 = torch.randperm(n, generator=generator, device=obs.device)
        perm_2 = torch.randperm(n, generator=generator, device=obs.device)
        self.train_deltas = obs[perm_1] - obs[perm_2]  # [N, S]

    @staticmethod
    def chunk_size(batch: int) -> int:
        """Query rows that share one candidate sample: 32, 100 or the whole batch (spec §5.2)."""
        if batch % 32 == 0:
            return 32
        if batch % 100 == 0:
            return 100
        return batch

    def _sample(self, source: Tensor) -> Tensor:
        idx = torch.randint(source.shape[0], (self.sample_size,), generator=self.generator,
                            device=source.device)
        return source[idx]  # [P, S]

    @torch.no_grad()
    def __call__(self, obs: Tensor) -> Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32).to(self.dataset_obs.device)
        if obs.dim() != 2 or obs.shape[1] != self.dataset_obs.shape[1]:
            raise ValueError(f"expected states [B, {self.dataset_obs.shape[1]}], got {tuple(obs.shape)}")
        batch = obs.shape[0]
        anchor = torch.empty_like(obs)
        if batch == 0:
            return anchor
        deltas = self._sample(self.train_deltas)  # [P, S]
        size = self.chunk_size(batch)
        for lo in range(0, batch, size):
            candidates = self._sample(self.dataset_obs)  # [P, S]
            for start in range(lo, lo + size, self.block_rows):
                stop = min(start + self.block_rows, lo + size)
                query = obs[start:stop, None, :] - candidates[None, :, :]  # [b, P, S]
                dist = torch.cdist(query.reshape(-1, query.shape[-1]), deltas,
                                   compute_mode="donot_use_mm_for_euclid_dist")  # [b * P, P]
                nearest = dist.amin(-1).reshape(stop - start, -1)  # [b, P]; argmin of d == of d^2
                anchor[start:stop] = candidates[nearest.argmin(-1)]
        return anchor

    def __repr__(self) -> str:
        return (f"ClosestDeltaAnchorFn(num_states={self.dataset_obs.shape[0]}, "
                f"sample_size={self.sample_size})")


def closest_delta_anchor_fn(dataset_obs: Tensor, *, sample_size: int = 500,
                            generator: torch.Generator | None = None) -> ClosestDeltaAnchorFn:
    """The original's `top_10_d` ablation anchors (see `ClosestDeltaAnchorFn`)."""
    return ClosestDeltaAnchorFn(dataset_obs, sample_size=sample_size, generator=generator)
