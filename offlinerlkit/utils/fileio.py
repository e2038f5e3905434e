"""Atomic file writes: a crash or kill never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import errno
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
                 text: bool = False, overwrite: bool = True) -> Path:
    """Write `path` through a temporary file in the same folder, fsync, then `os.replace`.

    The file gets the permissions a plain `open(path, "w")` would (0666 less the umask), not
    the 0600 of `mkstemp`.

    Args:
        path: the final file (its folder is created if needed).
        write: called with the open temporary file (binary, or text when `text`).
        text: open the temporary file in text mode (UTF-8, no newline translation).
        overwrite: replace an existing `path`; False never replaces one (see `atomic_path`).

    Returns:
        `path` as a `Path`.

    Raises:
        FileExistsError: `path` exists (or appeared meanwhile) and `overwrite` is False.
        OSError: the write failed for a reason of the machine (disk full, read-only folder,
            permission; also when torch's writer wrapped it), re-raised naming `path`. The
            temporary file is removed in every case.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        with (open(tmp, "w", encoding="utf-8", newline="") if text else open(tmp, "wb")) as f:
            write(f)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file's path beside `path`; when the block succeeds, fsync it and move
    it onto `path` (for writers that take a file name, e.g. h5py).

    With `overwrite`, `os.replace`. Without it, a hard link, which fails atomically when `path`
    appeared meanwhile (on a filesystem without hard links: an existence check, then
    `os.replace`), so an existing file is never touched. The temporary file (`.<name>.*.tmp`,
    the pattern `checkpoint.remove_stale_temporaries` cleans) is removed in every case.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        OSError: a failure of the machine, re-raised naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # it names the temporary file: name the one asked for
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        with naming_path(path):
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            if overwrite:
                os.replace(tmp, path)
            else:
                _move_without_replacing(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _move_without_replacing(tmp: Path, path: Path) -> None:
    """Move `tmp` onto `path` unless `path` exists (`FileExistsError`)."""
    try:
        os.link(tmp, path)  # fails atomically if the target appeared meanwhile
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
    except OSError:  # no hard links on this filesystem
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)


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
