"""Key/value metrics logger with console, per-phase CSV, TensorBoard, W&B and no-op backends.

The contract (docs/ARCHITECTURE.md): `record(key, value)` / `record_dict(metrics)` accumulate
Python floats (several records of one key before a dump are averaged); `dump(step, phase=...)`
writes one row to every backend and clears; `info(msg)` writes a console line;
`write_hyper_params(config)` writes `record/hyper_param.json` and a TensorBoard text entry.
Only trainers and scripts log (STYLE R10); the rest of the library returns metrics.

Files, inside a `RunDir`::

    record/consoleout_backup.txt             every console table and info line
    record/<phase>_training_progress.csv     one file per phase, first column `timestep`
    record/tb/                               TensorBoard events
    record/hyper_param.json                  the run's configuration

Unlike COCOA (spec §12.26, §12.27), a phase's metrics only reach that phase's CSV and every value
is a Python float. Re-opening a logger on an existing run directory (resume) appends to the CSVs
and the console backup instead of truncating them.

Example::

    with Logger(run) as logger:
        logger.write_hyper_params(cfg)
        for epoch in range(1, num_epochs + 1):
            logger.record_dict(policy.learn(batch))
            logger.dump(epoch * steps_per_epoch, phase="policy")
"""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
import numbers
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from types import TracebackType
from typing import Any

import numpy as np
import torch

from offlinerlkit.utils.log_backends import (
    STEP_KEY,
    Backend,
    ConsoleBackend,
    CSVBackend,
    TensorBoardBackend,
    WandbBackend,
)
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.run_record import write_hyper_params

__all__ = ["BACKENDS", "PHASES", "Logger", "NoOpLogger", "to_jsonable"]

_log = logging.getLogger(__name__)

#: Training phases, each with its own CSV file `record/<phase>_training_progress.csv`.
PHASES = ("policy", "dynamics", "reverse_dynamics", "anchor_seeker")
#: Backend names accepted by `Logger(backends=...)`.
BACKENDS = ("console", "csv", "tensorboard", "wandb")
_CONSOLE_BACKUP = "consoleout_backup.txt"


# --------------------------------------------------------------------------- value conversion


def _to_float(key: str, value: object) -> float:
    """Convert one metric to a Python float, or raise a TypeError naming `key`."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(
                f"logged value for {key!r} is a {value.dtype} tensor of shape "
                f"{tuple(value.shape)}; log a real scalar (e.g. `.mean()`)"
            )
        return float(value.detach().reshape(()).item())
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(
                f"logged value for {key!r} is a numpy array of shape {value.shape}; "
                "log a scalar (e.g. `.mean()`)"
            )
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(
        f"logged value for {key!r} must be a real number (int, float, numpy scalar or "
        f"one-element tensor), got {type(value).__name__}: {value!r}"
    )


def to_jsonable(obj: object, where: str = "config") -> Any:
    """Return a new JSON-typed copy of `obj` (the input is never modified).

    Handles dataclass instances and mappings (-> dict), lists/tuples/sets (-> list), paths
    (-> str), enums (-> their value), numpy scalars and arrays, tensors (-> numbers / lists) and
    torch dtypes and devices (-> `"torch.float32"`, `"cuda:0"`).

    Args:
        obj: the object to convert.
        where: the name of `obj`, used in error messages.

    Raises:
        TypeError: some value has no JSON form; the message gives its path, e.g. `config.sac.fn`.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, where)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), where)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    if isinstance(obj, np.ndarray | torch.Tensor):
        return to_jsonable(obj.tolist(), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str | int | float | bool | enum.Enum) and key is not None:
                raise TypeError(
                    f"{where} has a key of type {type(key).__name__}, not allowed in JSON"
                )
            name = str(key.value if isinstance(key, enum.Enum) else key)
            out[name] = to_jsonable(value, f"{where}.{name}")
        return out
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(sorted(obj, key=repr))]
    raise TypeError(f"{where} has type {type(obj).__name__}, which has no JSON form")


# --------------------------------------------------------------------------- logger


class Logger:
    """Accumulates scalar metrics and writes them to the chosen backends on `dump`.

    Backends:
        * `console`: a boxed key/value table per dump (keys sorted, values `%-8.3g`, plus
          `timestep`, `phase` and `current_time` rows) printed with `tqdm.write` (progress bars
          stay intact), mirrored with `info` lines to `record/consoleout_backup.txt`.
        * `csv`: `record/<phase>_training_progress.csv`, first column `timestep`; a new key
          rewrites the file with the extended header, old rows padded with empty cells; flushed
          after every row.
        * `tensorboard`: `add_scalar(key, value, step)` into `record/tb/`, flushed per dump.
        * `wandb`: `wandb.init(**wandb)`; imported only when requested.

    Args:
        run_dir: the run directory; None logs nowhere on disk (only `console` to stdout and
            `wandb` are then allowed).
        backends: names from `BACKENDS`. `()` gives a logger that only accumulates and returns
            rows (see `NoOpLogger`).
        wandb: keyword arguments for `wandb.init`; only valid with the `wandb` backend.
        lock: hold the run folder's `RunLock` until `close()`, so that no second process
            writes into it at the same time.

    Raises:
        ValueError: an unknown backend, a file backend without `run_dir`, or `wandb` settings
            without the `wandb` backend.
        ImportError: the `wandb` backend was requested but wandb is not installed.
    """

    def __init__(
        self,
        run_dir: RunDir | None,
        *,
        backends: Sequence[str] = ("console", "csv", "tensorboard"),
        wandb: Mapping[str, object] | None = None,
        lock: bool = False,
    ) -> None:
        if isinstance(backends, str):
            backends = (backends,)
        names = list(dict.fromkeys(backends))
        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown logger backend(s) {unknown}; choose from {BACKENDS}")
        on_disk = [n for n in names if n in ("csv", "tensorboard")]
        if run_dir is None and on_disk:
            raise ValueError(f"logger backend(s) {on_disk} write files and need a run_dir")
        if wandb is not None and "wandb" not in names:
            raise ValueError("wandb settings were given but 'wandb' is not in backends")

        self.run_dir = run_dir
        self._lock = None
        if lock:
            if run_dir is None:
                raise ValueError("lock=True needs a run_dir")
            from offlinerlkit.utils.resume import RunLock

            self._lock = RunLock(run_dir.path).acquire()  # before anything is written
        self.backends = tuple(names)
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._closed = False
        self._backends: list[Backend] = []
        try:
            for name in names:
                self._backends.append(self._make_backend(name, wandb or {}))
        except BaseException:
            self.close()
            raise

    def _make_backend(self, name: str, wandb: Mapping[str, object]) -> Backend:
        run = self.run_dir
        if name == "console":
            return ConsoleBackend(run.record / _CONSOLE_BACKUP if run is not None else None)
        assert run is not None or name == "wandb"
        if name == "csv":
            return CSVBackend(run.record)
        if name == "tensorboard":
            return TensorBoardBackend(run.tb)
        return WandbBackend(wandb, run)

    # ---------------------------------------------------------------- metrics

    def record(self, key: str, value: object) -> None:
        """Accumulate one scalar; several records of `key` before a dump are averaged.

        Args:
            key: the metric name, `group/name` (e.g. `loss/critic1`); `timestep` is reserved.
            value: an int, float, numpy scalar, or 0-d / one-element tensor or array.

        Raises:
            TypeError: `value` is not a real scalar (the message names `key`).
            ValueError: `key` is empty, not a string, or `timestep`.
        """
        self._check_key(key)
        self._add(key, _to_float(key, value))

    def record_dict(self, metrics: Mapping[str, object]) -> None:
        """Record every item of `metrics`; nothing is recorded if any value is invalid."""
        converted = {}
        for key, value in metrics.items():
            self._check_key(key)
            converted[key] = _to_float(key, value)
        for key, value in converted.items():
            self._add(key, value)

    def _check_key(self, key: object) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric keys must be non-empty strings, got {key!r}")
        if key == STEP_KEY:
            raise ValueError(f"{STEP_KEY!r} is reserved; pass the step to dump() instead")

    def _add(self, key: str, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value
        self._counts[key] = self._counts.get(key, 0) + 1

    def dump(self, step: int, *, phase: str = "policy") -> dict[str, float]:
        """Write the averaged metrics as one row to every backend, then clear them.

        Args:
            step: the x-axis value (gradient steps so far), written as `timestep`.
            phase: one of `PHASES`; picks the CSV file.

        Returns:
            The row written (`{key: mean value}`, keys sorted); `{}` when nothing was recorded,
            in which case nothing is written.

        Raises:
            ValueError: unknown `phase`.
            TypeError: `step` is not an int.
            RuntimeError: the logger is closed.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown logging phase {phase!r}; choose from {PHASES}")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an int, got {type(step).__name__}")
        self._check_open()
        row = {k: self._sums[k] / self._counts[k] for k in sorted(self._sums)}
        self._sums.clear()
        self._counts.clear()
        if row:
            for backend in self._backends:
                backend.write(row, int(step), phase)
        return row

    def rewind(self, step: int, *, phase: str = "policy") -> None:
        """Drop the rows of `phase` logged after `step`, before a resumed run logs them again.

        A run resumed from the checkpoint of `step` repeats what it did after it: the CSV keeps
        only rows with `timestep <= step`, TensorBoard purges later events (of every tag: the
        other phases' later rows are then written to it again from their CSVs) and pending
        metrics are discarded, so the records read as one uninterrupted run.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown logging phase {phase!r}; choose from {PHASES}")
        self._check_open()
        self._sums.clear()
        self._counts.clear()
        tables = next((b for b in self._backends if isinstance(b, CSVBackend)), None)
        for backend in self._backends:
            backend.rewind(phase, int(step))
            if isinstance(backend, TensorBoardBackend) and tables is not None:
                for other in PHASES:
                    if other != phase:
                        for at, row in tables.rows_after(other, int(step)):
                            backend.write(row, at, other)

    # ---------------------------------------------------------------- text

    def info(self, msg: str) -> None:
        """Write `msg` as a console line (and to `record/consoleout_backup.txt`).

        Only the `console` (and no other) backend shows it.
        """
        self._check_open()
        for backend in self._backends:
            backend.info(str(msg))

    def write_hyper_params(self, config: Mapping[str, object] | object) -> dict[str, Any]:
        """Write the run configuration to `record/hyper_param.json` and TensorBoard.

        The file is written (atomically, pretty-printed) from a new JSON-typed copy built by
        `to_jsonable`; `config` itself is never modified. A later call (e.g. on resume)
        replaces the file.

        Args:
            config: a mapping or a dataclass instance.

        Returns:
            The JSON-typed copy that was written.

        Raises:
            TypeError: `config` is not a mapping/dataclass, or holds a value with no JSON form.
        """
        self._check_open()
        data = to_jsonable(config)
        if not isinstance(data, dict):
            raise TypeError(
                f"hyper-parameters must be a mapping or dataclass, got {type(config).__name__}"
            )
        text = (write_hyper_params(self.run_dir.path, data) if self.run_dir is not None
                else json.dumps(data, indent=4))
        for backend in self._backends:
            backend.hyper_params(text, data)
        return data

    # ---------------------------------------------------------------- lifetime

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the logger is closed")

    def close(self) -> None:
        """Flush and close every backend (idempotent). Pending records are discarded."""
        if self._closed:
            return
        self._closed = True
        for backend in self._backends:
            try:
                backend.close()
            except Exception:  # keep closing the others
                _log.exception("failed to close logger backend %s", type(backend).__name__)
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NoOpLogger(Logger):
    """A logger that writes nothing: records are still validated and averaged, `dump` returns
    the row. For library users and tests."""

    def __init__(self) -> None:
        super().__init__(None, backends=())
