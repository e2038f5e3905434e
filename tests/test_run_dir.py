"""Tests of `offlinerlkit.utils.run_dir.RunDir`: layout, shell-safe names, no reuse, reopen."""
from __future__ import annotations

import dataclasses
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from offlinerlkit.utils.run_dir import RunDir, RunDirError, safe_name

NOW = datetime(2024, 1, 31, 23, 59, 58)
SAFE = re.compile(r"^[A-Za-z0-9._=-]+$")


def _create(root: Path, **kw: object) -> RunDir:
    args: dict = {"task": "hopper-medium-v2", "algo": "mopo", "seed": 0, "now": NOW, **kw}
    return RunDir.create(root, **args)


def test_layout(tmp_path: Path) -> None:
    run = _create(tmp_path, tags={"penalty_coef": 2.5, "rollout_length": 5})
    assert run.path == (tmp_path / "hopper-medium-v2" / "mopo_penalty_coef-2.5_rollout_length-5"
                        / "seed_0_20240131-235958")
    for sub in (run.record, run.tb, run.model, run.checkpoint, run.result):
        assert sub.is_dir()
    assert run.record == run.path / "record" and run.tb == run.path / "record" / "tb"
    assert run.model == run.path / "model" and run.checkpoint == run.path / "checkpoint"
    assert run.result == run.path / "result"
    assert os.fspath(run) == str(run.path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.path = tmp_path  # type: ignore[misc]


def test_names_are_shell_safe(tmp_path: Path) -> None:
    run = _create(tmp_path, task="hopper medium/v2$(rm)", algo="my algo;x",
                  tags={"a b": "x/y", "lr": 1e-5, "big": 1e20, "flag": True,
                        "dims": [256, 256], "np": np.float32(0.5)})
    rel = run.path.relative_to(tmp_path)
    assert len(rel.parts) == 3
    for part in rel.parts:
        assert SAFE.match(part), part
    assert rel.parts[0] == "hopper-medium-v2--rm-"
    assert rel.parts[1] == "my-algo-x_a-b-x-y_lr-1e-05_big-1e20_flag-True_dims-256-256_np-0.5"


@pytest.mark.parametrize("value, expected", [
    (2.5, "2.5"), (3.0, "3"), (0.0001, "0.0001"), (1e-5, "1e-05"), (1e20, "1e20"),
    (-0.5, "-0.5"), (7, "7"), (np.int64(3), "3"), ((1, 2.5), "1-2.5"), ("a=b.c", "a=b.c"),
])
def test_safe_name_values(value: object, expected: str) -> None:
    assert safe_name(value) == expected


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_unusable_components_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="directory name"):
        _create(tmp_path, task=bad)


def test_never_reuses_a_directory(tmp_path: Path) -> None:
    first = _create(tmp_path)
    marker = first.record / "keep.txt"
    marker.write_text("data")
    second = _create(tmp_path)
    third = _create(tmp_path)
    assert second.path.name == first.path.name + "_1"
    assert third.path.name == first.path.name + "_2"
    assert marker.read_text() == "data"  # nothing overwritten
    other_seed = _create(tmp_path, seed=1)
    assert other_seed.path.name == "seed_1_20240131-235958"


def test_default_timestamp(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, task="t", algo="a", seed=3)
    assert re.fullmatch(r"seed_3_\d{8}-\d{6}", run.path.name)


def test_open_existing(tmp_path: Path) -> None:
    run = _create(tmp_path)
    (run.checkpoint / "checkpoint_000001.pt").write_bytes(b"x")
    run.result.rmdir()  # an older layout without result/
    reopened = RunDir.open(str(run.path))
    assert reopened == run
    assert run.result.is_dir()  # recreated
    assert (run.checkpoint / "checkpoint_000001.pt").read_bytes() == b"x"  # untouched


def test_open_rejects_non_run_dirs(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RunDirError, match=re.escape(str(missing))):
        RunDir.open(missing)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RunDirError, match="no record/ folder"):
        RunDir.open(plain)
    assert list(plain.iterdir()) == []  # nothing created in a non-run dir
