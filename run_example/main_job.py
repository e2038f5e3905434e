"""The main job: the whole COCOA pipeline on data of a shipped behaviour policy, no network.

    python run_example/main_job.py

1. samples a hopper `medium` dataset from the behaviour policy that ships with the package
   (trained by D4RL's protocol: `make_dataset.py --policies shipped`), into `<log_dir>/data`;
   for a robot without shipped policies (or with `--policies train`) it trains a small online
   SAC first (`--train_steps`), whose "medium" policy is far weaker than D4RL's;
2. trains behaviour cloning, then for each algorithm (default IQL) the forward dynamics, the
   anchor seeker (reverse dynamics, divergent reverse rollouts, behaviour cloning) and the
   policy alone and with COCOA, evaluating in the simulator after every epoch
   (`run_pipeline.py`, which reuses finished artifacts);
3. prints what was learnt next to the behaviour policy's own score, then the result table
   (`make_table.py`) next to the paper's numbers.

The defaults take about 15 minutes on 2 CPU cores and leave every output file of a normal run
under `--log_dir`. Budgets are options; they are far below the paper's 1M gradient steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import make_dataset
import make_table
import run_pipeline

from offlinerlkit.algorithms import algorithm, baseline_algorithms
from offlinerlkit.datasets import read_hdf5_metadata
from offlinerlkit.datasets.replica import replica_file_name
from offlinerlkit.pipeline import find_policy_runs
from offlinerlkit.pipeline.results import PolicyRun
from offlinerlkit.replica.from_policies import SHIPPED, shipped_robots
from offlinerlkit.utils.cli import opt, run_main


@dataclass(frozen=True)
class MainJobConfig:
    """The main job (small budgets) on a shipped behaviour policy's data."""

    robot: str = opt("hopper", "hopper, halfcheetah or walker2d (with shipped policies)")
    level: str = opt("medium", "dataset level (random, medium, expert, medium-expert)")
    policies: str = opt("auto", "behaviour policies: 'shipped', a make_dataset.py out folder, "
                                "'train' (a short SAC run, --train_steps), or 'auto' (shipped "
                                "when the robot has them, else train)")
    train_steps: int = opt(12000, "online SAC steps of --policies train")
    algos: tuple[str, ...] = opt(("iql",), "algorithms trained alone and with COCOA")
    bc: bool = opt(True, "also train the baselines without a COCOA variant (behaviour cloning)")
    seed: int = opt(0, "seed of the data and of every run")
    log_dir: str = opt("log/main_job", "where the data and every run go")
    num_samples: int = opt(100_000, "dataset rows")
    epoch: int = opt(35, "policy epochs")
    step_per_epoch: int = opt(1000, "gradient steps per epoch")
    eval_episodes: int = opt(10, "evaluation episodes per epoch")
    dynamics_max_epochs: int = opt(15, "cap on dynamics training epochs (forward and reverse)")
    seeker_epochs: int = opt(10, "anchor seeker pretraining epochs (at most)", "--asp_epoch")
    device: str = opt("auto", "torch device")
    threads: int = opt(2, "torch CPU threads")
    progress: bool = opt(True, "show progress bars")


def _finished(runs: list[PolicyRun], algo: str, epochs: int) -> Optional[PolicyRun]:
    done = [r for r in runs if r.algo == algo and r.finished and r.target_epochs == epochs]
    return max(done, key=lambda r: r.mtime) if done else None


def summary(data_file: Path, runs: list[PolicyRun]) -> str:
    """What was learnt: each run's final and last-10 normalised score, and its fraction of the
    behaviour policy's own deterministic score (the dataset's `eval_return_normalized`)."""
    raw = read_hdf5_metadata(data_file)
    behaviour = float(raw["metadata/eval_return_normalized"])
    data = float(raw["metadata/behaviour_return_normalized"])
    lines = ["| policy | steps | final score | last-10 score | of behaviour |",
             "|---|---:|---:|---:|---:|",
             f"| behaviour policy (deterministic, {data_file.name}) | | {behaviour:.1f} | | 100 % |",
             f"| the dataset's episodes (stochastic behaviour) | | {data:.1f} | | "
             f"{100 * data / behaviour:.0f} % |"]
    for run in sorted(runs, key=lambda r: (algorithm(r.algo).has_cocoa, r.algo, r.variant)):
        entry = algorithm(run.algo)
        name = entry.label + ("" if not entry.has_cocoa
                              else " + COCOA" if run.variant == "cocoa" else " alone")
        final = float(run.scores[-1]) if len(run.scores) else math.nan
        steps = int(run.timesteps[-1]) if len(run.timesteps) else 0
        lines.append(f"| {name} | {steps:,} | {final:.1f} | {run.last_10:.1f} | "
                     f"{100 * run.last_10 / behaviour:.0f} % |")
    return "\n".join(lines)


def main(cfg: MainJobConfig) -> Path:
    """Run the job; returns the log folder."""
    start = time.time()
    log = Path(cfg.log_dir)
    data_dir = log / "data"
    task = f"replica:{cfg.robot}-{cfg.level}-v2"
    data_file = data_dir / replica_file_name(f"{cfg.robot}-{cfg.level}-v2")
    source = cfg.policies
    if source == "auto":
        source = SHIPPED if cfg.robot in shipped_robots() else "train"
    if data_file.is_file():
        print(f"[1/4] reusing the dataset {data_file}", flush=True)
    elif source == "train":
        print(f"[1/4] no shipped {cfg.robot} policies: training a weak behaviour policy "
              f"({cfg.train_steps} online SAC steps) and sampling {cfg.num_samples} "
              f"{cfg.level} rows into {data_dir}", flush=True)
        make_dataset.main(make_dataset.MakeDatasetConfig(
            robot=cfg.robot, levels=(cfg.level,), train_steps=cfg.train_steps,
            num_samples=cfg.num_samples, seed=cfg.seed, out_dir=str(data_dir), device=cfg.device,
            threads=cfg.threads, progress=cfg.progress,
            start_steps=min(5000, cfg.train_steps // 3), eval_every=max(cfg.train_steps // 8, 1)))
    else:
        print(f"[1/4] sampling {cfg.num_samples} rows of {cfg.robot} {cfg.level} from the "
              f"{source} behaviour policy into {data_dir}", flush=True)
        make_dataset.main(make_dataset.MakeDatasetConfig(
            robot=cfg.robot, levels=(cfg.level,), policies=source,
            num_samples=cfg.num_samples, seed=cfg.seed, out_dir=str(data_dir),
            device=cfg.device, threads=cfg.threads, progress=cfg.progress))
    common = dict(task=task, dataset_path=str(data_dir), seed=cfg.seed, log_dir=str(log),
                  device=cfg.device, threads=cfg.threads, progress=cfg.progress, epoch=cfg.epoch,
                  step_per_epoch=cfg.step_per_epoch, eval_episodes=cfg.eval_episodes)
    baselines = baseline_algorithms() if cfg.bc else ()
    for name in baselines:
        if _finished(find_policy_runs([log]), name, cfg.epoch) is None:
            print(f"[2/4] {algorithm(name).label} on {task}", flush=True)
            main, config_cls = run_pipeline.policy_script(name)
            main(config_cls(**common))
        else:
            print(f"[2/4] reusing the finished {algorithm(name).label} run", flush=True)
    for algo in cfg.algos:
        for variant in ("alone", "cocoa"):
            print(f"[3/4] {algo} {variant} on {task}", flush=True)
            run_pipeline.run([
                "--task", task, "--dataset_path", str(data_dir), "--algo", algo,
                "--variant", variant, "--seed", str(cfg.seed), "--log_dir", str(log),
                "--device", cfg.device, "--threads", str(cfg.threads),
                "--progress", str(cfg.progress), "--epoch", str(cfg.epoch),
                "--step_per_epoch", str(cfg.step_per_epoch),
                "--eval_episodes", str(cfg.eval_episodes),
                "--dynamics_max_epochs", str(cfg.dynamics_max_epochs),
                "--seeker.seeker_epochs", str(cfg.seeker_epochs)])
    runs = [r for r in find_policy_runs([log]) if r.task == task
            and r.algo in (*cfg.algos, *baselines) and r.target_epochs == cfg.epoch]
    latest: dict[tuple[str, str], PolicyRun] = {}
    for run in sorted(runs, key=lambda r: r.mtime):
        latest[(run.algo, run.variant)] = run
    print(f"[4/4] what was learnt (D4RL-normalised scores; {cfg.epoch} x {cfg.step_per_epoch} "
          f"gradient steps, {cfg.eval_episodes} evaluation episodes per epoch)\n", flush=True)
    print(summary(data_file, list(latest.values())) + "\n", flush=True)
    make_table.main(make_table.TableConfig(roots=(str(log),), csv=str(log / "table.csv"),
                                           markdown=str(log / "table.md")))
    print(f"done in {(time.time() - start) / 60:.1f} min; everything is under {log}", flush=True)
    return log


if __name__ == "__main__":
    run_main(main, MainJobConfig)
