"""Reading and writing D4RL-format HDF5 files.

A D4RL v2 file holds top-level datasets `observations (N,S) f32`, `actions (N,A) f32`,
`rewards (N,) f32`, `terminals (N,) bool`, `timeouts (N,) bool` and (v2) `next_observations
(N,S) f32`, plus the groups `infos/` (per-step arrays such as `qpos`, `qvel`,
`action_log_probs`) and `metadata/` (strings, numbers and arrays about how the data was made).
Nested datasets are named by their full path, as D4RL's `get_dataset` does: `infos/qpos`.

h5py is imported inside the functions, so `import offlinerlkit.datasets` stays cheap.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from offlinerlkit.datasets.errors import DatasetError, DatasetNotFoundError
from offlinerlkit.datasets.qlearning import REQUIRED_KEYS
from offlinerlkit.utils.errors import naming_path
from offlinerlkit.utils.fileio import atomic_path
from offlinerlkit.utils.tasks import TaskInfo, parse_task

logger = logging.getLogger(__name__)

#: Optional per-step keys of a D4RL file.
OPTIONAL_KEYS = ("timeouts", "next_observations")
#: Keys whose values must all be finite numbers.
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
#: Groups a file may hold besides the top-level per-step keys.
GROUPS = ("infos", "metadata")

_CORRUPT_FIX = (
    "The file is truncated, corrupt or not an HDF5 file (an interrupted download or copy leaves "
    "a partial file): delete it and copy or regenerate it."
)


# --------------------------------------------------------------------------- reading


def _decode(value: Any) -> np.ndarray:
    """An HDF5 value as a numpy array; byte strings become `str` (0-d or object arrays)."""
    if isinstance(value, bytes):
        return np.asarray(value.decode("utf-8", errors="replace"))
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        flat = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
                for v in arr.ravel()]
        arr = np.asarray(flat, dtype=object).reshape(arr.shape)
    elif arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", errors="replace")
    return arr


def _squeeze_column(data: dict[str, np.ndarray], key: str) -> None:
    """Drop a trailing axis of size 1 from a per-step flag or reward, as D4RL does."""
    arr = data.get(key)
    if arr is not None and arr.ndim == 2 and arr.shape[1] == 1:
        data[key] = arr[:, 0]


def _bad_values_message(name: str, arr: np.ndarray, kind: str, mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return (
        f"'{name}' contains {int(mask.sum())} {kind} value(s) in {rows.size} row(s) "
        f"(first at row {int(rows[0])})"
    )


def validate_d4rl_arrays(
    data: Mapping[str, np.ndarray], *, source: str, task: TaskInfo | None = None
) -> None:
    """Check that D4RL-format arrays are complete, consistent and finite.

    Args:
        data: the arrays (rewards/terminals/timeouts already 1-D).
        source: the file (or description) named in error messages.
        task: when given, observation and action sizes must match it.

    Raises:
        DatasetError: naming `source`, the problem and the fix.
    """
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise DatasetError(
            f"{source}: missing required dataset(s) {missing}; the file has "
            f"{sorted(data)}. A D4RL file needs {list(REQUIRED_KEYS)} (optionally "
            f"{list(OPTIONAL_KEYS)}): check that the path points at a D4RL dataset file, or "
            "regenerate it with write_d4rl_hdf5."
        )
    for key in ("observations", "actions"):
        if data[key].ndim != 2:
            raise DatasetError(
                f"{source}: '{key}' has shape {data[key].shape}, expected (steps, size): "
                "the file is not in D4RL format; regenerate it."
            )
    for key in FLOAT_KEYS:
        if key in data and data[key].dtype.kind not in "biuf":
            raise DatasetError(
                f"{source}: '{key}' has dtype {data[key].dtype}, expected numbers; the file is "
                "not in D4RL format; regenerate it."
            )
    n = data["observations"].shape[0]
    per_step = [key for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS) if key in data]
    per_step += [key for key in data if key.startswith("infos/") and data[key].ndim >= 1]
    lengths = {key: int(data[key].shape[0]) if data[key].ndim >= 1 else 0 for key in per_step}
    if len(set(lengths.values())) != 1:
        listing = ", ".join(f"{key}: {length}" for key, length in lengths.items())
        raise DatasetError(
            f"{source}: per-step datasets have different lengths ({listing}); every one must "
            "have one entry per step. The file is incomplete or was assembled wrongly: "
            "regenerate it."
        )
    for key in ("rewards", "terminals", "timeouts"):
        if key in data and data[key].shape != (n,):
            raise DatasetError(
                f"{source}: '{key}' has shape {data[key].shape}, expected ({n},); regenerate "
                "the file."
            )
    if "next_observations" in data and data["next_observations"].shape != data[
        "observations"
    ].shape:
        raise DatasetError(
            f"{source}: 'next_observations' has shape {data['next_observations'].shape} but "
            f"'observations' has {data['observations'].shape}; regenerate the file."
        )
    if n == 0:
        raise DatasetError(f"{source}: the dataset has no steps; regenerate the file.")
    if task is not None:
        expected = {"observations": task.obs_dim, "next_observations": task.obs_dim,
                    "actions": task.action_dim}
        for key, size in expected.items():
            if key in data and data[key].shape[1] != size:
                raise DatasetError(
                    f"{source}: '{key}' has size {data[key].shape[1]} per step but task "
                    f"'{task.name}' ({task.robot}) has {size}; this file belongs to another "
                    "task: pass the file of this task, or the task this file was made for."
                )
    for key in FLOAT_KEYS:
        if key not in data or data[key].dtype.kind != "f":
            continue
        arr = data[key]
        finite = np.isfinite(arr)
        if finite.all():
            continue
        nan = np.isnan(arr)
        problems = []
        if nan.any():
            problems.append(_bad_values_message(key, arr, "NaN", nan))
        if (~finite & ~nan).any():
            problems.append(_bad_values_message(key, arr, "infinite", ~finite & ~nan))
        raise DatasetError(
            f"{source}: {'; '.join(problems)}. Training on them would produce NaN losses: "
            "regenerate the file, or remove those rows and write it again with "
            "write_d4rl_hdf5."
        )


def _read_datasets(file: Path, *, prefix: str = "", wanted: str | None = None
                   ) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file whose path starts with `prefix`, decoded, keyed by path.

    Raises:
        DatasetNotFoundError: the file does not exist (the message names `wanted`, or "a D4RL
            HDF5 file").
        DatasetError: the file is a folder or cannot be read as HDF5.
    """
    if not file.exists():
        raise DatasetNotFoundError(
            f"{file}: no such dataset file. Check the path, or put {wanted or 'a D4RL HDF5 file'} "
            "there.",
            places=[str(file)],
        )
    if file.is_dir():
        raise DatasetError(f"{file}: is a folder, expected a D4RL HDF5 file; pass the file.")

    import h5py

    data: dict[str, np.ndarray] = {}
    try:
        with h5py.File(file, "r") as h5:
            names: list[str] = []

            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset) and name.startswith(prefix):
                    names.append(name)

            h5.visititems(visit)
            for name in names:
                data[name] = _decode(h5[name][()])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DatasetError(f"{file}: cannot be read as HDF5 ({exc}). {_CORRUPT_FIX}") from exc
    return data


def read_hdf5_metadata(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The `metadata/...` datasets of a D4RL-format HDF5 file, without reading its arrays.

    Keys are full paths (`metadata/behaviour_return_normalized`), values decoded as by
    `read_d4rl_hdf5`; a file without metadata gives `{}`. Raises as `read_d4rl_hdf5` does for
    a missing, folder or unreadable file.
    """
    return _read_datasets(Path(path).expanduser(), prefix="metadata/")


def read_d4rl_hdf5(path: str | os.PathLike, *, task: str | None = None) -> dict[str, np.ndarray]:
    """Read a D4RL-format HDF5 file into arrays, validating it.

    Whole datasets are read at once. Nested datasets keep their path as key (`infos/qpos`,
    `metadata/algorithm`); byte strings are decoded to `str`. `rewards`, `terminals` and
    `timeouts` stored as `(N, 1)` are flattened to `(N,)` as D4RL does; dtypes are otherwise
    kept as stored.

    Args:
        path: the HDF5 file.
        task: a D4RL task name; when given, observation and action sizes must match it.

    Returns:
        Every dataset in the file, keyed by its path.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetError: the file is a folder, unreadable (truncated, corrupt, not HDF5), misses a
            required key, has inconsistent lengths, wrong sizes for `task`, or NaN/inf values.
        TaskError: `task` is not a known task name.
    """
    info = parse_task(task) if task is not None else None
    wanted = f"the D4RL file of '{info.name}' ({info.d4rl_file_name})" if info else None
    file = Path(path).expanduser()
    data = _read_datasets(file, wanted=wanted)
    for key in ("rewards", "terminals", "timeouts"):
        _squeeze_column(data, key)
    validate_d4rl_arrays(data, source=str(file), task=info)
    logger.debug("read %d steps (%d datasets) from %s", len(data["rewards"]), len(data), file)
    return data


# --------------------------------------------------------------------------- writing


def _as_flags(name: str, value: Any, n: int) -> np.ndarray:
    """A per-step flag as `(n,)` bool; numbers must be 0 or 1."""
    arr = np.asarray(value)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise DatasetError(f"'{name}' has shape {arr.shape}, expected ({n},) (one flag per step)")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise DatasetError(f"'{name}' must hold booleans (or 0/1), got dtype {arr.dtype}")
    return arr.astype(bool)


def _as_float32(name: str, value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """A finite float32 array of the given shape (`None` = any size)."""
    arr = np.asarray(value)
    if arr.ndim == 2 and len(shape) == 1 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("size" if s is None else str(s) for s in shape)
        want += ",)" if len(shape) == 1 else ")"
        raise DatasetError(f"'{name}' has shape {arr.shape}, expected {want}")
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"'{name}' must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        rows = np.flatnonzero(~finite.reshape(finite.shape[0], -1).all(axis=1))
        raise DatasetError(
            f"'{name}' has {int((~finite).sum())} NaN or infinite float32 value(s), first at "
            f"row {int(rows[0])}"
        )
    return arr


def _metadata_value(name: str, value: Any) -> Any:
    """A metadata entry as something h5py stores as a dataset."""
    import h5py

    if isinstance(value, str):
        return str(value)  # plain str: h5py cannot store str subclasses (e.g. torch.__version__)
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bool, int, float, np.generic)):
        return np.asarray(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "US" or (
            arr.dtype.kind == "O" and all(isinstance(v, (str, bytes)) for v in arr.ravel())
        ):
            if arr.ndim == 0:
                return str(arr.item())
            return np.asarray(
                [v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()],
                dtype=h5py.string_dtype(),
            ).reshape(arr.shape)
        if arr.dtype.kind in "biufc":
            return arr
    raise DatasetError(
        f"metadata '{name}' has an unsupported value of type {type(value).__name__}; use a "
        "string, a number or an array of numbers or strings"
    )


def _flatten_metadata(prefix: str, metadata: Mapping[str, object], out: dict[str, Any]) -> None:
    for name, value in metadata.items():
        if not isinstance(name, str) or not name.strip("/"):
            raise DatasetError(f"metadata names must be non-empty strings, got {name!r}")
        key = f"{prefix}/{name.strip('/')}"
        if isinstance(value, Mapping):
            _flatten_metadata(key, value, out)
            continue
        if key in out:
            raise DatasetError(f"metadata '{key}' is given twice")
        out[key] = _metadata_value(key, value)


def _prepare(data: Mapping[str, np.ndarray], metadata: Mapping[str, object] | None
             ) -> dict[str, Any]:
    """Validate `data` and `metadata` and convert them to the D4RL v2 dtypes."""
    required = (*REQUIRED_KEYS, "timeouts")
    missing = [key for key in required if key not in data]
    if missing:
        raise DatasetError(
            f"missing {missing}; a D4RL v2 file needs {list(required)} (timeouts: all False if "
            "no episode was cut by a time limit)"
        )
    obs = _as_float32("observations", data["observations"], (None, None))
    n, obs_dim = obs.shape
    out: dict[str, Any] = {
        "observations": obs,
        "actions": _as_float32("actions", data["actions"], (n, None)),
        "rewards": _as_float32("rewards", data["rewards"], (n,)),
        "terminals": _as_flags("terminals", data["terminals"], n),
        "timeouts": _as_flags("timeouts", data["timeouts"], n),
    }
    if n == 0:
        raise DatasetError("the dataset has no steps")
    if "next_observations" in data:
        out["next_observations"] = _as_float32(
            "next_observations", data["next_observations"], (n, obs_dim)
        )
    metadata_entries: dict[str, Any] = {}
    for key, value in data.items():
        if key in out:
            continue
        group, _, rest = key.partition("/")
        if group == "infos" and rest:
            arr = np.asarray(value)
            if arr.ndim == 0 or arr.shape[0] != n or arr.dtype.kind not in "biufc":
                raise DatasetError(
                    f"'{key}' must be a numeric array with one row per step ({n}), got shape "
                    f"{arr.shape} and dtype {arr.dtype}"
                )
            out[key] = arr
        elif group == "metadata" and rest:
            _flatten_metadata("metadata", {rest: value}, metadata_entries)
        else:
            raise DatasetError(
                f"unexpected key '{key}': a D4RL file holds {list(required)}, "
                "'next_observations', 'infos/<name>' (per-step arrays) and 'metadata/<name>'; put "
                "other per-step arrays under 'infos/'"
            )
    if metadata:
        _flatten_metadata("metadata", metadata, metadata_entries)
    out.update(metadata_entries)
    return out


def write_d4rl_hdf5(
    path: str | os.PathLike,
    data: Mapping[str, np.ndarray],
    *,
    metadata: Mapping[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write arrays as a D4RL v2 HDF5 file, atomically.

    Layout: `observations (N,S) f32`, `actions (N,A) f32`, `rewards (N,) f32`, `terminals (N,)
    bool`, `timeouts (N,) bool`, optional `next_observations (N,S) f32`; keys `infos/<name>`
    (per-step arrays, dtype kept) go into the `infos` group and `metadata/<name>` keys or
    `metadata` entries (strings, numbers, arrays; nested mappings become sub-groups) are stored
    as datasets under the `metadata` group, as D4RL does.

    Everything is validated before anything is written. The file is written to a temporary file
    in the same folder and then renamed, so a crash never leaves a partial file under `path`.

    Args:
        path: the file to create; missing parent folders are created.
        data: the per-step arrays (and optionally `infos/*`, `metadata/*` keys).
        metadata: extra `metadata/<name>` entries.
        overwrite: replace an existing file; without it an existing file is never touched.

    Returns:
        The path written.

    Raises:
        DatasetError: a missing key, a wrong shape or dtype, or a NaN/inf value.
        FileExistsError: `path` exists and `overwrite` is False.
    """
    file = Path(path).expanduser()
    try:
        prepared = _prepare(data, metadata)
    except DatasetError as exc:
        raise DatasetError(f"{file}: not written: {exc}") from exc

    def refuse() -> FileExistsError:
        return FileExistsError(
            f"{file}: already exists and was left untouched (it may hold earlier results). "
            "Choose another path, move the file away, or pass overwrite=True to replace it."
        )

    if file.is_dir():
        raise DatasetError(f"{file}: is a folder; pass a file path ending in .hdf5")
    if file.exists() and not overwrite:
        raise refuse()

    import h5py

    try:
        with atomic_path(file, overwrite=overwrite) as tmp:
            with naming_path(file):  # h5py's OSError of a full disk names no file
                with h5py.File(tmp, "w") as h5:
                    for key, value in prepared.items():
                        h5.create_dataset(key, data=value)
    except FileExistsError:
        raise refuse() from None
    logger.info("wrote %d steps to %s", len(prepared["rewards"]), file)
    return file
