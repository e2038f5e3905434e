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

import csv
import dataclasses
import enum
import io
import json
import logging
import numbers
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import numpy as np
import torch

from offlinerlkit.utils.errors import naming_path
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.run_record import write_hyper_params

__all__ = ["BACKENDS", "PHASES", "Logger", "NoOpLogger", "to_jsonable"]

_log = logging.getLogger(__name__)

#: Training phases, each with its own CSV file `record/<phase>_training_progress.csv`.
PHASES = ("policy", "dynamics", "reverse_dynamics", "anchor_seeker")
#: Backend names accepted by `Logger(backends=...)`.
BACKENDS = ("console", "csv", "tensorboard", "wandb")
_STEP_KEY = "timestep"
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


def _atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    atomic_write(path, lambda f: f.write(text), text=True)


# --------------------------------------------------------------------------- backends


def _row_step(row: list[str]) -> float:
    """The `timestep` cell of a CSV row (a row cut short by a kill counts as past the end)."""
    try:
        return float(row[0])
    except (ValueError, IndexError):
        return float("inf")


class _Backend:
    """One output of the logger; every hook is optional."""

    def write(self, row: dict[str, float], step: int, phase: str) -> None:
        """Write one dumped row."""

    def info(self, msg: str) -> None:
        """Write a free-form line."""

    def hyper_params(self, text: str, config: dict[str, Any]) -> None:
        """Record the run configuration (`text` is its pretty-printed JSON)."""

    def close(self) -> None:
        """Flush and release resources."""

    def rewind(self, phase: str, step: int) -> None:
        """Forget rows of `phase` after `step` (a resumed run writes them again)."""


class _ConsoleBackend(_Backend):
    """Boxed key/value tables on stdout (through `tqdm.write`) mirrored to a text file."""

    def __init__(self, backup: Path | None) -> None:
        from tqdm import tqdm  # tqdm.write keeps active progress bars intact

        self._write_stdout = tqdm.write
        self._file = open(backup, "a", encoding="utf-8") if backup is not None else None

    def _emit(self, text: str) -> None:
        self._write_stdout(text, file=sys.stdout)
        if self._file is not None:
            with naming_path(self._file.name):
                self._file.write(text + "\n")
                self._file.flush()

    def write(self, row: dict[str, float], step: int, phase: str) -> None:
        cells = {key: f"{value:<8.3g}" for key, value in row.items()}  # %-8.3g
        cells[_STEP_KEY] = str(step)
        cells["phase"] = phase
        cells["current_time"] = datetime.now().strftime("%y-%m%d-%H%M%S")
        key_width = max(map(len, cells))
        value_width = max(map(len, cells.values()))
        dashes = "-" * (key_width + value_width + 7)
        lines = [dashes]
        for key in sorted(cells, key=str.lower):
            lines.append(f"| {key:<{key_width}} | {cells[key]:<{value_width}} |")
        lines.append(dashes)
        self._emit("\n".join(lines))

    def info(self, msg: str) -> None:
        self._emit(msg)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _CSVBackend(_Backend):
    """One CSV per phase; the header grows when new keys appear (old rows padded)."""

    def __init__(self, record_dir: Path) -> None:
        self._dir = record_dir
        self._files: dict[str, Any] = {}
        self._keys: dict[str, list[str]] = {}

    def _path(self, phase: str) -> Path:
        return self._dir / f"{phase}_training_progress.csv"

    def _open(self, phase: str) -> None:
        path = self._path(phase)
        keys = [_STEP_KEY]
        if path.is_file() and path.stat().st_size > 0:  # resume: keep header and rows
            with open(path, encoding="utf-8", newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                keys = header
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"  # a row cut short by a kill
            handle = open(path, "a", encoding="utf-8", newline="")
            if needs_newline:
                handle.write("\n")
        else:
            handle = open(path, "w", encoding="utf-8", newline="")
            csv.writer(handle).writerow(keys)
        self._files[phase], self._keys[phase] = handle, keys

    def _extend_header(self, phase: str, new_keys: list[str]) -> None:
        """Rewrite the file with the extended header, padding old rows with empty cells."""
        path = self._path(phase)
        self._files[phase].close()
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))[1:]
        keys = self._keys[phase] + new_keys
        width = len(keys)
        lines: list[list[str]] = [keys] + [r + [""] * (width - len(r)) for r in rows if r]
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(lines)
        _atomic_write_text(path, buffer.getvalue())  # a kill leaves the old or the new file
        self._keys[phase] = keys
        self._files[phase] = open(path, "a", encoding="utf-8", newline="")

    def write(self, row: dict[str, float], step: int, phase: str) -> None:
        if phase not in self._files:
            self._open(phase)
        known = set(self._keys[phase])
        new_keys = sorted(k for k in row if k not in known)
        if new_keys:
            self._extend_header(phase, new_keys)
        values = [str(step)] + [repr(row[k]) if k in row else "" for k in self._keys[phase][1:]]
        handle = self._files[phase]
        with naming_path(self._path(phase)):
            csv.writer(handle).writerow(values)
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def rewind(self, phase: str, step: int) -> None:
        path = self._path(phase)
        if phase in self._files:
            self._files.pop(phase).close()
        if not path.is_file():
            return
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if _row_step(r) <= step]
        if len(kept) != len(rows):
            buffer = io.StringIO(newline="")
            csv.writer(buffer).writerows(kept)
            _atomic_write_text(path, buffer.getvalue())


class _TensorBoardBackend(_Backend):
    """Scalars via `torch.utils.tensorboard.SummaryWriter(record/tb)`."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - tensorboard is a core dependency
            raise ImportError(
                "the tensorboard logger backend needs tensorboard: pip install tensorboard"
            ) from exc
        self._log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def rewind(self, phase: str, step: int) -> None:
        # TensorBoard hides every event at or after `purge_step` written before the restart
        # (all tags of this run's tb/ folder, whatever their phase).
        del phase
        from torch.utils.tensorboard import SummaryWriter

        self._writer.close()
        _wait_past_event_files(self._log_dir)
        self._writer = SummaryWriter(log_dir=str(self._log_dir), purge_step=int(step) + 1)

    def write(self, row: dict[str, float], step: int, phase: str) -> None:
        with naming_path(self._log_dir):
            for key, value in row.items():
                self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def hyper_params(self, text: str, config: dict[str, Any]) -> None:
        # Indented by 4 spaces, TensorBoard's markdown shows the JSON as a code block.
        self._writer.add_text("hyperparameters", "\n".join("    " + ln for ln in text.splitlines()))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _wait_past_event_files(folder: Path) -> None:
    """Wait until the clock's second is past the newest event file's in `folder`.

    TensorBoard reads a run's event files in name order, and names start with the second they
    were created in; the file a resumed run writes carries the purge of the rows it repeats,
    so it must come last (a kill and a resume within one second would otherwise tie).
    """
    stamps = [int(part) for p in folder.glob("events.out.tfevents.*")
              if (part := p.name.split(".")[3]).isdigit()]
    if stamps:
        delay = max(stamps) + 1 - time.time()
        if delay > 0:
            time.sleep(delay)


class _WandbBackend(_Backend):  # pragma: no cover - needs wandb and a login
    """Weights & Biases; `settings` are passed to `wandb.init` (project, entity, name, tags...)."""

    def __init__(self, settings: Mapping[str, object], run_dir: RunDir | None) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ImportError(
                "the wandb logger backend needs wandb: pip install wandb "
                "(or pip install -e .[wandb])"
            ) from exc
        kwargs = dict(settings)
        if run_dir is not None:
            kwargs.setdefault("dir", str(run_dir.path))
        self._run = wandb.init(**kwargs)

    def write(self, row: dict[str, float], step: int, phase: str) -> None:
        # No `step=`: W&B needs a monotonic step per run, and phases restart their counters.
        self._run.log({**row, f"{phase}/{_STEP_KEY}": step})

    def hyper_params(self, text: str, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        self._run.finish()


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
        self._backends: list[_Backend] = []
        try:
            for name in names:
                self._backends.append(self._make_backend(name, wandb or {}))
        except BaseException:
            self.close()
            raise

    def _make_backend(self, name: str, wandb: Mapping[str, object]) -> _Backend:
        run = self.run_dir
        if name == "console":
            return _ConsoleBackend(run.record / _CONSOLE_BACKUP if run is not None else None)
        assert run is not None or name == "wandb"
        if name == "csv":
            return _CSVBackend(run.record)
        if name == "tensorboard":
            return _TensorBoardBackend(run.tb)
        return _WandbBackend(wandb, run)

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
        if key == _STEP_KEY:
            raise ValueError(f"{_STEP_KEY!r} is reserved; pass the step to dump() instead")

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
        only rows with `timestep <= step`, TensorBoard purges later events (of every tag) and
        pending metrics are discarded, so the records read as one uninterrupted run.
        """
        if phase not in PHASES:
            raise ValueError(f"unknown logging phase {phase!r}; choose from {PHASES}")
        self._check_open()
        self._sums.clear()
        self._counts.clear()
        for backend in self._backends:
            backend.rewind(phase, int(step))

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
