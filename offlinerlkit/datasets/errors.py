"""Exceptions raised by the dataset layer."""
from __future__ import annotations

from collections.abc import Sequence

from offlinerlkit.utils.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset file or array that cannot be used: the message names the file, the problem and
    the fix."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No dataset where one was looked for.

    It is a `FileNotFoundError` (and a `DatasetError`). The message lists every place that was
    looked at and how to provide the data.

    Args:
        message: the full explanation.
        places: every place that was looked at (full paths or package descriptions).
    """

    def __init__(self, message: str, *, places: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.places: tuple[str, ...] = tuple(places)
