"""Every `python run_example/...` command in README.md runs, in order, shortened, on simulator data.

Commands run as a user would type them (from a fresh working directory, with the task's file in
`D4RL_DATASET_DIR`); flags that only shorten the run are appended (argparse keeps the last
value), and a `<time>` placeholder in a path is resolved to the run folder an earlier command made.
Each command is its own test; one whose optional extra is not installed is skipped with the
install command as the reason (`.ci/run` installs the extras and runs them).
The set-up and test commands are run by `.ci/run`, exactly as written; their shape is checked here.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from readme_commands import readme_lines
from script_helpers import TINY
from sim_data import write_task_file

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--epoch", "1", "--step_per_epoch", "2", "--eval_episodes", "1", "--batch_size", "16"]
TINY_COCOA = ["--tr_hidden_dims", "8", "8", "--embedding_dim", "2"]
#: The sizes of the tiny dynamics, in the original's spellings (CQL and IQL check them on load).
DYNAMICS_SIZES = ["--dynamics_hidden_dims", "16", "16", "--n_ensemble", "3", "--n_elites", "2"]
TINY_DYNAMICS = ["--dynamics_max_epochs", "2", "--dynamics_weight_decay", "0", "0", "0",
                 *DYNAMICS_SIZES]
TINY_PIPELINE = list(TINY)
#: Scripts that train (they take --device and --progress).
TRAINING = ("run_", "make_dataset.py", "sweep.py", "main_job.py")
SHORTEN = {
    "run_bc.py": FAST + ["--hidden_dims", "16", "16"],
    "run_cql.py": FAST + TINY_COCOA + DYNAMICS_SIZES + ["--hidden_dims", "16", "16",
                                                        "--num_repeat_actions", "2"],
    "run_iql.py": FAST + TINY_COCOA + DYNAMICS_SIZES + ["--hidden_dims", "16", "16"],
    "run_td3bc.py": FAST + TINY_COCOA + DYNAMICS_SIZES + ["--hidden_dims", "16", "16"],
    "run_mopo.py": FAST + TINY_COCOA + ["--hidden_dims", "16", "16", "--rollout_batch_size", "32"]
    + TINY_DYNAMICS,
    "run_mobile.py": FAST + TINY_COCOA + ["--hidden_dims", "16", "16", "--rollout_batch_size", "32"]
    + TINY_DYNAMICS,
    "run_dynamics.py": TINY_DYNAMICS,
    "make_dataset.py": ["--train_steps", "240", "--num_samples", "300", "--hidden_dims", "16", "16",
                        "--batch_size", "16", "--start_steps", "100", "--update_after", "50",
                        "--eval_every", "60", "--eval_episodes", "1", "--final_eval_episodes", "1"],
    "run_pipeline.py": TINY_PIPELINE,
    "sweep.py": TINY_PIPELINE + ["--num_cpus", "2", "--cpus_per_trial", "1"],
    "make_table.py": [],
    "main_job.py": ["--train_steps", "300", "--num_samples", "500", "--epoch", "1",
                    "--step_per_epoch", "5", "--eval_episodes", "1", "--dynamics_max_epochs", "1",
                    "--asp_epoch", "1"],
    "plotter.py": [],
    "run_results.py": ["--tasks", "replica:hopper-medium-v2", "--budgets", "bc=4", "--seeds", "0",
                       "--step_per_epoch", "2", "--eval_episodes", "1", "--num_samples", "500",
                       "--timing_repeats", "1", "--hidden_dims", "16", "16", "--batch_size", "16"],
    "run_anchor_seeker.py": TINY_DYNAMICS + ["--asp_epoch", "2", "--anchor_seeker_hidden_dims", "16", "16"],
}


#: Scripts that need an optional extra: script -> (module it imports, extra that installs it).
EXTRAS = {"sweep.py": ("ray.tune", "ray"), "plotter.py": ("matplotlib", "plot"),
          "run_results.py": ("ray.tune", "ray")}


def readme_commands() -> list[str]:
    return [ln for ln in readme_lines() if ln.startswith("python run_example/")]


def missing_extra(script: str) -> Optional[str]:
    """Why `script` cannot run here (its extra is not installed), or None."""
    if script not in EXTRAS:
        return None
    module, extra = EXTRAS[script]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        found = False
    return None if found else f'{script} needs `pip install -e ".[{extra}]"` ({module} is not installed)'


def _resolve_placeholders(arg: str, cwd: Path) -> str:
    if "<time>" not in arg:
        return arg
    matches = sorted(glob.glob(str(cwd / arg.replace("<time>", "*"))))
    assert matches, f"no run folder matches {arg}: the README command before it should make one"
    return matches[-1]


def _run(command: str, cwd: Path, made: set[str]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command, comments=True)
    script = Path(argv[1]).name
    assert script in SHORTEN, f"add shortening flags for {script} to this test"
    task = (argv[argv.index("--task") + 1] if "--task" in argv
            else argv[argv.index("--tasks") + 1] if "--tasks" in argv else None)
    if task is not None and not task.startswith("replica:") and task not in made:
        write_task_file(cwd / "d4rl", task, num_steps=800)
        made.add(task)
    args = [_resolve_placeholders(a, cwd) for a in argv[2:]]
    full = [sys.executable, str(ROOT / argv[1]), *args, *SHORTEN[script]]
    if script.startswith(TRAINING):
        full += ["--device", "cpu", "--progress", "False"]
    env = {**os.environ, "D4RL_DATASET_DIR": str(cwd / "d4rl"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, object]]:
    """Run every README command once, in order, in one fresh folder: index -> process or reason."""
    cwd = tmp_path_factory.mktemp("readme")
    made: set[str] = set()
    results: dict[int, object] = {}
    for i, command in enumerate(COMMANDS):
        reason = missing_extra(Path(shlex.split(command)[1]).name)
        results[i] = reason if reason else _run(command, cwd, made)
    return cwd, results


def test_readme_has_its_commands() -> None:
    assert len(COMMANDS) >= 6, "README.md lost its `python run_example/...` commands"


@pytest.mark.parametrize("index", range(len(COMMANDS)),
                         ids=[f"{i}-{Path(c.split()[1]).stem}" for i, c in enumerate(COMMANDS)])
def test_readme_command_runs(readme_runs: tuple[Path, dict[int, object]], index: int) -> None:
    _, results = readme_runs
    result = results[index]
    if isinstance(result, str):
        pytest.skip(result)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0, f"{COMMANDS[index]}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def test_readme_commands_leave_their_files(readme_runs: tuple[Path, dict[int, object]]) -> None:
    cwd, results = readme_runs
    runs = [r for r in (cwd / "log").rglob("seed_*") if r.is_dir()]
    # each run_*.py command that ran (not skipped for a missing extra, not a dry run) made a run
    ran = [c for i, c in enumerate(COMMANDS)
           if "run_example/run_" in c and "--dry_run" not in c and not isinstance(results[i], str)]
    assert len(runs) >= len(ran)
    assert all((r / "record" / "hyper_param.json").is_file() for r in runs)
    assert (cwd / "table.csv").is_file()
    plotted = [i for i, c in enumerate(COMMANDS) if "plotter.py" in c and not isinstance(results[i], str)]
    for i in plotted:
        output = shlex.split(COMMANDS[i])[shlex.split(COMMANDS[i]).index("--output") + 1]
        assert (cwd / output).stat().st_size > 0


def test_setup_installs_cpu_torch_before_the_package() -> None:
    """`.ci/run` runs these lines as written; a CPU-only machine needs torch's CPU wheel first."""
    setup = readme_lines("Set-up")
    install = [i for i, ln in enumerate(setup) if ln.startswith("pip install -e")]
    torch_line = [i for i, ln in enumerate(setup) if re.match(r"pip install \"?torch==", ln)]
    assert install and torch_line and torch_line[0] < install[0], setup
    (test_command,) = readme_lines("Tests")
    assert test_command.startswith("python -m pytest tests")
