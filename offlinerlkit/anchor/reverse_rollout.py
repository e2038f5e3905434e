"""Divergent reverse rollouts: the anchor seeker's training data (spec §4.2-4.4).

Starting from dataset states, a learned *reverse* model steps backwards in time while a fixed,
randomly drawn action direction is followed. Each imagined earlier state `x_k` is recorded with
the action `a_k` that leads from it back towards the data (`x_k -> x_{k-1}`), so behaviour cloning
on `(x_k, a_k)` teaches the anchor seeker to walk towards the dataset.

The result is the dict the original pickles to `result/reverse_imagination.pkl` (what its ring
buffer's `sample_all` returns); `save_imagination` / `load_imagination` write and read that file.
"""
from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.utils.errors import UserError
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.safe_pickle import load_array_pickle

__all__ = [
    "IMAGINATION_FILE",
    "ImaginationFileError",
    "divergent_reverse_rollouts",
    "imagination_layout",
    "load_imagination",
    "save_imagination",
]

logger = logging.getLogger(__name__)

#: File name the scripts use under `<run>/result/` (the original's name).
IMAGINATION_FILE = "reverse_imagination.pkl"
#: The array fields of an imagination dict, in the original's order.
ARRAY_KEYS = ("observations", "actions", "next_observations", "terminals", "rewards")
#: The original's `--batch_size`: start states are recorded in blocks of this many.
ORIGINAL_BLOCK = 256


class ImaginationFileError(UserError, ValueError):
    """A reverse-imagination file exists but cannot be used (corrupt, wrong sizes, bad values)."""


def imagination_layout(num_starts: int, rollout_length: int, block_size: int | None) -> np.ndarray:
    """Where each transition goes in the original's append order: `t[k, i]`, int64 `[L, N]`.

    The original appends, for each block of `block_size` consecutive start states (in dataset
    order), all rows of step 1, then all rows of step 2, ... (step-major within a block). Start
    `i` in block `b = i // c` at row `r = i % c`, of a block of `c_b` rows, is therefore appended
    at position `t = b * c * L + k * c_b + r` at (0-based) step `k`. `block_size=None` means one
    block holding every start state.
    """
    n, length = int(num_starts), int(rollout_length)
    c = n if block_size is None else int(block_size)
    c = max(c, 1)
    i = np.arange(n, dtype=np.int64)
    block, row = i // c, i % c
    block_rows = np.minimum(c, n - block * c)  # c_b: the last block may be partial
    k = np.arange(length, dtype=np.int64)[:, None]  # [L, 1]
    return block * c * length + k * block_rows + row  # [L, N]


@torch.no_grad()
def divergent_reverse_rollouts(
    reverse_dynamics: EnsembleDynamics,
    start_obs: Tensor | np.ndarray,
    dataset_actions: Tensor | np.ndarray,
    *,
    rollout_length: int = 5,
    scale_coef: float,
    noise_coef: float,
    max_action: float = 1.0,
    chunk_size: int = 65536,
    block_size: int | None = ORIGINAL_BLOCK,
    capacity: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Roll the reverse model backwards from every start state along a fixed random direction.

    For start state `i` (spec §4.2-4.3), with `x_0 = start_obs[i]` (the scripts pass the
    dataset's `next_observations`) and a direction `d_i` drawn uniformly, with replacement, from
    `dataset_actions` (independently of the start's own action), for `k = 1 .. L`:

        a_k = clip(scale_coef * d_i + noise_coef * eps_k, -m, m),   eps_k ~ N(0, I) fresh each step
        x_k ~ reverse(x_{k-1}, a_k)                                  (random elite, sampled)

    and the transition `(obs=x_k, action=a_k, next_obs=x_{k-1}, reward=0, terminal=0)` is recorded.
    Every start contributes `L` transitions (reverse models never terminate): `N * L` in total.

    **Order.** Transitions appear in the original's append order: blocks of `block_size` start
    states in dataset order, step-major within each block (see `imagination_layout`). This is
    independent of `chunk_size`, which only sets how many start states are rolled out per batched
    model call; the results do not depend on it except through the order of random draws.

    **Capacity.** `capacity=None` keeps all `N * L` transitions. An int reproduces the original's
    ring buffer of that capacity (`rollout_batch_size * rollout_length * rollout_epoch`, 1.5M with
    the README settings) exactly: when `N * L > capacity` only the last `capacity` transitions of
    the append order survive, stored at `t mod capacity` (rotated order), which is what the
    original's `sample_all` returned and pickled (spec §4.3, §12.15). A warning then says how many
    were dropped. Start states whose transitions would all be overwritten are not rolled out.

    Shapes: `start_obs` `[N, S]`, `dataset_actions` `[M_a, A]`; outputs `observations`,
    `next_observations` `[M, S]`, `actions` `[M, A]`, `rewards`, `terminals` `[M, 1]` (float32,
    zeros), `M = N * L` or `min(N * L, capacity)`, plus `"infos/step": None` as in the original.

    Args:
        reverse_dynamics: a `direction="reverse"` model; `step(x, a)` returns the previous state.
        start_obs: the states the rollouts start from, `x_0`.
        dataset_actions: the pool the directions are drawn from (the dataset's actions).
        rollout_length: `L`, steps per start state (README: 5).
        scale_coef: scale of the direction (README: 0.8).
        noise_coef: std of the per-step Gaussian action noise (README: 0.1).
        max_action: `m`, actions are clipped to `[-m, m]`.
        chunk_size: start states per batched rollout (compute only; the original used 256).
        block_size: start states per recording block (the original's `--batch_size`, 256);
            None records step-major over all start states.
        capacity: None to keep everything, or the original's ring-buffer capacity.
        generator: torch generator on the reverse model's device (else torch's global one).
        progress: show a tqdm bar over start states.

    Returns:
        The imagination dict (numpy arrays on the CPU).
    """
    if getattr(reverse_dynamics, "direction", None) != "reverse":
        raise ValueError("divergent_reverse_rollouts needs reverse dynamics "
                         f"(direction='reverse'), got direction={getattr(reverse_dynamics, 'direction', None)!r}")
    obs_dim, action_dim = int(reverse_dynamics.obs_dim), int(reverse_dynamics.action_dim)
    device = reverse_dynamics.device
    start = torch.as_tensor(start_obs, dtype=torch.float32)
    actions = torch.as_tensor(dataset_actions, dtype=torch.float32).to(device)
    if start.dim() != 2 or start.shape[1] != obs_dim or start.shape[0] < 1:
        raise ValueError(f"start_obs must be [N >= 1, {obs_dim}], got {tuple(start.shape)}")
    if actions.dim() != 2 or actions.shape[1] != action_dim or actions.shape[0] < 1:
        raise ValueError(f"dataset_actions must be [M >= 1, {action_dim}], got {tuple(actions.shape)}")
    if rollout_length < 1 or chunk_size < 1 or (block_size is not None and block_size < 1):
        raise ValueError("rollout_length, chunk_size and block_size must be >= 1; got "
                         f"{rollout_length}, {chunk_size}, {block_size}")
    if capacity is not None and capacity < 1:
        raise ValueError(f"capacity must be None (keep all) or >= 1, got {capacity}")
    if noise_coef < 0 or max_action <= 0:
        raise ValueError(f"need noise_coef >= 0 and max_action > 0, got {noise_coef}, {max_action}")
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"the generator is on {generator.device} but the reverse model on {device}; "
                         "create the generator on the model's device")

    n, length = start.shape[0], int(rollout_length)
    total = n * length
    layout = imagination_layout(n, length, block_size)  # [L, N] append positions
    size = total if capacity is None else min(total, int(capacity))
    first_kept = total - size  # transitions before this position are overwritten
    # positions grow with the start index (blocks in order), so the needed starts are a suffix
    first_start = int(np.searchsorted(layout[-1], first_kept, side="left"))
    if size < total:
        logger.warning(
            "reverse imagination: capacity %d < %d start states x %d steps = %d transitions; as in "
            "the original ring buffer only the last %d survive (from start states %d..%d, in "
            "rotated order) and %d are dropped; pass capacity=None to keep them all",
            size, n, length, total, size, first_start, n - 1, total - size)

    out = {
        "observations": np.zeros((size, obs_dim), np.float32),
        "actions": np.zeros((size, action_dim), np.float32),
        "next_observations": np.zeros((size, obs_dim), np.float32),
    }
    # one direction per start state, drawn once (replaces the original's address-keyed cache)
    pick = torch.randint(actions.shape[0], (n,), generator=generator, device=device)
    directions = actions[pick]  # [N, A]

    bar = tqdm(total=n - first_start, desc="reverse rollouts", unit="state", disable=not progress,
               dynamic_ncols=True)
    try:
        for lo in range(first_start, n, int(chunk_size)):
            hi = min(lo + int(chunk_size), n)
            x = start[lo:hi].to(device)  # [b, S]
            base = scale_coef * directions[lo:hi]  # [b, A]
            for k in range(length):
                noise = torch.randn(base.shape, generator=generator, device=device)
                action = (base + noise_coef * noise).clamp(-max_action, max_action)  # [b, A]
                prev, _, _, _ = reverse_dynamics.step(x, action, sampling="random_elite",
                                                      generator=generator)  # [b, S]
                pos = layout[k, lo:hi]  # [b]
                keep = pos >= first_kept
                slots = pos[keep] % size
                values = {"observations": prev, "actions": action, "next_observations": x}
                if not keep.all():  # the first rolled-out block of a ring: drop overwritten rows
                    rows = torch.from_numpy(np.nonzero(keep)[0]).to(device)
                    values = {key: value[rows] for key, value in values.items()}
                for key, value in values.items():
                    out[key][slots] = value.cpu().numpy()
                x = prev
            bar.update(hi - lo)
    finally:
        bar.close()
    out["terminals"] = np.zeros((size, 1), np.float32)
    out["rewards"] = np.zeros((size, 1), np.float32)
    result: dict[str, Any] = dict(out)
    result["infos/step"] = None
    return result


# --- files ---
def save_imagination(path: str | os.PathLike, data: Mapping[str, Any], *,
                     overwrite: bool = False) -> Path:
    """Pickle an imagination dict to `path` atomically (the original's `reverse_imagination.pkl`).

    The file holds a plain dict of numpy arrays (plus `"infos/step": None`), readable by the
    original code. Writing goes to a temporary file in the same folder, then `os.replace`.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        ValueError: `data` lacks an array field.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or "
                              "choose another path")
    missing = [k for k in ARRAY_KEYS if k not in data]
    if missing:
        raise ValueError(f"save_imagination: data lacks {missing}")
    payload: dict[str, Any] = {k: np.asarray(data[k], dtype=np.float32) for k in ARRAY_KEYS}
    payload["infos/step"] = data.get("infos/step")
    return atomic_write(path, lambda f: pickle.dump(payload, f, protocol=4))


def load_imagination(path: str | os.PathLike, *, obs_dim: int, action_dim: int) -> dict[str, Any]:
    """Read and check a reverse-imagination pickle (ours or the original's).

    Only plain containers and numpy arrays are unpickled. The arrays are checked: all five
    fields present, `observations`/`next_observations` `[M, obs_dim]`, `actions`
    `[M, action_dim]`, `rewards`/`terminals` `[M, 1]` (or `[M]`), `M >= 1`, and finite values.

    Returns:
        The dict with float32 arrays (`rewards`/`terminals` as `[M, 1]`) and `"infos/step"`.

    Raises:
        FileNotFoundError: no file at `path`.
        ImaginationFileError: the file is corrupt, holds other objects, or fails a check.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reverse-imagination file at {path}; run the anchor-seeker "
                                "stage (divergent reverse rollouts) first, or fix the path")
    fix = "regenerate it with divergent_reverse_rollouts + save_imagination"
    try:
        with open(path, "rb") as f:
            data = load_array_pickle(f, what="an imagination file")
    except Exception as exc:  # truncated, not a pickle, foreign objects, ...
        raise ImaginationFileError(f"cannot read {path} ({type(exc).__name__}: {exc}); the file is "
                                   f"corrupt or not a reverse-imagination pickle; {fix}") from exc
    if not isinstance(data, dict):
        raise ImaginationFileError(f"{path} holds a {type(data).__name__}, not a dict; {fix}")
    missing = [k for k in ARRAY_KEYS if k not in data]
    if missing:
        raise ImaginationFileError(f"{path} lacks {missing} (has {sorted(map(str, data))}); {fix}")
    out: dict[str, Any] = {}
    for key in ARRAY_KEYS:
        value = data[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise ImaginationFileError(f"{path}: {key!r} is not a numeric numpy array; {fix}")
        out[key] = value.astype(np.float32, copy=False)
    m = out["observations"].shape[0] if out["observations"].ndim == 2 else -1
    for key in ("rewards", "terminals"):
        if out[key].ndim == 1:
            out[key] = out[key].reshape(-1, 1)
    expected = {"observations": (m, obs_dim), "actions": (m, action_dim),
                "next_observations": (m, obs_dim), "rewards": (m, 1), "terminals": (m, 1)}
    for key, shape in expected.items():
        if m < 1 or out[key].shape != shape:
            raise ImaginationFileError(
                f"{path}: {key!r} has shape {out[key].shape}, expected (M >= 1, {shape[1]}) with the "
                f"same M for every field (obs_dim={obs_dim}, action_dim={action_dim}); the file is "
                f"from another task or truncated; {fix}")
        if not np.isfinite(out[key]).all():
            bad = int((~np.isfinite(out[key])).any(axis=1).sum())
            raise ImaginationFileError(f"{path}: {key!r} has {bad} rows with NaN/inf values (the "
                                       f"reverse model diverged?); {fix}")
    out["infos/step"] = data.get("infos/step")
    return out
