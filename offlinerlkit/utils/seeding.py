"""Global seeding and RNG state capture/restore: the one place the project seeds.

Scripts call `set_seed(cfg.seed)` once at start-up (STYLE R8). Library code never seeds; its
stochastic functions take an optional `torch.Generator` / `np.random.Generator` instead.

`get_rng_state()` returns the state of every global generator the project draws from (Python's
`random`, numpy's legacy global `RandomState`, torch's CPU generator and, when CUDA is available,
every CUDA device's generator) as a dict of tensors, ints, floats, strings and None only, so a
checkpoint holding it loads with `torch.load(..., weights_only=True)`. `set_rng_state(state)` puts
them back; draws after a restore repeat the draws made after the capture.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "set_rng_state", "set_seed"]

logger = logging.getLogger(__name__)

_MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts [0, 2**32 - 1]


def set_seed(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python's `random`, numpy's global RNG and torch (CPU and every CUDA device).

    Args:
        seed: the seed, an int in `[0, 2**32 - 1]`.
        deterministic: when True, cuDNN picks deterministic kernels and autotuning is off
            (`torch.backends.cudnn.deterministic = True`, `benchmark = False`); when False, the
            reverse (faster, not bit-reproducible on GPU). It does not call
            `torch.use_deterministic_algorithms`, which raises on ops without a deterministic
            kernel.

    Raises:
        TypeError: `seed` is not an int.
        ValueError: `seed` is outside `[0, 2**32 - 1]`.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def get_rng_state() -> dict[str, Any]:
    """Capture the state of every global random generator.

    Returns:
        `{"python": {...}, "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor, ...]}`;
        `"cuda"` is present only when CUDA is available. Every leaf is a tensor, int, float,
        str or None, so the dict can be stored in a checkpoint read with `weights_only=True`.
    """
    version, internal, gauss_next = random.getstate()
    bit_generator, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            # 624 Mersenne-Twister words (< 2**32) plus the position: all fit in int64.
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by `get_rng_state`.

    Tensors may live on any device (e.g. after `torch.load(map_location="cuda")`). A `"cuda"`
    entry is restored only when CUDA is available (a warning is logged otherwise, e.g. when a
    GPU run resumes on a CPU machine); with fewer devices than saved states, the first ones are
    used.

    Args:
        state: the dict returned by `get_rng_state` (possibly after a save/load round trip).

    Raises:
        KeyError: `state` lacks one of `"python"`, `"numpy"`, `"torch"`.
    """
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise KeyError(f"RNG state is missing {missing}; expected the dict from get_rng_state()")

    py = state["python"]
    internal = tuple(int(x) for x in torch.as_tensor(py["internal"]).cpu().tolist())
    gauss_next = py["gauss_next"]
    random.setstate(
        (int(py["version"]), internal, None if gauss_next is None else float(gauss_next))
    )

    npst = state["numpy"]
    key = np.asarray(torch.as_tensor(npst["key"]).cpu().numpy(), dtype=np.uint32)
    np.random.set_state(
        (
            str(npst["bit_generator"]),
            key,
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )

    torch.set_rng_state(torch.as_tensor(state["torch"]).cpu().to(torch.uint8))

    cuda_states = state.get("cuda")
    if cuda_states:
        if not torch.cuda.is_available():
            logger.warning("checkpoint holds CUDA RNG states but CUDA is unavailable; skipped")
            return
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(cuda_state).cpu().to(torch.uint8), index)
