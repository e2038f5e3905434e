"""Reading and writing a run's `record/hyper_param.json`, in this project's layout or the original's.

The original writes every argument at the top level; this project writes the configuration under
`config` (plus derived entries beside it). Loaders of models use these helpers to validate a file
against the run that wrote it.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from offlinerlkit.utils.fileio import atomic_write

#: Where a run directory keeps its resolved configuration.
HYPER_PARAM_FILE = Path("record") / "hyper_param.json"

_log = logging.getLogger(__name__)


def read_hyper_params(run_path: str | Path, *, required: bool = False,
                      error: type[Exception] = ValueError) -> Optional[dict[str, Any]]:
    """The `record/hyper_param.json` of the run at `run_path`.

    Args:
        run_path: the run directory.
        required: raise `FileNotFoundError` when the file is missing (else return None).
        error: the exception class raised for an unreadable or non-object file.
    """
    path = Path(run_path) / HYPER_PARAM_FILE
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} does not exist: {run_path} is not a run directory "
                                    "written by this project")
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}; the run directory is damaged (fix or remove the "
                    "file)") from exc
    if not isinstance(value, dict):
        raise error(f"{path} is not a JSON object; fix or remove the file")
    return value


def write_hyper_params(run_path: str | Path, data: Mapping[str, Any]) -> str:
    """Write `data` as the run's `record/hyper_param.json` (atomically, indented); returns the
    JSON text (without the final newline)."""
    text = json.dumps(data, indent=4)
    atomic_write(Path(run_path) / HYPER_PARAM_FILE, lambda f: f.write(text + "\n"), text=True)
    return text


def find_hyper_value(hyper: Mapping[str, Any], keys: tuple[str, ...], *,
                     nested_keys: tuple[str, ...] = (), section: Optional[str] = None) -> Any:
    """The first non-None value of `keys`, wherever the writing script put it.

    Looks at the top level (the original's layout), then inside `config` and `run` (ours), then
    for `nested_keys + keys` inside `hyper[section]` when a section is named.
    """
    scopes: list[tuple[Any, tuple[str, ...]]] = [(hyper, keys)]
    scopes += [(hyper.get(name), keys) for name in ("config", "run")]
    if section is not None:
        scopes.append((hyper.get(section), nested_keys + keys))
    for scope, names in scopes:
        if isinstance(scope, Mapping):
            for key in names:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def same_task(a: str, b: str) -> bool:
    """Task names compared case- and whitespace-insensitively."""
    return str(a).strip().lower() == str(b).strip().lower()


def check_provenance(file: Path, *, file_task: Optional[str], hyper: Optional[Mapping[str, Any]],
                     run_path: Path, task: Optional[str], arch: Mapping[str, Any],
                     expected: Mapping[str, Optional[int]], kind: str, verb: str,
                     error: type[Exception]) -> Optional[str]:
    """Check a saved model's task and sizes against its run record and the caller's needs.

    The task comes from the file (`file_task`) or else from the run's `hyper_param.json`; the
    two must agree. It must then be `task` (unchecked, with a warning, when neither records
    one), and each `arch[name]` must equal `expected[name]` where that is not None.

    Args:
        file: the model file (named in the messages).
        file_task: the task the file itself records, if any.
        hyper: the run's `hyper_param.json` (None: none).
        run_path: the run directory holding that JSON (named in the messages).
        task: the task the caller works on (None: no check).
        arch: the file's sizes.
        expected: name -> size the caller needs (None: no check).
        kind: what the file is, for the messages ("dynamics", "anchor seeker").
        verb: how it relates to a size ("models", "maps").
        error: the exception class raised.

    Returns:
        The file's task, if known.
    """
    hyper_path = run_path / HYPER_PARAM_FILE
    hyper_task = find_hyper_value(hyper, ("task",)) if hyper else None
    if file_task and hyper_task and not same_task(file_task, hyper_task):
        raise error(f"{file} says task {file_task!r} but {hyper_path} says {hyper_task!r}; the "
                    "folder mixes files of two runs")
    file_task = file_task or hyper_task
    if task is not None:
        if file_task is None:
            _log.warning("cannot check the task of %s: no task recorded in the file or in %s",
                         file, hyper_path)
        elif not same_task(file_task, task):
            raise error(f"{file} was trained for task {file_task!r}, not {task!r}; pass the "
                        f"{kind} of a {task} run")
    for name, want in expected.items():
        if want is not None and int(want) != arch[name]:
            raise error(f"{file} {verb} {name}={arch[name]} but {name}={int(want)} was expected; "
                        f"pass the {kind} of a run on the same task")
    return file_task


#: One architecture check against `hyper_param.json`: (field of the file's architecture, keys in
#: the JSON, keys inside `section`, how to convert the JSON value).
HyperCheck = tuple[str, tuple[str, ...], tuple[str, ...], Callable[[Any], Any]]


def hyper_mismatch(arch: Mapping[str, Any], hyper: Mapping[str, Any], checks: Sequence[HyperCheck],
                   *, section: Optional[str] = None) -> Optional[tuple[str, Any]]:
    """The first `(field, json value)` where `hyper_param.json` contradicts `arch`, else None.

    Missing or unconvertible JSON values are not contradictions.
    """
    for name, keys, nested, cast in checks:
        value = find_hyper_value(hyper, keys, nested_keys=nested, section=section)
        if value is None:
            continue
        try:
            value = cast(value)
        except (TypeError, ValueError):
            continue
        if value != arch[name]:
            return name, value
    return None


def software_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers, for run records and dataset files
    (plain `str`: torch's version is a str subclass that h5py cannot store)."""
    import gymnasium
    import mujoco
    import numpy
    import torch

    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "gymnasium": str(gymnasium.__version__), "mujoco": str(mujoco.__version__)}


def code_commit() -> str:
    """`git describe --always --dirty` of the checkout holding this package ("unknown" for an
    installed copy without git), for the provenance of long runs."""
    import subprocess

    try:
        proc = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                              cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"
