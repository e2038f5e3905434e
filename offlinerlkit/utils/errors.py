"""How the run scripts end on an error: one line for the user's mistakes, a traceback for bugs.

Every `run_example/*.py` ends with `utils.cli.run_main(main, ConfigClass)`. An exception that leaves
`main` is classified (`exit_code`):

* **the user's input** (exit 2): an error of the `UserError` family (bad task, dataset, file,
  checkpoint, run folder in use, missing extra...), a file that does not exist or already
  exists, and a `ValueError` raised by cocoa-rl's own checks (the project's convention for a
  worded refusal of a bad value);
* **the machine refused** (exit 1): an `OSError` such as a full disk (ENOSPC), a read-only
  folder (EROFS) or a permission error (EACCES), found anywhere in the exception's chain (torch
  wraps a failed write in a `RuntimeError`); the line names the path and the cause;
* **a bug**: anything else keeps Python's traceback.

The first two print `<script>: error: <message>` on stderr without a traceback. `--debug` on
the command line (removed before parsing) or the environment variable `COCOA_DEBUG=1` shows
the traceback of every error. Ctrl-C ends with `interrupted` and exit 130.

Only scripts call `run_main` (in `utils.cli`); it reads `sys.argv` and `COCOA_DEBUG` (documented in
docs/ARCHITECTURE.md). Library code only raises.
"""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

__all__ = ["DEBUG_ENV", "DEBUG_FLAG", "FAILURE_EXIT", "USAGE_EXIT", "UserError", "describe",
           "environment_error", "exit_code", "naming_path", "with_path"]

#: Environment variable that shows tracebacks of every error (any value but "" and "0").
DEBUG_ENV = "COCOA_DEBUG"
#: Command-line flag with the same effect (removed before the script parses its options).
DEBUG_FLAG = "--debug"
#: Exit status of errors in the user's input (flags, task, data, files), as argparse's.
USAGE_EXIT = 2
#: Exit status when the machine refused (disk full, read-only, permission) or training failed.
FAILURE_EXIT = 1
INTERRUPT_EXIT = 130

#: errno values that say the machine or the file system refused, not the program.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG",
                                      "EIO", "EMFILE", "ENFILE", "ENAMETOOLONG", "ENOENT",
                                      "ENOTDIR", "EISDIR", "EEXIST", "ETXTBSY", "EBUSY")
    if hasattr(errno, name))
#: Of those, the ones that mean a wrong path given by the user.
_PATH_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOENT", "ENOTDIR", "EISDIR", "EEXIST",
                                                      "ENAMETOOLONG") if hasattr(errno, n))

_PROJECT_DIRS = (Path(__file__).resolve().parents[1],  # offlinerlkit/
                 Path(__file__).resolve().parents[2] / "run_example")


class UserError(Exception):
    """Base (or mixin) of errors caused by the user's input; the message names the problem.

    Project errors inherit from it next to their builtin type, e.g.
    `class DatasetError(UserError, ValueError)`. `run_main` prints them as one line.
    """

    exit_code = USAGE_EXIT


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then the exceptions it was raised from or while handling (each once)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        context = None if item.__suppress_context__ else item.__context__
        todo.extend(e for e in (item.__cause__, context) if e is not None)


def environment_error(exc: BaseException) -> Optional[OSError]:
    """The `OSError` with an errno of `ENVIRONMENT_ERRNOS` in `exc`'s chain, or None.

    The one that names a file is preferred (an outer one re-raised with the path by
    `with_path`, or the inner one of a failed `open`).
    """
    found = [e for e in _chain(exc) if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS]
    named = [e for e in found if e.filename is not None]
    return (named or found or [None])[0]


def with_path(exc: BaseException, path: str | os.PathLike) -> Optional[OSError]:
    """An `OSError` naming `path` for a failed write of it, or None when `exc` is no such error.

    A write through a file object (or torch's zip writer, which wraps it in a `RuntimeError`)
    raises an `OSError` without a file name; re-raise the result `from exc` so the error says
    which file could not be written.
    """
    found = environment_error(exc)
    if found is None or found.filename is not None:
        return None
    return type(found)(found.errno, os.strerror(found.errno), os.fspath(path))


@contextlib.contextmanager
def naming_path(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a machine's refusal inside the block (see `with_path`) as an error naming `path`."""
    try:
        yield
    except Exception as exc:
        named = with_path(exc, path)
        if named is None:
            raise
        raise named from exc


def _raised_by_project(exc: BaseException) -> bool:
    """Whether the innermost frame of `exc`'s traceback is cocoa-rl code (a worded check)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(where.is_relative_to(folder) for folder in _PROJECT_DIRS)


def exit_code(exc: BaseException) -> Optional[int]:
    """The exit status `run_main` gives `exc`, or None for a bug (shown with its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPT_EXIT
    if isinstance(exc, UserError):
        return exc.exit_code
    found = environment_error(exc)
    if found is not None:
        return USAGE_EXIT if found.errno in _PATH_ERRNOS else FAILURE_EXIT
    if isinstance(exc, (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
        return USAGE_EXIT
    if isinstance(exc, ValueError) and _raised_by_project(exc):
        return USAGE_EXIT
    return None


def describe(exc: BaseException) -> str:
    """The message `run_main` prints for `exc` (after `<script>: error: `)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    worded = isinstance(exc, UserError) or (isinstance(exc, ValueError) and _raised_by_project(exc))
    found = None if worded else environment_error(exc)
    if found is not None:
        name = errno.errorcode.get(found.errno, str(found.errno))
        cause = f"{os.strerror(found.errno)} ({name})"
        if found.filename is None:
            return f"{cause}; run with {DEBUG_FLAG} to see where"
        paths = " -> ".join(str(p) for p in (found.filename, found.filename2) if p is not None)
        return f"{paths}: {cause}"
    text = str(exc).strip()
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    return text or type(exc).__name__
