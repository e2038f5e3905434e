"""The backends of `offlinerlkit.utils.logger.Logger`: console, per-phase CSV, TensorBoard, W&B.

Each backend writes one row per `Logger.dump` (`write(row, step, phase)`), forgets the rows of a
phase after a step when a run resumes (`rewind`), and closes its files. The `Logger` chooses them
by name and is the only user; see its docstring for what each writes.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from offlinerlkit.utils.errors import naming_path
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.run_dir import RunDir

__all__ = ["STEP_KEY", "Backend", "CSVBackend", "ConsoleBackend", "TensorBoardBackend",
           "WandbBackend"]

#: The first column of every CSV: the step given to `dump`.
STEP_KEY = "timestep"


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


class Backend:
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


class ConsoleBackend(Backend):
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
        cells[STEP_KEY] = str(step)
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


class CSVBackend(Backend):
    """One CSV per phase; the header grows when new keys appear (old rows padded)."""

    def __init__(self, record_dir: Path) -> None:
        self._dir = record_dir
        self._files: dict[str, Any] = {}
        self._keys: dict[str, list[str]] = {}

    def _path(self, phase: str) -> Path:
        return self._dir / f"{phase}_training_progress.csv"

    def _open(self, phase: str) -> None:
        path = self._path(phase)
        keys = [STEP_KEY]
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

    def rows_after(self, phase: str, step: int) -> list[tuple[int, dict[str, float]]]:
        """The complete rows of `phase` with `timestep > step`, as `(step, metrics)`."""
        path = self._path(phase)
        if phase in self._files:
            self._files[phase].flush()
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        if not rows:
            return []
        keys, out = rows[0], []
        for row in rows[1:]:
            at = _row_step(row)
            if at == float("inf") or at <= step or len(row) != len(keys):
                continue
            out.append((int(at), {k: float(v) for k, v in zip(keys[1:], row[1:]) if v != ""}))
        return out

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


class TensorBoardBackend(Backend):
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


class WandbBackend(Backend):  # pragma: no cover - needs wandb and a login
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
        self._run.log({**row, f"{phase}/{STEP_KEY}": step})

    def hyper_params(self, text: str, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        self._run.finish()
