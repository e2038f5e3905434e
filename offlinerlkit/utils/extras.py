"""Optional dependencies (setup.py's extras), imported where they are used.

A missing one raises `MissingExtraError`, whose message names the install command, instead of
a bare `ModuleNotFoundError`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from offlinerlkit.utils.errors import FAILURE_EXIT, UserError


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""

    exit_code = FAILURE_EXIT  # the installation is incomplete, not the input wrong


def import_extra(module: str, extra: str) -> ModuleType:
    """Import `module`, which the `extra` of setup.py installs.

    Raises:
        MissingExtraError: `module` (or its top-level package) is not installed. A module that
            is installed but fails to import raises its own error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing != module and not module.startswith(missing + "."):
            raise  # something `module` imports is missing: not the extra itself
        raise MissingExtraError(f"{module.split('.')[0]} is not installed; install it with "
                                f'pip install -e ".[{extra}]"') from exc
