"""Reward transforms applied to a transition dict before it goes into the replay buffer (spec 2.3).

Every function takes the transition dict (`observations (N,S)`, `actions (N,A)`,
`next_observations (N,S)`, `rewards (N,)`, `terminals (N,)`) and returns a NEW dict whose
`rewards` entry is a new array; the input dict and its arrays are never modified. Arrays that a
transform does not change are shared with the input, not copied (they are never written to here,
and copying 2M-row arrays would double the memory for nothing).

Which script applies which transform (spec 2.3):

| run | transform |
|---|---|
| IQL, D4RL MuJoCo (always) | `normalize_rewards_by_return_range(data)` |
| IQL antmaze | `shift_rewards(data, shift=-1.0)` |
| CQL antmaze | `shift_rewards(data, shift=-0.5, scale=4.0)` |
| MOBILE `--norm_reward` | `zscore_rewards(data)` |
| MOPO | none |
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from offlinerlkit.datasets.errors import DatasetError

#: Two consecutive rows belong to one trajectory only if `||obs[i+1] - next_obs[i]||` is at most this.
CONTINUITY_TOL = 1e-6
#: Rows compared per chunk when testing continuity (bounds the temporary memory on 2M-row data).
_CHUNK_ROWS = 1 << 18


def _rewards(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """`data["rewards"]` as an array of shape `(N,)` or `(N, 1)`, checked."""
    rewards = np.asarray(data["rewards"])
    if rewards.ndim == 2 and rewards.shape[1] == 1:
        return rewards
    if rewards.ndim != 1:
        raise DatasetError(f"'rewards' has shape {rewards.shape}, expected (N,) or (N, 1)")
    return rewards


def _float_dtype(rewards: np.ndarray) -> np.dtype:
    """The dtype of transformed rewards: the input's float dtype, float32 for ints or bools."""
    return rewards.dtype if np.issubdtype(rewards.dtype, np.floating) else np.dtype(np.float32)


def _with_rewards(data: Mapping[str, np.ndarray], rewards: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(data)
    out["rewards"] = rewards
    return out


def trajectory_ends(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Boolean `(N,)`: True where a trajectory ends (the split of IQL's reward normalisation).

    Row `i < N-1` ends a trajectory when `terminals[i]` or
    `||observations[i+1] - next_observations[i]||_2 > 1e-6`; row `N-1` always does.
    """
    obs, next_obs = np.asarray(data["observations"]), np.asarray(data["next_observations"])
    terminals = np.asarray(data["terminals"]).reshape(-1)
    n = terminals.shape[0]
    if n == 0:
        raise DatasetError("the transition dict is empty; there are no trajectories to split")
    if obs.ndim != 2 or obs.shape[0] != n or next_obs.shape != obs.shape:
        raise DatasetError(
            f"'observations' {obs.shape} and 'next_observations' {next_obs.shape} must both be "
            f"(N, S) with N = {n} rows, like 'terminals'"
        )
    ends = terminals.astype(bool)  # a new array: the input is not modified below
    for start in range(0, n - 1, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n - 1)
        gap = obs[start + 1:stop + 1] - next_obs[start:stop]  # [chunk, S]
        ends[start:stop] |= np.linalg.norm(gap, axis=1) > CONTINUITY_TOL
    ends[-1] = True
    return ends


def trajectory_returns(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Undiscounted return of every trajectory (split by `trajectory_ends`), float64, in order."""
    rewards = _rewards(data).reshape(-1)
    ends = trajectory_ends(data)
    if rewards.shape[0] != ends.shape[0]:
        raise DatasetError(f"'rewards' has {rewards.shape[0]} rows but 'terminals' has "
                           f"{ends.shape[0]}")
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])  # first row of each trajectory
    return np.add.reduceat(rewards.astype(np.float64), starts)


def normalize_rewards_by_return_range(data: Mapping[str, np.ndarray], *,
                                      scale: float = 1000.0) -> dict[str, np.ndarray]:
    """IQL's D4RL reward normalisation: `r <- r * scale / (max_k R_k - min_k R_k)` (spec 2.3).

    `R_k` is the undiscounted return of trajectory `k`, with trajectories split by
    `trajectory_ends` (a terminal, a discontinuity `||obs[i+1] - next_obs[i]|| > 1e-6`, or the
    last row). Returns are summed in float64; the result keeps the rewards' float dtype and shape.
    The original computes `r / (max - min) * 1000` in float32; the two agree to float32 rounding.

    Raises:
        DatasetError: if every trajectory has the same return (including a single trajectory),
            since the range would be zero.
    """
    rewards = _rewards(data)
    returns = trajectory_returns(data)
    span = float(returns.max() - returns.min())
    if not span > 0.0:
        raise DatasetError(
            f"cannot normalise rewards by the return range: all {returns.size} trajectories have "
            f"the same return {returns[0]:g}, so max - min = 0"
        )
    dtype = _float_dtype(rewards)
    return _with_rewards(data, (rewards.astype(np.float64) * (scale / span)).astype(dtype))


def zscore_rewards(data: Mapping[str, np.ndarray], *, eps: float = 1e-3) -> dict[str, np.ndarray]:
    """MOBILE's `--norm_reward`: `r <- (r - mean(r)) / (std(r) + eps)` (population std; spec 2.3).

    Mean and std are computed in float64 over all rows; the result keeps the rewards' float dtype
    and shape.
    """
    rewards = _rewards(data)
    if rewards.size == 0:
        raise DatasetError("the transition dict is empty; there are no rewards to standardise")
    r = rewards.astype(np.float64)
    normalised = (r - r.mean()) / (r.std() + eps)
    return _with_rewards(data, normalised.astype(_float_dtype(rewards)))


def shift_rewards(data: Mapping[str, np.ndarray], *, shift: float,
                  scale: float = 1.0) -> dict[str, np.ndarray]:
    """Affine reward shaping `r <- (r + shift) * scale` (spec 2.3).

    Antmaze: IQL uses `shift=-1` (`r - 1`), CQL `shift=-0.5, scale=4` (`(r - 0.5) * 4`). The result
    keeps the rewards' float dtype and shape.
    """
    rewards = _rewards(data)
    dtype = _float_dtype(rewards)
    return _with_rewards(data, ((rewards.astype(np.float64) + shift) * scale).astype(dtype))
