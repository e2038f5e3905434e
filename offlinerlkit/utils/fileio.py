"""Atomic file writes: a crash or kill never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from offlinerlkit.utils.errors import naming_path

_log = logging.getLogger(__name__)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], *,
                 text: bool = False) -> Path:
    """Write `path` through a temporary file in the same folder, fsync, then `os.replace`.

    The file gets the permissions a plain `open(path, "w")` would (0666 less the umask), not
    the 0600 of `mkstemp`.

    Args:
        path: the final file (its folder is created if needed).
        write: called with the open temporary file (binary, or text when `text`).
        text: open the temporary file in text mode (UTF-8, no newline translation).

    Returns:
        `path` as a `Path`.

    Raises:
        OSError: the write failed for a reason of the machine (disk full, read-only folder,
            permission; also when torch's writer wrapped it), re-raised naming `path`. The
            temporary file is removed in every case.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # it names the temporary file: name the one asked for
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    try:
        with naming_path(path):
            with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text
                  else os.fdopen(fd, "wb")) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def new_files_removed_on_error(folder: str | os.PathLike, patterns: Sequence[str]) -> Iterator[None]:
    """If the block raises (a full disk, a late refusal, Ctrl-C), delete the files matching
    `patterns` (globs relative to `folder`) that did not exist before it.

    A failed command then leaves no partial outputs, so the same command runs again without
    `--overwrite`. Files that existed before are never touched.
    """
    root = Path(folder).expanduser()

    def matching() -> set[Path]:
        return {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}

    before = matching()
    try:
        yield
    except BaseException:
        for path in sorted(matching() - before):
            path.unlink(missing_ok=True)
            _log.warning("removed %s, a partial output of this failed command", path)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_data(value: Any, where: str) -> Any:
    """`value` as plain Python data that `torch.load(weights_only=True)` reads back.

    Numpy scalars become Python numbers and tuples become lists; anything else that is not
    None, str, bool, int, float, a list/tuple or a mapping raises `TypeError` naming `where`.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain_data(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where} holds a {type(value).__name__}; use plain Python values")
