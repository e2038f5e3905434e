"""BC and the model-free trainer end to end: files written, resume equals an uninterrupted run."""
from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_bc  # noqa: E402

TASK = "hopper-medium-v2"


def _hopper_like(n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    action = np.tanh(obs[:, :3] @ rng.normal(size=(3, 3))).astype(np.float32)
    return {"observations": obs, "actions": action, "next_observations": obs + 0.01,
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": np.zeros(n, bool)}


def _cfg(tmp_path: Path, **kw: object) -> run_bc.BCConfig:
    base = dict(task=TASK, epoch=4, step_per_epoch=3, batch_size=16, eval_episodes=1,
                hidden_dims=(16, 16), log_dir=str(tmp_path / "log"), checkpoint_freq=2,
                device="cpu", progress=False)
    base.update(kw)
    return run_bc.BCConfig(**base)  # type: ignore[arg-type]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(fh)]


def test_bc_run_writes_the_expected_files(tmp_path: Path) -> None:
    run = run_bc.main(_cfg(tmp_path), dataset=_hopper_like())
    assert run.parent == tmp_path / "log" / TASK / "bc"
    for rel in ("record/hyper_param.json", "record/policy_training_progress.csv",
                "record/consoleout_backup.txt", "model/policy.pth"):
        assert (run / rel).is_file(), rel
    assert list((run / "record" / "tb").iterdir())
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "policy_000002.pt", "policy_000004.pt"]
    rows = _rows(run)
    assert [int(r["timestep"]) for r in rows] == [3, 6, 9, 12]
    assert all(np.isfinite(float(r["loss/actor"])) for r in rows)
    assert {"eval/normalized_episode_reward", "eval/last_10_performance"} <= set(rows[0])
    saved = json.loads((run / "record" / "hyper_param.json").read_text())
    assert saved["config"]["hidden_dims"] == [16, 16] and saved["env_spec"]["obs_dim"] == 11


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = _hopper_like()
    straight = run_bc.main(_cfg(tmp_path / "a"), dataset=data)
    first = run_bc.main(_cfg(tmp_path / "b", epoch=2), dataset=data)
    resumed = run_bc.main(_cfg(tmp_path / "c", epoch=4, resume=str(first)), dataset=data)
    assert resumed == first
    assert _rows(resumed) == _rows(straight)
    a = torch.load(straight / "model" / "policy.pth")["actor"]
    b = torch.load(resumed / "model" / "policy.pth")["actor"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="hyper_param.json"):
        run_bc.main(_cfg(tmp_path, resume=str(tmp_path / "nope")), dataset=_hopper_like())


def test_nan_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    data = _hopper_like()
    data["actions"] = data["actions"].copy()
    data["actions"][:] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite training metrics"):
        run_bc.main(_cfg(tmp_path), dataset=data)


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    data = _hopper_like()
    a = run_bc.main(_cfg(tmp_path / "a", epoch=2), dataset=data)
    b = run_bc.main(_cfg(tmp_path / "b", epoch=2), dataset=data)
    assert _rows(a) == _rows(b)
    c = run_bc.main(dataclasses.replace(_cfg(tmp_path / "c", epoch=2), seed=1), dataset=data)
    assert _rows(c) != _rows(a)
