"""Faults and bad inputs (issue "Reliability"): each names the problem, exits cleanly and leaves
earlier results as they were.

Sections: kills and resumes (in-process stand-ins, then real `kill -9`s of subprocesses through
tests/kill_driver.py for a model-free, a model-based, a dynamics and an anchor-seeker run); the
machine refusing writes (ENOSPC, EROFS, EACCES); meaningless values and datasets; broken files;
the command line (one line, exit status, `--debug`).
"""
from __future__ import annotations

import csv
import json
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


# --------------------------------------------------------------------------- real kills

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "run_example"
DRIVER = Path(__file__).resolve().parent / "kill_driver.py"
MOPO_ARGV = ["--task", TASK, "--epoch", "5", "--step_per_epoch", "3", "--batch_size", "16",
             "--eval_episodes", "1", "--hidden_dims", "16", "16", "--checkpoint_freq", "2",
             "--rollout_freq", "2", "--rollout_batch_size", "20", "--rollout_length", "2",
             "--model_retain_epochs", "2", "--threads", "1", "--device", "cpu",
             "--progress", "False"]
DYN_ARGV = ["--task", TASK, "--dynamics_hidden_dims", "8", "8", "--dynamics_weight_decay", "0",
            "0", "0", "--num_ensemble", "3", "--num_elites", "2", "--dynamics_max_epochs", "3",
            "--threads", "1", "--device", "cpu", "--progress", "False"]


def _kill_run(moment: str, nth: int, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python run_example/<script> args...`, SIGKILLed by itself at the n-th `moment`."""
    return subprocess.run([sys.executable, str(DRIVER), moment, str(nth), str(SCRIPTS / script),
                           *args], capture_output=True, text=True, timeout=300)


def _rows(run: Path, phase: str = "policy") -> list[dict[str, str]]:
    """The CSV rows of `phase` without the wall-clock columns."""
    with open(run / "record" / f"{phase}_training_progress.csv") as fh:
        return [{k: v for k, v in row.items() if not k.startswith("time/")}
                for row in csv.DictReader(fh)]


def _tb(run: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars as a reader sees them (events purged by a resume are hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "record" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"] if not tag.startswith("time/")}


def _only_run(log: Path) -> Path:
    (run,) = [p.parent.parent for p in log.rglob("record/hyper_param.json")]
    return run


def _assert_clean(run: Path) -> None:
    assert not list(run.rglob("*.tmp")), "a temporary file survived the next start"
    assert not (run / "record" / ".lock").exists()


@pytest.fixture(scope="module")
def hdf5_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`_data()` as a D4RL file, so that subprocesses read the same rows (`--dataset_path`)."""
    from offlinerlkit.datasets import write_d4rl_hdf5

    data = _data()
    data["timeouts"] = np.zeros(len(data["rewards"]), bool)
    return write_d4rl_hdf5(tmp_path_factory.mktemp("data") / "hopper_medium-v2.hdf5", data)


@pytest.fixture(scope="module")
def dynamics_run(tmp_path_factory: pytest.TempPathFactory, hdf5_data: Path) -> Path:
    import run_dynamics

    log = tmp_path_factory.mktemp("dynamics") / "log"
    return run_dynamics.main(parse_config(run_dynamics.DynamicsRunConfig, DYN_ARGV + [
        "--dataset_path", str(hdf5_data), "--log_dir", str(log)]))


@pytest.fixture(scope="module")
def mopo_argv(dynamics_run: Path, hdf5_data: Path) -> list[str]:
    return MOPO_ARGV + ["--dataset_path", str(hdf5_data), "--load_dynamics_path",
                        str(dynamics_run / "model")]


@pytest.fixture(scope="module")
def mopo_straight(tmp_path_factory: pytest.TempPathFactory, mopo_argv: list[str]) -> Path:
    import run_mopo

    log = tmp_path_factory.mktemp("mopo") / "log"
    return run_mopo.main(parse_config(run_mopo.MOPOConfig, mopo_argv + ["--log_dir", str(log)]))


def _resume_mopo(run: Path) -> None:
    import run_mopo

    assert run_mopo.main(parse_config(run_mopo.MOPOConfig, ["--resume", str(run)])) == run


@pytest.mark.parametrize("moment, nth", [
    ("step", 8),                       # mid epoch 3, after the checkpoint of epoch 2
    (r"replace:policy_\d+\.pt", 2),   # the checkpoint of epoch 4: temporary file complete
    ("checkpoint", 3),                 # rows of epochs 3-5 written, the last checkpoint not
    ("csv", 4),                        # half of the row of epoch 4 in the CSV
    (r"replace:^policy\.pth$", 1),     # the final model, after the last checkpoint
])
def test_model_based_run_killed_at_any_moment_resumes_to_the_rows_of_an_uninterrupted_run(
        mopo_straight: Path, mopo_argv: list[str], tmp_path: Path, moment: str, nth: int) -> None:
    proc = _kill_run(moment, nth, "run_mopo.py", *mopo_argv, "--log_dir", str(tmp_path / "log"))
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = _only_run(tmp_path / "log")
    _resume_mopo(run)
    assert _rows(run) == _rows(mopo_straight)
    assert [int(r["timestep"]) for r in _rows(run)] == [3, 6, 9, 12, 15]
    assert _tb(run) == _tb(mopo_straight)
    assert (run / "model" / "policy.pth").is_file()
    _assert_clean(run)


def test_model_based_run_killed_at_a_random_moment_and_again_while_resuming(
        mopo_straight: Path, mopo_argv: list[str], tmp_path: Path) -> None:
    import random
    import time

    seed = random.randrange(10**6)
    rng = random.Random(seed)
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "run_mopo.py"), *mopo_argv,
                             "--log_dir", str(tmp_path / "log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "log").rglob("record/hyper_param.json")):
        assert time.time() < deadline and proc.poll() is None, "the run never started"
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.kill()
    proc.wait()
    run = _only_run(tmp_path / "log")
    # the resume is killed too, in its second training step
    again = _kill_run("step", 2, "run_mopo.py", "--resume", str(run))
    assert again.returncode in (-9, 0), again.stderr[-2000:]  # 0: the first run had finished
    _resume_mopo(run)
    assert _rows(run) == _rows(mopo_straight), f"random seed {seed}"
    assert _tb(run) == _tb(mopo_straight), f"random seed {seed}"
    _assert_clean(run)


def test_model_free_run_killed_in_a_checkpoint_write_resumes_cleanly(
        straight: Path, hdf5_data: Path, tmp_path: Path) -> None:
    argv = ARGV + ["--dataset_path", str(hdf5_data), "--threads", "1"]
    cfg = parse_config(run_bc.BCConfig, argv + ["--log_dir", str(tmp_path / "straight")])
    reference = run_bc.main(cfg)
    proc = _kill_run(r"replace:policy_\d+\.pt", 1, "run_bc.py", *argv, "--log_dir",
                     str(tmp_path / "log"))
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = _only_run(tmp_path / "log")
    assert list(run.rglob("*.tmp")) and _rows(run)  # the kill left a temporary file and rows
    run_bc.main(parse_config(run_bc.BCConfig, ["--resume", str(run)]))
    assert _rows(run) == _rows(reference)
    assert _tb(run) == _tb(reference)
    _assert_clean(run)


def test_dynamics_run_killed_restarts_cleanly_on_resume_and_is_never_reused_unfinished(
        dynamics_run: Path, hdf5_data: Path, tmp_path: Path) -> None:
    from offlinerlkit.pipeline.artifacts import FORWARD_DYNAMICS, find_artifact

    argv = DYN_ARGV + ["--dataset_path", str(hdf5_data), "--log_dir", str(tmp_path / "log")]
    proc = _kill_run(r"replace:^dynamics\.pth$", 2, "run_dynamics.py", *argv)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = _only_run(tmp_path / "log")
    assert _rows(run, "dynamics") and not (run / "model" / "dynamics.pth").exists()
    import run_dynamics

    stopped = parse_config(run_dynamics.DynamicsRunConfig, argv)
    source = json.loads((run / "record" / "hyper_param.json").read_text())["dataset_source"]
    assert find_artifact(tmp_path / "log", FORWARD_DYNAMICS, stopped, dataset_source=source) is None
    assert run_dynamics.main(parse_config(run_dynamics.DynamicsRunConfig,
                                          ["--resume", str(run)])) == run
    assert _rows(run, "dynamics") == _rows(dynamics_run, "dynamics")
    assert _tb(run) == _tb(dynamics_run)
    assert (run / "model" / "dynamics.pth").read_bytes() != b""
    _assert_clean(run)


def test_anchor_seeker_run_killed_restarts_cleanly_on_resume(hdf5_data: Path,
                                                              tmp_path: Path) -> None:
    import run_anchor_seeker

    argv = ["--task", TASK, "--dataset_path", str(hdf5_data), "--dynamics_hidden_dims", "8", "8",
            "--dynamics_weight_decay", "0", "0", "0", "--num_ensemble", "3", "--num_elites", "2",
            "--dynamics_max_epochs", "2", "--rollout_length", "2", "--asp_epoch", "4",
            "--anchor_seeker_hidden_dims", "8", "8", "--threads", "1", "--device", "cpu",
            "--progress", "False"]
    cfg = parse_config(run_anchor_seeker.AnchorSeekerConfig,
                       argv + ["--log_dir", str(tmp_path / "straight")])
    reference = run_anchor_seeker.main(cfg)
    proc = _kill_run("csv", 4, "run_anchor_seeker.py", *argv, "--log_dir", str(tmp_path / "log"))
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = _only_run(tmp_path / "log")
    run_anchor_seeker.main(parse_config(run_anchor_seeker.AnchorSeekerConfig,
                                        ["--resume", str(run)]))
    for phase in ("reverse_dynamics", "anchor_seeker"):
        assert _rows(run, phase) == _rows(reference, phase)
    assert _tb(run) == _tb(reference)
    _assert_clean(run)
