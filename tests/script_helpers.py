"""Shared by the script tests: running a `run_example` script as a user would (in a fresh
interpreter), the flags of a tiny pipeline run, and fake run folders with known numbers.

No test module imports another; what several of them need lives here.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

#: Flags that shrink every stage of a pipeline run to seconds on a CPU.
TINY_POLICY = ["--epoch", "1", "--step_per_epoch", "2", "--batch_size", "16", "--eval_episodes", "1",
               "--hidden_dims", "16", "16", "--tr_hidden_dims", "8", "8", "--embedding_dim", "2"]
TINY_MODELS = ["--dynamics_hidden_dims", "16", "16", "--dynamics_weight_decay", "0", "0", "0",
               "--num_ensemble", "3", "--num_elites", "2", "--dynamics_max_epochs", "2"]
TINY_SEEKER = ["--seeker.rollout_length", "3", "--seeker.asp_epoch", "2",
               "--seeker.anchor_seeker_hidden_dims", "16", "16"]
TINY = TINY_POLICY + TINY_MODELS + TINY_SEEKER


def run_script_without(module: str, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script args...` where `module` cannot be imported, as if it were not installed."""
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; "
            f"sys.path.insert(0, {str(script.parent)!r}); "
            f"sys.argv = [{script.name!r}, *{list(args)!r}]; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


D4RL_SOURCE = "/data/d4rl/hopper_medium-v2.hdf5 ($D4RL_DATASET_DIR)"
REPLICA_SOURCE = "cocoa-rl replica (locally made, not D4RL): /data/r/hopper_medium-v2.hdf5 (x)"
#: an algorithm-specific config key, as each script writes it
SIGNATURE = {"cql": {"cql_weight": 5.0}, "iql": {"expectile": 0.7},
             "mopo": {"uncertainty_mode": "aleatoric"}, "mobile": {"num_q_ensemble": 2}}


def fake_run(root: Path, task: str, algo: str, variant: str, seed: int, scores: list[float], *,
             source: str = D4RL_SOURCE, stamp: str = "20240101-000000", finished: bool = True,
             step: int = 1000, repeat_last: int = 0) -> Path:
    """A policy run folder as the scripts write it: hyper_param.json and the progress CSV.

    `eval/last_10_performance` is the mean of the last 10 scores, as the trainer logs it;
    `repeat_last` appends that many trailing rows again (a resumed run's duplicate epochs).
    """
    folder = f"{algo}_cocoa" if variant == "cocoa" else algo
    run = root / task.replace(":", "-") / folder / f"seed_{seed}_{stamp}"
    (run / "record").mkdir(parents=True)
    (run / "model").mkdir()
    cocoa = {"cocoa": True, "anchor_mode": "rollout"} if variant == "cocoa" else {"cocoa": False}
    record = {"config": {"task": task, "seed": seed, "epoch": len(scores), **SIGNATURE[algo]},
              "dataset_source": source, "cocoa": cocoa}
    (run / "record" / "hyper_param.json").write_text(json.dumps(record))
    rows = []
    for i, score in enumerate(scores):
        last = scores[max(0, i - 9):i + 1]
        rows.append({"timestep": (i + 1) * step, "eval/normalized_episode_reward": score,
                     "eval/last_10_performance": float(np.mean(last)), "loss/actor": 1.0})
    rows += rows[len(rows) - repeat_last:] if repeat_last else []
    with open(run / "record" / "policy_training_progress.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if finished:
        (run / "model" / "policy.pth").write_bytes(b"")
    return run
