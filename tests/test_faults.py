"""Faults and bad inputs (issue "Reliability"): each names the problem, exits cleanly and leaves
earlier results as they were.

Sections: kills and resumes (in-process stand-ins, then real `kill -9`s of subprocesses through
tests/kill_driver.py for a model-free, a model-based, a dynamics and an anchor-seeker run); the
machine refusing writes (ENOSPC, EROFS, EACCES); meaningless values and datasets; broken files;
the command line (one line, exit status, `--debug`).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_dynamics_fit_killed_continues_after_its_last_saved_epoch(
        dynamics_run: Path, hdf5_data: Path, tmp_path: Path) -> None:
    """Killed before the fit state of epoch 2 is written, a resume continues from epoch 1's
    state (it does not start over) and ends with the uninterrupted run's rows and model."""
    import run_dynamics

    argv = DYN_ARGV + ["--dataset_path", str(hdf5_data), "--log_dir", str(tmp_path / "log")]
    proc = _kill_run(r"replace:^dynamics_fit_state\.pt$", 2, "run_dynamics.py", *argv)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = _only_run(tmp_path / "log")
    assert len(_rows(run, "dynamics")) == 2 and (run / "checkpoint" / "dynamics_fit_state.pt").is_file()
    run_dynamics.main(parse_config(run_dynamics.DynamicsRunConfig, ["--resume", str(run)]))
    console = (run / "record" / "consoleout_backup.txt").read_text()
    assert "continuing the stopped forward dynamics fit after epoch 1" in console
    assert _rows(run, "dynamics") == _rows(dynamics_run, "dynamics")
    assert _tb(run) == _tb(dynamics_run)
    saved = [torch.load(r / "model" / "dynamics.pth", weights_only=True)["state_dict"]
             for r in (run, dynamics_run)]
    for key, value in saved[1].items():
        assert torch.equal(saved[0][key], value), key
    assert not (run / "checkpoint" / "dynamics_fit_state.pt").exists()
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
    # killed in the seeker's pretraining (imagination reused), and before the imagination
    # step was marked done (reverse dynamics reused, rollouts again)
    for moment, nth, reused in (("csv", 4, "reverse imagination reused"),
                                (r"replace:^after_imagination\.pt$", 1,
                                 "reverse dynamics reused")):
        log = tmp_path / moment[:3]
        proc = _kill_run(moment, nth, "run_anchor_seeker.py", *argv, "--log_dir", str(log))
        assert proc.returncode == -9, proc.stderr[-2000:]
        run = _only_run(log)
        run_anchor_seeker.main(parse_config(run_anchor_seeker.AnchorSeekerConfig,
                                            ["--resume", str(run)]))
        assert reused in (run / "record" / "consoleout_backup.txt").read_text()
        for phase in ("reverse_dynamics", "anchor_seeker"):
            assert _rows(run, phase) == _rows(reference, phase)
        assert _tb(run) == _tb(reference)
        seekers = [torch.load(r / "model" / "anchor_seeker_pretrain.pth",
                              weights_only=True)["state_dict"] for r in (run, reference)]
        for key, value in seekers[1].items():
            assert torch.equal(seekers[0][key], value), key
        assert not list((run / "checkpoint").glob("after_*.pt"))
        _assert_clean(run)


# --------------------------------------------------------------------------- helpers: the CLI in-process

def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content (TensorBoard folders included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory, hdf5_data: Path) -> Path:
    """A log folder holding a finished run: faults pointed at it must leave it as it was."""
    log = tmp_path_factory.mktemp("earlier") / "log"
    run_bc.main(parse_config(run_bc.BCConfig, ARGV + ["--dataset_path", str(hdf5_data),
                                                      "--log_dir", str(log)]))
    return log


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, script: str,
         *argv: str) -> tuple[int, str]:
    """Run `script argv...` in this process through its `__main__` entry (`run_main`).

    Returns:
        The exit status (0 when it ran to the end) and its stderr.
    """
    import importlib

    from offlinerlkit.utils.cli import run_main

    module = importlib.import_module(script)
    config_cls = next(v for k, v in vars(module).items()
                      if k.endswith("Config") and isinstance(v, type) and v.__module__ == script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    capsys.readouterr()
    try:
        run_main(module.main, config_cls)
    except SystemExit as exit_info:
        return int(exit_info.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def _one_line_error(err: str, script: str) -> str:
    """The single `<script>.py: error: ...` line of `err` (asserting there is no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{script}.py: error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


# --------------------------------------------------------------------------- meaningless values

BAD_VALUES = [
    ("run_bc", ["--epoch", "0"], "--epoch must be at least 1, got 0"),
    ("run_bc", ["--eval_episodes", "0"], "--eval_episodes must be at least 1, got 0"),
    ("run_bc", ["--batch_size", "-1"], "--batch_size must be at least 1, got -1"),
    ("run_bc", ["--hidden_dims"], "--hidden_dims must be one or more sizes"),
    ("run_bc", ["--hidden_dims", "16", "0"], "--hidden_dims must be one or more sizes, each at least 1"),
    ("run_bc", ["--actor_lr", "nan"], "--actor_lr must be a finite number, got nan"),
    ("run_bc", ["--actor_lr", "0"], "--actor_lr must be greater than 0, got 0.0"),
    ("run_bc", ["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
    ("run_bc", ["--threads", "0"], "--threads must be at least 1, got 0"),
    ("run_bc", ["--checkpoint_freq", "0"], "--checkpoint_freq must be at least 1, got 0"),
    ("run_cql", ["--gamma", "1.5"], "--gamma must be in (0, 1], got 1.5"),
    ("run_cql", ["--tau", "inf"], "--tau must be a finite number, got inf"),
    ("run_cql", ["--num_repeat_actions", "0"], "--num_repeat_actions must be at least 1, got 0"),
    ("run_cql", ["--cql_weight", "-1"], "--cql_weight must be at least 0, got -1.0"),
    ("run_cql", ["--embedding_dim", "0"], "--embedding_dim must be at least 1, got 0"),
    ("run_iql", ["--expectile", "1"], "--expectile must be in (0, 1), got 1.0"),
    ("run_iql", ["--dropout_rate", "1"], "--dropout_rate must be in [0, 1), got 1.0"),
    ("run_mopo", ["--penalty_coef", "-1"], "--penalty_coef must be at least 0, got -1.0"),
    ("run_mopo", ["--rollout_length", "0"], "--rollout_length must be at least 1, got 0"),
    ("run_mopo", ["--real_ratio", "2"], "--real_ratio must be in [0, 1], got 2.0"),
    ("run_mopo", ["--rollout_batch_size", "0"], "--rollout_batch_size must be at least 1, got 0"),
    ("run_mobile", ["--num_samples", "0"], "--num_samples must be at least 1, got 0"),
    ("run_dynamics", ["--num_elites", "9"], "need 1 <= --num_elites <= --num_ensemble, got 9 and 7"),
    ("run_dynamics", ["--holdout_ratio", "0"], "--holdout_ratio must be in (0, 1), got 0.0"),
    ("run_dynamics", ["--dynamics_weight_decay", "-1", "0", "0", "0", "0"],
     "--dynamics_weight_decay values must be at least 0"),
    ("run_anchor_seeker", ["--asp_epoch", "0"], "--seeker_epochs must be at least 1, got 0"),
    ("run_anchor_seeker", ["--noise_coef", "-0.1"], "--noise_coef must be at least 0, got -0.1"),
    ("make_dataset", ["--robot", "hopper", "--eval_episodes", "0"],
     "--eval_episodes must be at least 1, got 0"),
    ("make_dataset", ["--robot", "robo"], "--robot must be one of ['halfcheetah', 'hopper', "
                                          "'walker2d'], got 'robo'"),
]


@pytest.mark.parametrize("script, argv, message", BAD_VALUES,
                         ids=[f"{s}{' '.join(a)}" for s, a, _ in BAD_VALUES])
def test_meaningless_values_are_refused_naming_the_flag(
        earlier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, script: str, argv: list[str], message: str) -> None:
    before = _snapshot(earlier)
    where = (["--out_dir", str(tmp_path / "replica")] if script == "make_dataset"
             else ["--task", TASK, "--log_dir", str(earlier)])
    code, err = _cli(monkeypatch, capsys, script, *where, *argv)
    assert code == 2
    assert message in _one_line_error(err, script)
    assert _snapshot(earlier) == before
    assert not (tmp_path / "replica").exists()


def _tiny_seeker(folder: Path, *, nan: bool = False) -> Path:
    from offlinerlkit.anchor import AnchorSeeker, save_seeker

    seeker = AnchorSeeker(11, 3, (8, 8))
    if nan:
        next(seeker.parameters()).data[0, 0] = float("nan")
    save_seeker(folder / "model", seeker, metadata={"task": TASK})
    return folder / "model"


def test_horizon_zero_is_accepted_with_a_loud_warning_recorded_in_hyper_param_json(
        dynamics_run: Path, hdf5_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    seeker = _tiny_seeker(tmp_path / "seeker")
    code, _ = _cli(monkeypatch, capsys, "run_iql", "--task", TASK, "--dataset_path",
                   str(hdf5_data), "--log_dir", str(tmp_path / "log"), "--epoch", "1",
                   "--step_per_epoch", "2", "--batch_size", "16", "--eval_episodes", "1",
                   "--hidden_dims", "16", "16", "--load_dynamics_path",
                   str(dynamics_run / "model"), "--load_anchor_seeker_path", str(seeker),
                   "--actor_horizon_len", "0", "--device", "cpu", "--progress", "False")
    assert code == 0
    run = _only_run(tmp_path / "log")
    record = json.loads((run / "record" / "hyper_param.json").read_text())
    (warning,) = record["warnings"]
    assert warning.startswith("--actor_horizon_len 0: the actor' anchor is the state itself")
    console = (run / "record" / "consoleout_backup.txt").read_text()
    assert f"WARNING: {warning}" in console
    assert record["config"]["actor_horizon_len"] == 0


# --------------------------------------------------------------------------- datasets

def _raw_hdf5(path: Path, **changes: np.ndarray) -> Path:
    """A D4RL file written with h5py directly (as any tool could), with `changes` applied."""
    import h5py

    data = _data()
    data["timeouts"] = np.zeros(len(data["rewards"]), bool)
    data.update(changes)
    with h5py.File(path, "w") as h5:
        for key, value in data.items():
            h5.create_dataset(key, data=value)
    return path


def _with(rows: list[int], key: str, value: float, dtype: type = np.float32) -> np.ndarray:
    base = _data()[key].astype(dtype) if key in _data() else np.zeros(300, dtype)
    base[rows] = value
    return base


ANOMALIES = [
    ("rewards", _with([7, 8, 250], "rewards", 1e30),
     "3 reward(s) of magnitude above 1e+06 (rows 7, 8, 250; largest |r| = 1e+30)"),
    ("actions", _with([3, 4, 5, 6, 7, 9, 11], "actions", 50.0),
     "21 action value(s) in 7 row(s) outside the action space [-1, 1] (rows 3, 4, 5, 6, 7 "
     "and 2 more; largest |a| = 50)"),
    ("terminals", _with([42], "terminals", 3.0),
     "1 terminals flag(s) neither 0 nor 1 (rows 42; values 3)"),
]


@pytest.mark.parametrize("key, value, message", ANOMALIES, ids=[a[0] for a in ANOMALIES])
def test_datasets_with_absurd_values_are_refused_naming_rows_and_counts(
        earlier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, key: str, value: np.ndarray, message: str) -> None:
    path = _raw_hdf5(tmp_path / "hopper_medium-v2.hdf5", **{key: value})
    before = _snapshot(earlier)
    code, err = _cli(monkeypatch, capsys, "run_bc", *ARGV, "--dataset_path", str(path),
                     "--log_dir", str(earlier))
    line = _one_line_error(err, "run_bc")
    assert code == 2
    assert f"{path}: {message}" in line and "--accept_dataset_anomalies" in line
    assert _snapshot(earlier) == before


def test_accept_dataset_anomalies_trains_and_records_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = _raw_hdf5(tmp_path / "hopper_medium-v2.hdf5", terminals=_with([42], "terminals", 3.0))
    code, _ = _cli(monkeypatch, capsys, "run_bc", *ARGV, "--dataset_path", str(path),
                   "--log_dir", str(tmp_path / "log"), "--accept_dataset_anomalies")
    assert code == 0
    record = json.loads((_only_run(tmp_path / "log") / "record" / "hyper_param.json").read_text())
    assert record["config"]["accept_dataset_anomalies"] is True
    assert any("neither 0 nor 1 (rows 42" in w for w in record["warnings"])


# --------------------------------------------------------------------------- broken files

def test_dynamics_with_nan_weights_are_blamed_on_their_file_not_the_data(
        dynamics_run: Path, mopo_argv: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import shutil

    import torch

    model = tmp_path / "model"
    shutil.copytree(dynamics_run / "model", model)
    payload = torch.load(model / "dynamics.pth", weights_only=True)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first].view(-1)[0] = float("nan")
    torch.save(payload, model / "dynamics.pth")
    argv = [a if a != str(dynamics_run / "model") else str(model) for a in mopo_argv]
    code, err = _cli(monkeypatch, capsys, "run_mopo", *argv, "--log_dir", str(tmp_path / "log"))
    line = _one_line_error(err, "run_mopo")
    assert code == 2
    assert f"{model / 'dynamics.pth'} holds NaN or infinite weights ({first})" in line
    assert "dataset" not in line
    assert not (tmp_path / "log").exists()


def test_seeker_with_nan_weights_is_blamed_on_its_file(
        dynamics_run: Path, mopo_argv: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    seeker = _tiny_seeker(tmp_path / "seeker", nan=True)
    code, err = _cli(monkeypatch, capsys, "run_mopo", *mopo_argv, "--load_anchor_seeker_path",
                     str(seeker), "--log_dir", str(tmp_path / "log"))
    line = _one_line_error(err, "run_mopo")
    assert code == 2
    assert "anchor_seeker_pretrain.pth holds NaN or infinite weights (backbone" in line
    assert "dataset" not in line


def test_a_truncated_checkpoint_is_named_when_resuming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    run = _killed_run(tmp_path, monkeypatch, 3)
    (newest,) = sorted((run / "checkpoint").glob("policy_*.pt"))[-1:]
    newest.write_bytes(newest.read_bytes()[:100])
    before = (run / "record" / "policy_training_progress.csv").read_bytes()
    with pytest.raises(Exception, match=f"checkpoint {newest} is truncated or corrupt") as info:
        run_bc.main(parse_config(run_bc.BCConfig, ["--resume", str(run)]), dataset=_data())
    from offlinerlkit.utils.errors import exit_code

    assert exit_code(info.value) == 2
    assert (run / "record" / "policy_training_progress.csv").read_bytes() == before
    assert not (run / "record" / ".lock").exists()


# --------------------------------------------------------------------------- the machine refuses

class _FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails as a full disk does (torch wraps the error)."""

    def __init__(self, f: io.IOBase, room: int = 100) -> None:
        super().__init__()
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _disk_full_for(monkeypatch: pytest.MonkeyPatch, module: object, name_pattern: str) -> None:
    """Make the writes of `module.atomic_write` to files matching `name_pattern` hit a full disk
    (the real `atomic_write` runs, with the file object torch writes into failing)."""
    real = module.atomic_write  # type: ignore[attr-defined]

    def atomic_write(path: Path, write: object, **kwargs: object) -> Path:
        if re.search(name_pattern, Path(path).name):
            return real(path, lambda f: write(_FullDisk(f)), **kwargs)  # type: ignore[operator]
        return real(path, write, **kwargs)

    monkeypatch.setattr(module, "atomic_write", atomic_write)


def test_disk_full_in_a_checkpoint_write_ends_with_one_line_and_the_run_resumes_later(
        straight: Path, earlier: Path, hdf5_data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import offlinerlkit.utils.checkpoint as checkpoint

    _disk_full_for(monkeypatch, checkpoint, r"policy_000004\.pt")
    before = _snapshot(earlier)
    code, err = _cli(monkeypatch, capsys, "run_bc", *ARGV, "--dataset_path", str(hdf5_data),
                     "--log_dir", str(earlier))
    (run,) = [p.parent.parent for p in earlier.rglob("record/hyper_param.json")
              if str(p.relative_to(earlier)) not in before]
    line = _one_line_error(err, "run_bc")
    assert code == 1
    assert line == (f"run_bc.py: error: {run / 'checkpoint' / 'policy_000004.pt'}: No space left "
                    "on device (ENOSPC)")
    assert {k: v for k, v in _snapshot(earlier).items() if k in before} == before
    _assert_clean(run)
    monkeypatch.undo()  # space freed: the same run continues to its end
    run_bc.main(parse_config(run_bc.BCConfig, ["--resume", str(run)]))
    assert _steps(run) == [3, 6, 9, 12, 15]


def test_disk_full_when_saving_dynamics_names_the_file(
        hdf5_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import offlinerlkit.dynamics.io as dynamics_io

    _disk_full_for(monkeypatch, dynamics_io, r"^dynamics\.pth$")
    code, err = _cli(monkeypatch, capsys, "run_dynamics", *DYN_ARGV, "--dataset_path",
                     str(hdf5_data), "--log_dir", str(tmp_path / "log"))
    run = _only_run(tmp_path / "log")
    assert code == 1
    assert _one_line_error(err, "run_dynamics").endswith(
        f"{run / 'checkpoint_last' / 'dynamics.pth'}: No space left on device (ENOSPC)")
    assert not list(run.rglob("*.tmp")) and not (run / "model" / "dynamics.pth").exists()


def test_read_only_folder_for_the_csv_names_the_file(
        hdf5_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import offlinerlkit.utils.log_backends as logger_module

    def read_only_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if str(path).endswith("_training_progress.csv") and mode[0] in "wa":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(logger_module, "open", read_only_open, raising=False)
    code, err = _cli(monkeypatch, capsys, "run_bc", *ARGV, "--dataset_path", str(hdf5_data),
                     "--log_dir", str(tmp_path / "log"))
    run = _only_run(tmp_path / "log")
    assert code == 1
    assert _one_line_error(err, "run_bc").endswith(
        f"{run / 'record' / 'policy_training_progress.csv'}: Read-only file system (EROFS)")
    assert not (run / "record" / ".lock").exists()


def test_read_only_record_at_the_start_names_hyper_param_json(
        earlier: Path, hdf5_data: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args: object, prefix: str = "", dir: object = None, **kwargs: object) -> object:
        if prefix.startswith(".hyper_param.json"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{dir}/{prefix}x.tmp")
        return real(*args, prefix=prefix, dir=dir, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    before, folders = _snapshot(earlier), sorted(earlier.rglob("*"))
    code, err = _cli(monkeypatch, capsys, "run_bc", *ARGV, "--dataset_path", str(hdf5_data),
                     "--log_dir", str(earlier))
    line = _one_line_error(err, "run_bc")
    assert code == 1
    assert line.endswith("/record/hyper_param.json: Read-only file system (EROFS)"), line
    assert _snapshot(earlier) == before
    assert sorted(earlier.rglob("*")) == folders  # the new, empty run folder was removed


def test_permission_denied_for_real_names_the_folder(hdf5_data: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # root ignores permissions: run without the capability that lets it (util-linux's setpriv)
    drop = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
            if os.geteuid() == 0 else [])
    proc = subprocess.run([*drop, sys.executable, str(SCRIPTS / "run_bc.py"), *ARGV,
                           "--dataset_path", str(hdf5_data), "--log_dir", str(locked / "log")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert _one_line_error(proc.stderr, "run_bc") == (
        f"run_bc.py: error: {locked / 'log'}: Permission denied (EACCES)")
    assert not (locked / "log").exists()


def test_make_dataset_on_a_full_disk_leaves_no_outputs_and_reruns_without_overwrite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "replica"
    argv = ["--robot", "hopper", "--levels", "random", "--num_samples", "60", "--num_envs", "2",
            "--max_episode_steps", "20", "--final_eval_episodes", "1", "--out_dir", str(out),
            "--device", "cpu", "--threads", "1", "--progress", "False"]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and \
                "replica.hdf5" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, err = _cli(monkeypatch, capsys, "make_dataset", *argv)
    assert code == 1
    assert _one_line_error(err, "make_dataset").endswith(
        f"{out / 'hopper_random-v2-replica.hdf5'}: No space left on device (ENOSPC)")
    assert not [p for p in out.rglob("*") if p.is_file()]  # random.pt was removed again
    monkeypatch.setattr(os, "fsync", real_fsync)
    code, err = _cli(monkeypatch, capsys, "make_dataset", *argv)  # the same command
    assert code == 0, err
    assert (out / "hopper_random-v2-replica.hdf5").is_file()
    assert (out / "policies" / "hopper" / "random.pt").is_file()


# --------------------------------------------------------------------------- the command line

CLI_ERRORS = [
    ("run_bc", ["--task", "nope"], "unknown task 'nope'"),
    ("run_bc", ["--device", "tpu"], "--device 'tpu' is not a device; use one of: auto, cpu"),
    ("run_mopo", ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    ("run_cql", ["--dataset_path", "/nonexistent/hopper.hdf5"],
     "no dataset for task 'hopper-medium-v2' at the given dataset_path"),
    ("run_bc", ["--resume", "/nonexistent/run"], "/nonexistent/run is not a run directory"),
    ("run_mopo", ["--load_dynamics_path", "/nonexistent/model"], "/nonexistent/model"),
]


@pytest.mark.parametrize("script, argv, message", CLI_ERRORS,
                         ids=[f"{s}{' '.join(a)}" for s, a, _ in CLI_ERRORS])
def test_user_errors_print_one_line_and_exit_2_without_a_traceback(
        earlier: Path, hdf5_data: Path, script: str, argv: list[str], message: str) -> None:
    before = _snapshot(earlier)
    data = [] if "--dataset_path" in argv else ["--dataset_path", str(hdf5_data)]
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), "--task", TASK, *data,
                           "--log_dir", str(earlier), "--device", "cpu", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in _one_line_error(proc.stderr, script)
    assert _snapshot(earlier) == before


@pytest.mark.parametrize("how", ["--debug", "COCOA_DEBUG=1"])
def test_debug_shows_the_traceback_of_a_user_error(how: str) -> None:
    env = {**os.environ, "COCOA_DEBUG": "1"} if how.startswith("COCOA") else dict(os.environ)
    extra = ["--debug"] if how == "--debug" else []
    proc = subprocess.run([sys.executable, str(SCRIPTS / "run_bc.py"), "--task", "nope", *extra],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("offlinerlkit.utils.tasks.TaskError: "
                                                            "unknown task 'nope'")


def test_a_diverged_training_ends_with_one_line_and_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from offlinerlkit.utils.cli import run_main

    data = _data()
    data["actions"][:] = np.nan  # data given in memory are not read by the file checks
    cfg = parse_config(run_bc.BCConfig, ARGV + ["--log_dir", str(tmp_path / "log")])
    monkeypatch.setattr(sys, "argv", ["run_bc.py"])
    with pytest.raises(SystemExit) as info:
        run_main(lambda: run_bc.main(cfg, dataset=data))
    assert info.value.code == 1
    line = _one_line_error(capsys.readouterr().err, "run_bc")
    assert "non-finite training metrics at epoch 1, gradient step 0" in line
    assert not list((tmp_path / "log").rglob("policy_*.pt"))


def test_a_bug_keeps_its_traceback_and_ctrl_c_ends_quietly(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from offlinerlkit.utils.cli import run_main

    monkeypatch.setattr(sys, "argv", ["script.py"])

    def buggy() -> None:
        return [][1]

    with pytest.raises(IndexError):
        run_main(buggy)

    def numpy_bug() -> None:
        np.zeros(3) + np.zeros(4)  # a ValueError raised outside cocoa-rl's code is a bug

    with pytest.raises(ValueError, match="broadcast"):
        run_main(numpy_bug)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        run_main(interrupted)
    assert info.value.code == 130
    assert capsys.readouterr().err == "script.py: error: interrupted\n"
