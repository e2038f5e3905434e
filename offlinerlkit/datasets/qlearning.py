"""D4RL's `qlearning_dataset`, vectorised.

Reproduces, row for row, the per-row loop of D4RL / OfflineRL-Kit (COCOA spec section 2.1):

```
episode_step = 0
for i in range(N - 1):                       # the last raw row is always dropped
    next_obs = next_observations[i] if present else observations[i + 1]
    done = bool(terminals[i])
    final = timeouts[i] if present else episode_step == max_episode_steps - 1
    if not terminate_on_end and final:       # a time-limit row is skipped
        episode_step = 0
        continue
    if done or final:
        episode_step = 0
        if next_observations is absent:      # no true next observation: skip
            continue
    keep row i with terminal = done
    episode_step += 1                        # so a kept terminal row leaves the counter at 1
```

Without a `timeouts` key the step counter has state, so whether row `i` is a time limit depends
on every earlier row. `_counter_final_timesteps` computes it without a Python loop: terminal rows
split the data into segments; inside a segment the counter grows by one per row from a known
start value, and time limits recur with a fixed period. The start value of a segment (0 or 1)
depends on whether the terminal row that opened it was itself a time limit, which is resolved
with a prefix scan over segments (composition of maps {0, 1} -> {0, 1}).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from offlinerlkit.datasets.errors import DatasetError

#: Keys every raw (D4RL-format) dataset must have.
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def _column(raw: Mapping[str, np.ndarray], key: str, n: int) -> np.ndarray:
    """`raw[key]` as a 1-D array of length `n` (a trailing axis of size 1 is dropped)."""
    arr = np.asarray(raw[key])
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise DatasetError(
            f"dataset key '{key}' has shape {arr.shape}, expected ({n},) like 'rewards': every "
            "per-step array must have one entry per step"
        )
    return arr


def _rows(raw: Mapping[str, np.ndarray], key: str, n: int) -> np.ndarray:
    """`raw[key]` as a 2-D array with `n` rows."""
    arr = np.asarray(raw[key])
    if arr.ndim != 2 or arr.shape[0] != n:
        raise DatasetError(
            f"dataset key '{key}' has shape {arr.shape}, expected ({n}, size): one row per step "
            "(the same number of steps as 'rewards')"
        )
    return arr


def _final_if(t: np.ndarray, start: np.ndarray | int, max_steps: int, period: int) -> np.ndarray:
    """Whether offset `t` inside a segment whose counter starts at `start` is a time limit.

    The counter reaches `max_steps - 1` first at `t1 = max_steps - 1 - start`; after each time
    limit it restarts at `max_steps - period`, so later time limits come every `period` rows
    (`period == 0` means the counter restarts above the limit and never reaches it again).
    """
    t1 = max_steps - 1 - np.asarray(start, dtype=np.int64)
    hit = (t >= t1) & (t1 >= 0)
    if period > 0:
        return hit & (np.mod(t - t1, period) == 0)
    return hit & (t == t1)


def _prefix_compose(g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
    """`out[k] = (g_k o ... o g_0)(0)` for maps `g_k: {0, 1} -> {0, 1}` given as tables.

    `g0[k] = g_k(0)` and `g1[k] = g_k(1)`. Hillis-Steele inclusive scan: log2(K) vector steps.
    """
    a0, a1 = g0.astype(np.int8), g1.astype(np.int8)
    shift = 1
    while shift < a0.shape[0]:
        prev0, prev1 = a0[:-shift], a1[:-shift]  # F_{k-shift}
        cur0, cur1 = a0[shift:], a1[shift:]  # F_k over its current window
        new0 = np.where(prev0 == 0, cur0, cur1)  # (F_k o F_{k-shift})(0)
        new1 = np.where(prev1 == 0, cur0, cur1)  # (F_k o F_{k-shift})(1)
        a0 = np.concatenate([a0[:shift], new0])
        a1 = np.concatenate([a1[:shift], new1])
        shift *= 2
    return a0


def _counter_final_timesteps(
    done: np.ndarray, *, max_steps: int, terminate_on_end: bool, has_next_obs: bool
) -> np.ndarray:
    """The loop's `final_timestep` for every row when the dataset has no `timeouts` key.

    Args:
        done: `(M,)` bool, the terminal flag of each processed row.
        max_steps: `max_episode_steps`.
        terminate_on_end: as in `qlearning_dataset`.
        has_next_obs: whether the dataset has a `next_observations` key.

    Returns:
        `(M,)` bool.
    """
    m = done.shape[0]
    if m == 0:
        return np.zeros(0, dtype=bool)
    # Counter value after a terminal row that is not a time limit, and after a time-limit row.
    after_done = 1 if has_next_obs else 0
    after_final = after_done if terminate_on_end else 0
    period = max_steps - after_final

    ends = np.flatnonzero(done)  # segment k ends (inclusive) at ends[k]; the last one at m-1
    starts = np.concatenate([[0], ends + 1])  # (K+1,)
    num_ends = ends.shape[0]
    if num_ends == 0 or after_done == after_final:
        seg_start_value = np.full(num_ends + 1, after_done, dtype=np.int64)
    else:
        t_end = ends - starts[:-1]  # offset of each terminal row inside its segment
        g0 = np.where(_final_if(t_end, 0, max_steps, period), after_final, after_done)
        g1 = np.where(_final_if(t_end, 1, max_steps, period), after_final, after_done)
        seg_start_value = np.concatenate([[0], _prefix_compose(g0, g1)]).astype(np.int64)
    seg_start_value[0] = 0  # the loop starts with episode_step = 0

    seg = np.cumsum(done) - done  # segment of each row: terminal rows before it
    t = np.arange(m) - starts[seg]
    return _final_if(t, seg_start_value[seg], max_steps, period)


def qlearning_dataset(
    raw: Mapping[str, np.ndarray],
    *,
    terminate_on_end: bool = False,
    max_episode_steps: int = 1000,
) -> dict[str, np.ndarray]:
    """Turn a raw D4RL dataset into `(s, a, r, s', done)` transitions (COCOA spec section 2.1).

    Exactly the rows D4RL's per-row loop keeps (see the module docstring), computed with numpy.

    Args:
        raw: D4RL-format arrays: `observations (N,S)`, `actions (N,A)`, `rewards (N,)`,
            `terminals (N,)`, optionally `timeouts (N,)` and `next_observations (N,S)`.
            Other keys are ignored.
        terminate_on_end: keep time-limit rows (with the terminal flag they have) instead of
            skipping them.
        max_episode_steps: the episode length used to find time limits when `raw` has no
            `timeouts` key.

    Returns:
        `observations (M,S) float32`, `actions (M,A) float32`, `next_observations (M,S)
        float32`, `rewards (M,) float32`, `terminals (M,) bool`.

    Raises:
        DatasetError: a required key is missing or the arrays disagree in length or shape.
    """
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise DatasetError(
            f"dataset is missing {missing} (it has {sorted(raw)}); a D4RL dataset needs "
            f"{list(REQUIRED_KEYS)}"
        )
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be at least 1, got {max_episode_steps}")
    rewards = np.asarray(raw["rewards"])
    if rewards.ndim == 0:
        raise DatasetError("dataset key 'rewards' is a scalar, expected one reward per step")
    n = rewards.shape[0]
    rewards = _column(raw, "rewards", n)
    terminals = _column(raw, "terminals", n)
    observations = _rows(raw, "observations", n)
    actions = _rows(raw, "actions", n)
    has_next_obs = "next_observations" in raw
    if has_next_obs:
        next_observations = _rows(raw, "next_observations", n)
        if next_observations.shape != observations.shape:
            raise DatasetError(
                f"dataset key 'next_observations' has shape {next_observations.shape} but "
                f"'observations' has {observations.shape}; they must match"
            )

    m = max(n - 1, 0)  # rows the loop visits
    done = terminals[:m].astype(bool)
    if "timeouts" in raw:
        final = _column(raw, "timeouts", n)[:m].astype(bool)
    else:
        final = _counter_final_timesteps(
            done,
            max_steps=max_episode_steps,
            terminate_on_end=terminate_on_end,
            has_next_obs=has_next_obs,
        )
    keep = np.ones(m, dtype=bool)
    if not terminate_on_end:
        keep &= ~final
    if not has_next_obs:
        keep &= ~(done | final)
    idx = np.flatnonzero(keep)

    next_obs = next_observations[idx] if has_next_obs else observations[idx + 1]
    return {
        "observations": observations[idx].astype(np.float32, copy=False),
        "actions": actions[idx].astype(np.float32, copy=False),
        "next_observations": next_obs.astype(np.float32, copy=False),
        "rewards": rewards[idx].astype(np.float32, copy=False),
        "terminals": done[idx],
    }
