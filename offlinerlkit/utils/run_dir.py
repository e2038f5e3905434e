"""Run directories: one shell-safe folder per run, with `record/ model/ checkpoint/ result/`.

Layout (replaces COCOA's `_without_launch/...%p=v%timestamp_...` names, spec §8.4 and §12.13)::

    <root>/<task>/<algo>[_<k>-<v>...]/seed_<seed>_<YYYYmmdd-HHMMSS>[_<n>]/
        record/       hyper_param.json, consoleout_backup.txt, <phase>_training_progress.csv
        record/tb/    TensorBoard event files
        model/        final artefacts (dynamics, anchor seeker, policy)
        checkpoint/   periodic checkpoints (see `offlinerlkit.utils.checkpoint`)
        result/       other outputs (reverse imagination, replay buffers)

Every name component contains only `[A-Za-z0-9._=-]`; any other character becomes `-`. A run
directory is never reused: on a name clash `_1`, `_2`, ... is appended. Nothing is ever deleted or
overwritten. `RunDir.open` re-opens an existing run (for `--resume`).
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from offlinerlkit.utils.errors import UserError

__all__ = ["RunDir", "RunDirError", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")
_SUBDIRS = ("record", "record/tb", "model", "checkpoint", "result")
_MAX_CLASH_SUFFIX = 10_000


class RunDirError(UserError, FileNotFoundError):
    """Raised when a path is not an existing run directory (it has no `record/` folder)."""


def _format_value(value: object) -> str:
    """Format a tag value compactly: `2.5`, `0.0001`, `1e-05`, `1e20`, `True`, `256-256`."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        # Up to 10 significant digits, no '+' in exponents (it would become '-').
        return format(float(value), ".10g").replace("e+", "e")
    if isinstance(value, (list, tuple)):
        return "-".join(_format_value(v) for v in value)
    return str(value)


def safe_name(value: object) -> str:
    """Return `value` formatted as a shell-safe path component (`[A-Za-z0-9._=-]` only).

    Floats are written compactly (`2.5`, `1e-05`), sequences are joined with `-`, and every
    other character outside the safe set becomes `-`.

    Args:
        value: a string, number or sequence of those.

    Raises:
        ValueError: the result is empty, `.` or `..` (it would not name a folder of its own).
    """
    name = _UNSAFE.sub("-", _format_value(value))
    if name in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be used as a directory name component")
    return name


@dataclass(frozen=True)
class RunDir:
    """The folders of one run.

    Attributes:
        path: the run directory itself.
    """

    path: Path

    @property
    def record(self) -> Path:
        """`record/`: hyper-parameters, console backup, CSV progress files."""
        return self.path / "record"

    @property
    def tb(self) -> Path:
        """`record/tb/`: TensorBoard event files."""
        return self.path / "record" / "tb"

    @property
    def model(self) -> Path:
        """`model/`: final trained artefacts."""
        return self.path / "model"

    @property
    def checkpoint(self) -> Path:
        """`checkpoint/`: periodic, resumable checkpoints."""
        return self.path / "checkpoint"

    @property
    def result(self) -> Path:
        """`result/`: other run outputs."""
        return self.path / "result"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        task: str,
        algo: str,
        seed: int,
        tags: Mapping[str, object] | None = None,
        now: datetime | None = None,
    ) -> RunDir:
        """Create a new, empty run directory with its sub-folders.

        The path is `<root>/<task>/<algo>[_<k>-<v>...]/seed_<seed>_<YYYYmmdd-HHMMSS>`, with tags in
        the mapping's order, e.g. `log/hopper-medium-v2/mopo_penalty_coef-2.5_rollout_length-5/
        seed_0_20240131-235959`. If that directory exists, `_1`, `_2`, ... is appended; an
        existing directory is never reused.

        Args:
            root: the log root (created if missing).
            task: the task name, e.g. `hopper-medium-v2`.
            algo: the algorithm name, e.g. `mopo`.
            seed: the run's seed.
            tags: hyper-parameters to show in the folder name (`{"penalty_coef": 2.5}`).
            now: the timestamp to use (default: the current local time).

        Returns:
            The new run directory.
        """
        group = safe_name(algo) + "".join(
            f"_{safe_name(k)}-{safe_name(v)}" for k, v in (tags or {}).items()
        )
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        parent = Path(root) / safe_name(task) / group
        parent.mkdir(parents=True, exist_ok=True)
        base = f"seed_{safe_name(seed)}_{stamp}"
        for n in range(_MAX_CLASH_SUFFIX):
            path = parent / (base if n == 0 else f"{base}_{n}")
            try:
                path.mkdir()  # atomic: fails if another run took the name first
            except FileExistsError:
                continue
            run = cls(path)
            run._make_subdirs()
            return run
        raise FileExistsError(f"could not find a free run directory name under {parent}/{base}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run directory (e.g. for `--resume`).

        Missing sub-folders other than `record/` are created; nothing is deleted.

        Args:
            path: the run directory, as created by `RunDir.create`.

        Raises:
            RunDirError: `path` does not exist or has no `record/` folder.
        """
        path = Path(path)
        if not (path / "record").is_dir():
            reason = "does not exist" if not path.exists() else "has no record/ folder"
            raise RunDirError(
                f"{path} is not a run directory ({reason}); pass a folder created by "
                "RunDir.create, e.g. log/<task>/<algo>/seed_<seed>_<timestamp>"
            )
        run = cls(path)
        run._make_subdirs()
        return run

    def _make_subdirs(self) -> None:
        for sub in _SUBDIRS:
            (self.path / sub).mkdir(parents=True, exist_ok=True)
