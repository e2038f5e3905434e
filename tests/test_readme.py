"""Every `python run_example/...` command in README.md runs, in order, shortened, on simulator data.

Commands run as a user would type them (from a fresh working directory, with the task's file in
`D4RL_DATASET_DIR`); flags that only shorten the run are appended (argparse keeps the last
value), and a `<time>` placeholder in a path is resolved to the run folder an earlier command made.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from sim_data import write_task_file
from test_pipeline import TINY

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--epoch", "1", "--step_per_epoch", "2", "--eval_episodes", "1", "--batch_size", "16"]
TINY_COCOA = ["--tr_hidden_dims", "8", "8", "--embedding_dim", "2"]
TINY_DYNAMICS = ["--dynamics_max_epochs", "2", "--dynamics_hidden_dims", "16", "16",
                 "--dynamics_weight_decay", "0", "0", "0", "--n_ensemble", "3", "--n_elites", "2"]
TINY_PIPELINE = list(TINY)
#: Scripts that train (they take --device and --progress).
TRAINING = ("run_", "make_dataset.py", "sweep.py", "main_job.py")
SHORTEN = {
    "run_bc.py": FAST + ["--hidden_dims", "16", "16"],
    "run_cql.py": FAST + TINY_COCOA + ["--hidden_dims", "16", "16", "--num_repeat_actions", "2"],
    "run_iql.py": FAST + TINY_COCOA + ["--hidden_dims", "16", "16"],
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
    "run_anchor_seeker.py": TINY_DYNAMICS + ["--asp_epoch", "2", "--anchor_seeker_hidden_dims", "16", "16"],
}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("python run_example/")]


def _resolve_placeholders(arg: str, cwd: Path) -> str:
    if "<time>" not in arg:
        return arg
    matches = sorted(glob.glob(str(cwd / arg.replace("<time>", "*"))))
    assert matches, f"no run folder matches {arg}: the README command before it should make one"
    return matches[-1]


def test_readme_commands_run_in_order(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) >= 6, "README.md lost its `python run_example/...` commands"
    env = {**os.environ, "D4RL_DATASET_DIR": str(tmp_path / "d4rl"), "PYTHONUNBUFFERED": "1"}
    made: set[str] = set()
    for command in commands:
        argv = shlex.split(command)
        script = Path(argv[1]).name
        assert script in SHORTEN, f"add shortening flags for {script} to this test"
        task = (argv[argv.index("--task") + 1] if "--task" in argv
                else argv[argv.index("--tasks") + 1] if "--tasks" in argv else None)
        if task is not None and not task.startswith("replica:") and task not in made:
            write_task_file(tmp_path / "d4rl", task, num_steps=800)
            made.add(task)
        args = [_resolve_placeholders(a, tmp_path) for a in argv[2:]]
        full = [sys.executable, str(ROOT / argv[1]), *args, *SHORTEN[script]]
        if script.startswith(TRAINING):
            full += ["--device", "cpu", "--progress", "False"]
        proc = subprocess.run(full, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    runs = list((tmp_path / "log").glob("*/*/seed_*"))
    assert len(runs) >= sum("run_example/run_" in c for c in commands)
    assert all((r / "record" / "hyper_param.json").is_file() for r in runs)
    assert (tmp_path / "table.csv").is_file() and (tmp_path / "curves.png").stat().st_size > 0
