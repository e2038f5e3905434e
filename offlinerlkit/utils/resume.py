"""`--resume RUN_DIR`: the saved run's options, and one process per run folder.

`resumed_config` rebuilds the configuration a run was started with (its `hyper_param.json`) and
checks the options given again against it: options that do not change the numbers
(`RESUME_FREE`: device, threads, progress) are taken from the command line; an option meant to
extend a run (`RESUME_EXTENDABLE`: a larger `--epoch`) may grow; any other option given with a
different value is a conflict, and every conflict is listed in one error.

`RunLock` keeps a second process from writing into a run folder that a live process writes to:
`record/.lock` holds the owner's pid, is taken atomically, and a lock whose process is gone is
taken over.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from offlinerlkit.utils.errors import UserError
from offlinerlkit.utils.fields import config_from_dict, field_default
from offlinerlkit.utils.run_record import HYPER_PARAM_FILE, read_hyper_params

if TYPE_CHECKING:  # types.py imports torch; this module must stay light
    from offlinerlkit.types import DataclassInstance

__all__ = ["RESUME_EXTENDABLE", "RESUME_FREE", "RunLock", "RunLockError", "changed_fields",
           "resumed_config"]

C = TypeVar("C")

#: Options a resume may give differently (they do not change the run's numbers; log_dir is
#: unused: the run folder is given).
RESUME_FREE = ("resume", "device", "threads", "progress", "log_dir")
#: Options a resume may raise (extend the run); lowering them is a conflict.
RESUME_EXTENDABLE = ("epoch",)


def changed_fields(config: DataclassInstance) -> dict[str, Any]:
    """The fields of a config dataclass whose values differ from the class defaults."""
    changed = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        default = field_default(f)
        value = getattr(config, f.name)
        if default is dataclasses.MISSING or value != default:
            changed[f.name] = value
    return changed


def resumed_config(config: C, *, given: Optional[Mapping[str, Any]] = None) -> C:
    """The saved configuration of the run folder `config.resume`, with the options of `given`.

    Args:
        config: a config dataclass with a `resume` field naming the run folder.
        given: the options given on the command line (`cli.given_options`); None takes the
            fields of `config` that differ from the defaults (for calls from code).

    Raises:
        FileNotFoundError: the folder has no `record/hyper_param.json`.
        ValueError: the record has no configuration, or options conflict with it (all listed).
    """
    run = config.resume
    if not run:
        raise ValueError("resumed_config needs a config with resume set")
    saved = (read_hyper_params(run, required=True) or {}).get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{Path(run) / HYPER_PARAM_FILE} has no 'config' entry; {run} was not "
                         "written by this script")
    restored = config_from_dict(type(config), saved)
    given = changed_fields(config) if given is None else dict(given)
    updates: dict[str, Any] = {"resume": run}
    conflicts = []
    for name, value in given.items():
        if name in RESUME_FREE:
            updates[name] = value
            continue
        before = getattr(restored, name)
        if name in RESUME_EXTENDABLE and value != before:
            if value < before:
                conflicts.append(f"--{name} {value} is below the saved {before} (a resume can "
                                 "only extend a run)")
            else:
                updates[name] = value
        elif value != before:
            conflicts.append(f"--{name} {_show(value)} (saved: {_show(before)})")
    if conflicts:
        raise ValueError(f"--resume {run} continues the saved run with its own options, but "
                         f"these were given differently: {'; '.join(conflicts)}. Give --resume "
                         "alone (plus --device/--threads/--progress, or a larger --epoch), or "
                         "start a new run")
    return dataclasses.replace(restored, **updates)  # type: ignore[type-var]


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "(empty)"
    return str(value)


class RunLockError(UserError, RuntimeError):
    """Another live process writes to the run folder."""


class RunLock:
    """`record/.lock` of a run folder, held while a process writes to it (a context manager).

    Args:
        run_path: the run folder.
    """

    def __init__(self, run_path: str | os.PathLike) -> None:
        self.path = Path(run_path) / "record" / ".lock"
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock, or raise `RunLockError` naming the live process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(*owner):
                    raise RunLockError(
                        f"{self.path.parent.parent} is in use by process {owner[0]} on "
                        f"{owner[1]}; wait for it to end (or stop it) before running or "
                        "resuming this run again (a process of another machine cannot be "
                        f"checked from here: if it is gone, delete {self.path})") from None
                self.path.unlink(missing_ok=True)  # its process is gone: take it over
                continue
            with os.fdopen(fd, "w") as f:
                f.write(text)
            self.held = True
            return self
        raise RunLockError(f"could not take {self.path}: other processes keep taking it")

    def _owner(self) -> Optional[tuple[int, str]]:
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None  # half-written by a killed process: stale

    def release(self) -> None:
        """Give the lock back (only if this process holds it)."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()


def _alive(pid: int, host: str) -> bool:
    """Whether `pid` runs (a lock of another host is taken as live: it cannot be checked)."""
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False  # this process's own lock, left by an earlier run in it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
