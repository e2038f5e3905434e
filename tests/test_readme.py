"""Every `python run_example/...` command in README.md runs, shortened, on simulator-made data."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sim_data import write_task_file

ROOT = Path(__file__).resolve().parents[1]
# Flags appended to each README command so it finishes in seconds (later flags win in argparse).
SHORTEN = {
    "run_bc.py": ["--epoch", "1", "--step_per_epoch", "2", "--eval_episodes", "1",
                  "--batch_size", "8", "--hidden_dims", "16", "16"],
    "run_dynamics.py": ["--dynamics_max_epochs", "2", "--dynamics_hidden_dims", "16", "16",
                        "--dynamics_weight_decay", "0", "0", "0"],
}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("python run_example/")]


def test_readme_lists_script_commands() -> None:
    assert readme_commands(), "README.md has no `python run_example/...` command"


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command)
    script = Path(argv[1]).name
    assert script in SHORTEN, f"add shortening flags for {script} to this test"
    task = argv[argv.index("--task") + 1]
    data_dir = tmp_path / "d4rl"
    write_task_file(data_dir, task)
    env = {**os.environ, "D4RL_DATASET_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    full = [sys.executable, str(ROOT / argv[1]), *argv[2:], *SHORTEN[script],
            "--device", "cpu", "--progress", "False"]
    proc = subprocess.run(full, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((tmp_path / "log" / task).glob("*/seed_*"))
    assert runs and all((r / "record" / "hyper_param.json").is_file() for r in runs)
