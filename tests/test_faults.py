"""Faults and bad inputs (issue "Reliability"): each names the problem, exits cleanly and leaves
earlier results as they were. This file grows one fault at a time; the kill/resume ones are here.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.utils.cli import parse_config
from offlinerlkit.utils.resume import RunLock, RunLockError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_bc  # noqa: E402

TASK = "hopper-medium-v2"
ARGV = ["--task", TASK, "--epoch", "5", "--step_per_epoch", "3", "--batch_size", "16",
        "--eval_episodes", "1", "--hidden_dims", "16", "16", "--checkpoint_freq", "2",
        "--device", "cpu", "--progress", "False"]


def _data(n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    action = np.tanh(obs[:, :3] @ rng.normal(size=(3, 3))).astype(np.float32)
    return {"observations": obs, "actions": action, "next_observations": obs + 0.01,
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": np.zeros(n, bool)}


def _steps(run: Path) -> list[int]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        return [int(row["timestep"]) for row in csv.DictReader(fh)]


def _losses(run: Path) -> list[str]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        return [row["loss/actor"] for row in csv.DictReader(fh)]


class Killed(Exception):
    """Stands for a kill -9 at the end of an evaluation."""


def _killed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_evals: int) -> Path:
    calls = [0]
    evaluate = MFPolicyTrainer.evaluate

    def dying(self: MFPolicyTrainer) -> dict[str, float]:
        calls[0] += 1
        if calls[0] > after_evals:
            raise Killed
        return evaluate(self)

    monkeypatch.setattr(MFPolicyTrainer, "evaluate", dying)
    cfg = parse_config(run_bc.BCConfig, ARGV + ["--log_dir", str(tmp_path / "log")])
    with pytest.raises(Killed):
        run_bc.main(cfg, dataset=_data())
    monkeypatch.setattr(MFPolicyTrainer, "evaluate", evaluate)
    (run,) = (tmp_path / "log" / TASK / "bc").iterdir()
    return run


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = parse_config(run_bc.BCConfig,
                       ARGV + ["--log_dir", str(tmp_path_factory.mktemp("straight") / "log")])
    return run_bc.main(cfg, dataset=_data())


@pytest.mark.parametrize("after_evals", [1, 3, 4])  # no checkpoint yet; rows past epoch 2 or 4
def test_resume_dir_alone_continues_the_saved_run_without_repeated_rows(
        straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_evals: int) -> None:
    run = _killed_run(tmp_path, monkeypatch, after_evals)
    (run / "checkpoint" / ".policy_000002.pt.abc.tmp").write_bytes(b"half")  # a killed write
    cfg = parse_config(run_bc.BCConfig, ["--resume", str(run)])
    assert (cfg.epoch, cfg.step_per_epoch, cfg.progress, cfg.hidden_dims) == (5, 3, False, (16, 16))
    assert run_bc.main(cfg, dataset=_data()) == run
    assert _steps(run) == _steps(straight) == [3, 6, 9, 12, 15]
    assert _losses(run) == _losses(straight)
    assert not list(run.rglob("*.tmp"))
    assert not (run / "record" / ".lock").exists()


def test_resume_refuses_options_that_contradict_the_saved_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    run = _killed_run(tmp_path, monkeypatch, 3)
    before = (run / "record" / "policy_training_progress.csv").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        parse_config(run_bc.BCConfig, ["--resume", str(run), "--task", "walker2d-medium-v2",
                                       "--batch_size", "32", "--epoch", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for part in ("--task walker2d-medium-v2 (saved: hopper-medium-v2)",
                 "--batch_size 32 (saved: 16)", "--epoch 2 is below the saved 5"):
        assert part in err
    assert (run / "record" / "policy_training_progress.csv").read_bytes() == before
    # a larger --epoch extends the run; --threads and --device may change
    cfg = parse_config(run_bc.BCConfig, ["--resume", str(run), "--epoch", "6", "--threads", "1"])
    assert (cfg.epoch, cfg.threads, cfg.batch_size) == (6, 1, 16)


def test_a_run_folder_is_locked_while_a_live_process_writes_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _killed_run(tmp_path, monkeypatch, 3)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / "record" / ".lock").write_text(f"{other.pid} {socket.gethostname()}\n")
        before = (run / "record" / "policy_training_progress.csv").read_bytes()
        with pytest.raises(RunLockError, match=f"in use by process {other.pid}"):
            run_bc.main(parse_config(run_bc.BCConfig, ["--resume", str(run)]), dataset=_data())
        assert (run / "record" / "policy_training_progress.csv").read_bytes() == before
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its lock no longer blocks
    run_bc.main(parse_config(run_bc.BCConfig, ["--resume", str(run)]), dataset=_data())
    assert _steps(run) == [3, 6, 9, 12, 15]


def test_run_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    (tmp_path / "record").mkdir()
    with RunLock(tmp_path):
        assert (tmp_path / "record" / ".lock").read_text().split()[0].isdigit()
    assert not (tmp_path / "record" / ".lock").exists()
    (tmp_path / "record" / ".lock").write_text("garbage")  # half-written by a killed process
    with RunLock(tmp_path) as lock:
        assert lock.held
