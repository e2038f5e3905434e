"""The one allow-list for unpickling files from outside: plain containers and numpy arrays only.

Two readers use it: `load_array_pickle` (plain `pickle` files, e.g. the original's reverse
imagination) and `numpy_safe_globals` (the extra globals `torch.load(weights_only=True)` may
allow, e.g. the numpy RNG state in an original anchor-seeker file). Any other global is refused,
so a file cannot run code when it is read.
"""
from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import IO, Any

import numpy as np

__all__ = ["ArrayUnpickler", "load_array_pickle", "numpy_global", "numpy_safe_globals"]

#: The numpy globals an array (or a numpy scalar, or a dtype) needs to be unpickled, as
#: `module.name`; numpy >= 2 moved `numpy.core` to `numpy._core` (both spellings are accepted).
_NUMPY_GLOBALS = frozenset({
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
})


def numpy_global(module: str, name: str) -> Any | None:
    """The object an allow-listed numpy global names, or None if it is not allow-listed."""
    if module == "numpy.dtypes" and name.endswith("DType"):
        return getattr(np.dtypes, name, None)
    if f"{module}.{name}" not in _NUMPY_GLOBALS:
        return None
    if module == "numpy":
        return getattr(np, name)
    core = getattr(np, "_core", None) or np.core  # numpy.core on numpy < 2
    submodule = getattr(core, module.rsplit(".", 1)[1], None)
    return getattr(submodule, name, None)


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused.

    Args:
        file: the open binary file.
        what: what the file should hold, for the refusal message ("an imagination file").
    """

    def __init__(self, file: IO[bytes], *, what: str) -> None:
        super().__init__(file)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        obj = numpy_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy "
                                         f"arrays are expected in {self.what})")
        return obj


def load_array_pickle(file: IO[bytes], *, what: str) -> Any:
    """`pickle.load` through `ArrayUnpickler`."""
    return ArrayUnpickler(file, what=what).load()


def numpy_safe_globals(names: Iterable[str]) -> tuple[list[Any], list[str]]:
    """The objects to pass to `torch.serialization.safe_globals` for the globals `names`
    (`module.name`, as `get_unsafe_globals_in_checkpoint` lists them), and the refused names.

    Unpickling a dtype also builds an instance of its class (e.g. `UInt32DType`), which torch
    does not list among the needed globals, so with any dtype the numeric dtype classes are
    allowed too.
    """
    safe: list[Any] = []
    refused: list[str] = []
    for full in names:
        module, _, name = full.rpartition(".")
        obj = numpy_global(module, name)
        if obj is None:
            refused.append(full)
        else:
            safe.append((obj, full))
    if any(n.endswith(".dtype") or n.startswith("numpy.dtypes.") for _, n in safe):
        safe += sorted({type(np.dtype(c)) for c in "?" + np.typecodes["AllInteger"]
                        + np.typecodes["AllFloat"]}, key=str)
    return safe, sorted(refused)
