"""The main job on an embedded default: the whole COCOA pipeline with no data and no network.

    python run_example/main_job.py

1. makes a small D4RL-protocol dataset of hopper in the simulator (online SAC, then the
   `medium` level: the policy at about a third of the final return), into `<log_dir>/data`;
2. for each algorithm (default IQL), trains the forward dynamics, the anchor seeker (reverse
   dynamics, divergent reverse rollouts, behaviour cloning) and the policy alone and with COCOA,
   evaluating in the simulator after every epoch (`run_pipeline.py`, which reuses artifacts);
3. prints the result table (`make_table.py`) next to the paper's numbers.

The defaults take about 10-15 minutes on 2 CPU cores and leave every output file of a normal run
under `--log_dir`. Budgets are options; they are far below the paper's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import make_dataset
import make_table
import run_pipeline

from offlinerlkit.utils.cli import opt, parse_config


@dataclass(frozen=True)
class MainJobConfig:
    """The embedded main job (small budgets)."""

    robot: str = opt("hopper", "hopper, halfcheetah or walker2d")
    level: str = opt("medium", "dataset level (random, medium, expert, medium-replay, medium-expert)")
    algos: tuple[str, ...] = opt(("iql",), "algorithms (cql, iql, mopo, mobile)")
    seed: int = opt(0, "seed of the data and of every run")
    log_dir: str = opt("log/main_job", "where the data and every run go")
    train_steps: int = opt(12000, "online SAC steps that make the behaviour policies")
    num_samples: int = opt(20000, "dataset rows")
    epoch: int = opt(5, "policy epochs")
    step_per_epoch: int = opt(200, "gradient steps per epoch")
    eval_episodes: int = opt(5, "evaluation episodes per epoch")
    dynamics_max_epochs: int = opt(15, "cap on dynamics training epochs (forward and reverse)")
    asp_epoch: int = opt(10, "anchor seeker pretraining epochs (at most)")
    device: str = opt("auto", "torch device")
    threads: int = opt(2, "torch CPU threads")
    progress: bool = opt(True, "show progress bars")


def main(cfg: MainJobConfig) -> Path:
    """Run the job; returns the log folder."""
    start = time.time()
    log = Path(cfg.log_dir)
    data_dir = log / "data"
    task = f"replica:{cfg.robot}-{cfg.level}-v2"
    if not any(data_dir.glob(f"{cfg.robot}_{cfg.level.replace('-', '_')}-v2-replica.hdf5")):
        print(f"[1/3] making a {cfg.level} dataset of {cfg.robot} ({cfg.train_steps} SAC steps, "
              f"{cfg.num_samples} rows) in {data_dir}", flush=True)
        make_dataset.main(make_dataset.MakeDatasetConfig(
            robot=cfg.robot, levels=(cfg.level,), train_steps=cfg.train_steps,
            num_samples=cfg.num_samples, seed=cfg.seed, out_dir=str(data_dir), device=cfg.device,
            threads=cfg.threads, progress=cfg.progress,
            start_steps=min(5000, cfg.train_steps // 3), eval_every=max(cfg.train_steps // 8, 1)))
    else:
        print(f"[1/3] reusing the dataset in {data_dir}", flush=True)
    for algo in cfg.algos:
        for variant in ("alone", "cocoa"):
            print(f"[2/3] {algo} {variant} on {task}", flush=True)
            run_pipeline.run([
                "--task", task, "--dataset_path", str(data_dir), "--algo", algo,
                "--variant", variant, "--seed", str(cfg.seed), "--log_dir", str(log),
                "--device", cfg.device, "--threads", str(cfg.threads),
                "--progress", str(cfg.progress), "--epoch", str(cfg.epoch),
                "--step_per_epoch", str(cfg.step_per_epoch),
                "--eval_episodes", str(cfg.eval_episodes),
                "--dynamics_max_epochs", str(cfg.dynamics_max_epochs),
                "--seeker.asp_epoch", str(cfg.asp_epoch)])
    print("[3/3] results (normalised score, last-10 evaluations; budgets far below the paper's)",
          flush=True)
    make_table.main(make_table.TableConfig(roots=(str(log),), csv=str(log / "table.csv"),
                                           markdown=str(log / "table.md")))
    print(f"done in {(time.time() - start) / 60:.1f} min; everything is under {log}", flush=True)
    return log


if __name__ == "__main__":
    main(parse_config(MainJobConfig))
