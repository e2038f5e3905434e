"""Atomic, complete, resumable checkpoints: the one place the project writes them (STYLE R9).

A checkpoint is one file `<directory>/<prefix>_<epoch:06d>.pt` holding a flat dict::

    {"epoch": int, "rng": get_rng_state(), "<name>": <state>, ...}

where each `<name>` is a keyword passed to `save_checkpoint`: objects with `state_dict()` (modules,
optimisers, LR schedulers, scalers, buffers) are stored as their state dicts; plain values
(tensors, numpy arrays, numbers, strings, lists/tuples/dicts of those) as they are.

**Loading never unpickles arbitrary objects.** `load_checkpoint` uses
`torch.load(..., weights_only=True)`. To make that work for numpy data without allowlisting numpy
internals (which needs version-specific dtype classes), numpy arrays and scalars are stored as
tagged tensors (`{"__numpy_array__": tensor}`, `{"__numpy_scalar__": tensor}`) and decoded back to
numpy on load, so a round trip returns the same numpy types. `save_checkpoint` checks every value
up front and raises a `TypeError` naming the offending key for anything weights-only loading could
not read back (custom classes, string/object numpy arrays), so an unreadable checkpoint is never
written.

**Writes are atomic.** The dict is written to a temporary file in the same directory, flushed and
fsynced, then `os.replace`d onto the final name: a killed process leaves either the previous
checkpoints or the complete new one, never a half-written file under a checkpoint name.
"""
from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offlinerlkit.utils.errors import UserError
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.seeding import get_rng_state, set_rng_state

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "remove_stale_temporaries",
    "load_checkpoint",
    "load_finite_state",
    "non_finite_entries",
    "restore_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

_RESERVED = ("epoch", "rng")
_NUMPY_ARRAY = "__numpy_array__"
_NUMPY_SCALAR = "__numpy_scalar__"
# What torch's weights-only unpickler rebuilds by itself (besides tensors and containers).
_LEAF_TYPES = (
    type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size
)


class CheckpointError(UserError, RuntimeError):
    """Raised when a checkpoint cannot be read or does not hold what is asked of it."""


def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}_(\d{{6,}})\.pt$")


def list_checkpoints(directory: str | Path, *, prefix: str = "checkpoint") -> list[Path]:
    """Return the checkpoint files `<prefix>_<epoch>.pt` in `directory`, oldest epoch first.

    Temporary files and files with any other name are ignored. A missing directory gives `[]`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = _pattern(prefix)
    found = []
    for entry in directory.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the `.<name>.*.tmp` files a killed writer left in `directory`; returns them.

    Only safe while this process holds the run's lock (no other writer can be mid-write).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
             and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
        logger.info("removed %s, left by a killed write", path)
    return stale


def non_finite_entries(state: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors in a state dict that hold NaN or inf values."""
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def load_finite_state(module: torch.nn.Module, state: Mapping[str, Any], *, file: Path | str,
                      error: type[Exception], if_diverged: str) -> None:
    """Load `state` into `module`, raising `error` (one line naming `file`) when it does not fit
    the module or holds NaN/inf weights; `if_diverged` ends the latter message (what to do)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise error(f"{file} does not fit the architecture it describes: {exc}") from exc
    bad = non_finite_entries(module.state_dict())
    if bad:
        raise error(f"{file} holds NaN or infinite weights ({', '.join(bad)}): {if_diverged}")


def latest_checkpoint(directory: str | Path, *, prefix: str = "checkpoint") -> Path | None:
    """Return the checkpoint with the highest epoch in `directory`, or None if there is none."""
    found = list_checkpoints(directory, prefix=prefix)
    return found[-1] if found else None


def _encode(value: Any, where: str) -> Any:
    """Make `value` readable by `torch.load(weights_only=True)`; raise TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.str_ | np.bytes_):
        return value.item()
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)  # 0-d for scalars (np.ascontiguousarray would make it 1-d)
        if array.dtype.kind not in "biufc":
            raise TypeError(
                f"checkpoint value {where} is numpy data of dtype {array.dtype}; only "
                "bool/int/uint/float/complex arrays can be stored (convert it to a list)"
            )
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = array.copy()  # from_numpy rejects negative strides, warns on read-only
        tensor = torch.from_numpy(array)  # shares memory; torch.save copies it out
        return {_NUMPY_SCALAR if isinstance(value, np.generic) else _NUMPY_ARRAY: tensor}
    if isinstance(value, _LEAF_TYPES):
        return value
    if isinstance(value, Mapping):
        # Module state dicts are OrderedDicts carrying `_metadata` (per-module versions that
        # load_state_dict reads); keep both.
        out: dict[Any, Any] = OrderedDict() if isinstance(value, OrderedDict) else {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise TypeError(f"checkpoint value {where} has a key of type {type(key).__name__}")
            out[key] = _encode(item, f"{where}[{key!r}]")
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(value, list | tuple | set):
        items = [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, tuple):
            return tuple(items)
        return set(items) if isinstance(value, set) else items
    hint = ""
    if hasattr(value, "state_dict"):
        hint = " (pass it as its own keyword so its state_dict() is stored)"
    raise TypeError(
        f"checkpoint value {where} has type {type(value).__module__}.{type(value).__qualname__}, "
        f"which cannot be loaded with weights_only=True{hint}"
    )


def _decode(value: Any) -> Any:
    """Undo `_encode`: tagged tensors become numpy arrays/scalars again."""
    if isinstance(value, dict):
        if len(value) == 1 and _NUMPY_ARRAY in value:
            return value[_NUMPY_ARRAY].cpu().numpy()
        if len(value) == 1 and _NUMPY_SCALAR in value:
            return value[_NUMPY_SCALAR].cpu().numpy()[()]
        for key, item in value.items():
            value[key] = _decode(item)
        return value
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(_decode(item) for item in value)
    return value


def save_checkpoint(
    directory: str | Path,
    *,
    epoch: int,
    keep_last: int = 3,
    prefix: str = "checkpoint",
    include_rng: bool = True,
    **state: object,
) -> Path:
    """Atomically write `<directory>/<prefix>_<epoch:06d>.pt` and keep the newest `keep_last`.

    Example::

        save_checkpoint(run.checkpoint, epoch=epoch, policy=policy, actor_optim=actor_optim,
                        lr_scheduler=scheduler, last_10_performance=scores)

    Args:
        directory: where checkpoints live (created if missing).
        epoch: the epoch just completed; stored under `"epoch"` and used in the file name.
        keep_last: how many checkpoints of this prefix to keep; older ones are deleted (only
            files named exactly `<prefix>_<digits>.pt`). The file just written is never deleted.
        prefix: the file-name prefix, e.g. `checkpoint` or `dynamics`.
        include_rng: store `seeding.get_rng_state()` under `"rng"`.
        **state: what to save. Objects with `state_dict()` are stored as their state dict;
            other values must be tensors, numpy arrays, numbers, strings, None, or
            lists/tuples/dicts of those.

    Returns:
        The path of the new checkpoint.

    Raises:
        ValueError: `keep_last < 1`, a negative epoch, a prefix with a folder in it, or a
            reserved key (`epoch`, `rng`).
        TypeError: a value could not be read back with `weights_only=True` (the key is named).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    if int(epoch) < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not prefix or Path(prefix).name != prefix:
        raise ValueError(f"prefix must be a plain file-name prefix, got {prefix!r}")
    clash = [k for k in _RESERVED if k in state]
    if clash:
        raise ValueError(f"{clash} are reserved checkpoint keys; rename those keyword arguments")

    payload: dict[str, Any] = {"epoch": int(epoch)}
    if include_rng:
        payload["rng"] = get_rng_state()
    for name, value in state.items():
        if hasattr(value, "state_dict") and callable(value.state_dict):
            value = value.state_dict()
        payload[name] = _encode(value, repr(name))

    directory = Path(directory)
    final = atomic_write(directory / f"{prefix}_{int(epoch):06d}.pt",
                         lambda f: torch.save(payload, f))
    _fsync_directory(directory)

    for old in list_checkpoints(directory, prefix=prefix)[:-keep_last]:
        if old != final:
            old.unlink(missing_ok=True)
            logger.debug("deleted old checkpoint %s", old)
    return final


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (with `torch.load(weights_only=True)`).

    Args:
        path: the checkpoint file (e.g. from `latest_checkpoint`).
        map_location: where to put the tensors.

    Returns:
        The stored dict: `"epoch"`, `"rng"` (if saved) and one entry per saved keyword, with numpy
        arrays and scalars restored as numpy.

    Raises:
        CheckpointError: the file is missing, empty, truncated, corrupt or not a checkpoint; the
            message names the path and what to do.
    """
    path = Path(path)
    fix = "delete it and resume from an earlier checkpoint (or start a fresh run)"
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint file at {path}; check the path, or use latest_checkpoint(dir) to "
            "find the newest one"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted write?); {fix}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {fix}"
        ) from exc
    if not isinstance(payload, dict) or "epoch" not in payload:
        raise CheckpointError(
            f"{path} is not a checkpoint written by save_checkpoint (no 'epoch' entry); "
            "check the path"
        )
    return _decode(payload)


def restore_checkpoint(ckpt: Mapping[str, Any], *, restore_rng: bool = True, **objects: Any) -> int:
    """Load saved states into live objects and return the checkpoint's epoch.

    Example::

        ckpt = load_checkpoint(latest_checkpoint(run.checkpoint))
        start_epoch = restore_checkpoint(ckpt, policy=policy, actor_optim=actor_optim) + 1

    Args:
        ckpt: the dict returned by `load_checkpoint`.
        restore_rng: also restore the global RNG states saved in the checkpoint (done last).
        **objects: name -> object with `load_state_dict`; each name must be a key of `ckpt`.

    Returns:
        The epoch stored in the checkpoint.

    Raises:
        CheckpointError: a name is not in the checkpoint, or RNG restore was requested but the
            checkpoint holds no RNG state.
        TypeError: an object has no `load_state_dict`.
    """
    missing = [name for name in objects if name not in ckpt]
    if missing:
        available = sorted(k for k in ckpt if k not in _RESERVED)
        raise CheckpointError(f"checkpoint has no entry {missing}; it holds {available}")
    for name, obj in objects.items():
        if not callable(getattr(obj, "load_state_dict", None)):
            raise TypeError(f"{name!r} ({type(obj).__name__}) has no load_state_dict()")
        obj.load_state_dict(ckpt[name])
    if restore_rng:
        if "rng" not in ckpt:
            raise CheckpointError(
                "checkpoint holds no RNG state (saved with include_rng=False); "
                "pass restore_rng=False"
            )
        set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"])
