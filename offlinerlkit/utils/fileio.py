"""Atomic file writes: a crash or kill never leaves a half-written file under the final name."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], *,
                 text: bool = False) -> Path:
    """Write `path` through a temporary file in the same folder, fsync, then `os.replace`.

    Args:
        path: the final file (its folder is created if needed).
        write: called with the open temporary file (binary, or text when `text`).
        text: open the temporary file in text mode (UTF-8, no newline translation).

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
