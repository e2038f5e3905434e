"""The results grid on replica data: datasets, every run (Ray sweeps), and docs/RESULTS.md.

    python run_example/run_results.py --dry_run          # the cells, what is done, the estimate
    python run_example/run_results.py                    # hopper, the issue's budgets, 2 seeds
    python run_example/run_results.py --tasks replica:hopper-medium-v2 --budgets iql=100000 \
        iql+cocoa=100000 --seeds 0 1 2 3

1. Makes the replica datasets the tasks need that are not in `--data_dir` yet, from the shipped
   behaviour policies (`make_dataset.py --policies shipped`; medium-replay re-runs online SAC up
   to the medium policy's step: the costly one).
2. Runs the grid, tasks x `--budgets` x `--seeds`, each (algorithm, variant) at its own number
   of gradient steps: one Ray Tune sweep (`sweep.py`) per algorithm and budget, one torch thread
   per run, `--parallel` runs at once. Every run is a pipeline (`run_pipeline.py`), so running
   the command again skips finished runs, resumes unfinished ones from their checkpoints
   (`--checkpoint_freq`) and reuses the dynamics and anchor seekers (each invocation is a new
   Tune experiment; the pipelines decide what is done).
3. Writes `--page` (docs/RESULTS.md) and the learning curves (`--figures_dir`) from the run
   folders the pipeline says belong to this grid.

Before starting it prints each cell's state and a compute estimate made from speeds measured
here and now (`benchmarks/grid_rates.py`). Flags that are not this script's go to every run's
`run_pipeline.py` (where the run's algorithm has them), as with `sweep.py`.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import make_dataset
import run_pipeline
import sweep
import torch

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.datasets import read_hdf5_metadata
from offlinerlkit.datasets.replica import replica_file_name, split_replica_task
from offlinerlkit.pipeline import load_policy_run, plot_learning_curves
from offlinerlkit.pipeline.grid import (
    Budget,
    Estimate,
    GridCell,
    Rates,
    dynamics_seconds,
    estimate,
    format_seconds,
    grid_cells,
)
from offlinerlkit.pipeline.report import artifact_wall_seconds, collect_rows, results_markdown
from offlinerlkit.pipeline.results import PolicyRun, paper_task_key
from offlinerlkit.pipeline.runner import PlannedWork, planned_work
from offlinerlkit.replica.from_policies import SHIPPED, SHIPPED_ROOT
from offlinerlkit.utils.cli import opt, parse_config, run_main
from offlinerlkit.utils.extras import MissingExtraError
from offlinerlkit.utils.tasks import parse_task

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = ("replica:hopper-medium-v2", "replica:hopper-medium-replay-v2",
                 "replica:hopper-medium-expert-v2")
#: Issue 17's budgets: BC, IQL, IQL+COCOA 100k steps; MOPO, MOPO+COCOA 50k; CQL 20k.
DEFAULT_BUDGETS = ("bc=100000", "iql=100000", "iql+cocoa=100000", "mopo=50000",
                   "mopo+cocoa=50000", "cql=20000")


@dataclass(frozen=True)
class ResultsConfig:
    """Run the results grid on replica data and write the results page."""

    tasks: tuple[str, ...] = opt(DEFAULT_TASKS, "replica tasks of the grid")
    budgets: tuple[str, ...] = opt(DEFAULT_BUDGETS, "ALGO=STEPS or ALGO+cocoa=STEPS: gradient "
                                                    "steps of each run of that algorithm/variant")
    seeds: tuple[int, ...] = opt((0, 1), "policy seeds")
    step_per_epoch: int = opt(1000, "gradient steps between evaluations")
    eval_episodes: int = opt(10, "evaluation episodes after each epoch")
    checkpoint_freq: int = opt(10, "epochs between resumable checkpoints")
    dynamics_max_epochs: int = opt(30, "cap on the epochs of each dynamics ensemble (forward, "
                                       "and the seeker's reverse one)")
    seeker_epochs: int = opt(10, "anchor seeker pretraining epochs", "--asp_epoch")
    data_dir: Optional[str] = opt(None, "replica datasets (made here when missing); "
                                        "default <log_dir>/data")
    num_samples: int = opt(1_000_000, "rows of each sampled level (D4RL: 1M)")
    log_dir: str = opt("log/results", "run folders, Tune's state and the data")
    parallel: int = opt(2, "runs at once (one CPU and one torch thread each)")
    page: str = opt("docs/RESULTS.md", "the results page to write")
    figures_dir: str = opt("docs/results", "where the learning-curve PNG goes")
    device: str = opt("cpu", "torch device of every run")
    dry_run: bool = opt(False, "print the cells, their state and the estimate; run nothing")
    report_only: bool = opt(False, "only write the page from the finished runs")
    timing_repeats: int = opt(10, "timed updates per algorithm for the estimate")
    progress: bool = opt(False, "progress bars of the dataset maker")

    def __post_init__(self) -> None:
        for task in self.tasks:
            is_replica, name = split_replica_task(task)
            if not is_replica:
                raise ValueError(f"--tasks: {task!r} is not a replica task (replica:<task>)")
            parse_task(name)
        if len({parse_task(split_replica_task(t)[1]).robot for t in self.tasks}) != 1:
            raise ValueError("--tasks: one robot per grid (its measured speeds make the estimate)")
        if self.parallel < 1 or self.timing_repeats < 1:
            raise ValueError("--parallel and --timing_repeats must be at least 1")


@dataclass(frozen=True)
class Grid:
    """The grid of one command: its cells and the command line of each cell's pipeline."""

    cfg: ResultsConfig
    forwarded: tuple[str, ...]

    @property
    def budgets(self) -> list[Budget]:
        return [Budget.parse(b) for b in self.cfg.budgets]

    @property
    def cells(self) -> list[GridCell]:
        return grid_cells(self.cfg.tasks, self.budgets, self.cfg.seeds,
                          step_per_epoch=self.cfg.step_per_epoch)

    @property
    def data_dir(self) -> Path:
        return Path(self.cfg.data_dir or Path(self.cfg.log_dir) / "data").expanduser()

    def flags(self, algo: str, epochs: int) -> list[str]:
        """What every run of `algo` gets besides its grid point (sweep.py's forwarded flags)."""
        cfg = self.cfg
        argv = ["--dataset_path", str(self.data_dir.resolve()), "--device", cfg.device,
                "--epoch", str(epochs), "--step_per_epoch", str(cfg.step_per_epoch),
                "--eval_episodes", str(cfg.eval_episodes),
                "--checkpoint_freq", str(cfg.checkpoint_freq),
                "--dynamics_max_epochs", str(cfg.dynamics_max_epochs),
                "--seeker.seeker_epochs", str(cfg.seeker_epochs)]
        groups = run_pipeline.split_flags(list(self.forwarded))
        unknown = set(run_pipeline.unknown_flags(groups, [algo]))
        return argv + [t for g in groups if g[0] not in unknown for t in g]

    def pipeline_argv(self, cell: GridCell) -> list[str]:
        """The `run_pipeline.py` command line of a cell, as its sweep trial builds it."""
        return sweep.trial_argv({"task": cell.task, "algo": cell.algo, "variant": cell.variant,
                                 "seed": cell.seed, "log_dir": str(Path(self.cfg.log_dir).resolve()),
                                 "argv": self.flags(cell.algo, cell.epochs)
                                 + ["--progress", "False", "--threads", "1"]})

    def data_file(self, task: str) -> Path:
        return self.data_dir / replica_file_name(split_replica_task(task)[1])


def parse_args(argv: Sequence[str]) -> Grid:
    """This script's options, and the flags for the runs (refused if no algorithm has them)."""
    own_flags = {f"--{name}" for name in ResultsConfig.__dataclass_fields__} | {"-h", "--help"}
    own: list[str] = []
    forwarded: list[str] = []
    for group in run_pipeline.split_flags(argv):
        (own if group[0] in own_flags else forwarded).extend(group)
    grid = Grid(parse_config(ResultsConfig, own), tuple(forwarded))
    algos = list(dict.fromkeys(b.algo for b in grid.budgets))
    bad = run_pipeline.unknown_flags(run_pipeline.split_flags(forwarded), algos)
    if bad:
        raise SystemExit(f"run_results.py: error: {bad} are options of no stage of {algos}")
    if not grid.cells:  # also checks the budgets against --step_per_epoch before anything runs
        raise SystemExit("run_results.py: error: the grid has no cells")
    return grid


# --------------------------------------------------------------------------- state and estimate

def cell_work(grid: Grid, cell: GridCell) -> PlannedWork:
    """What the pipeline would do for `cell` now (everything, while its data is missing)."""
    cfg, forwarded = run_pipeline.parse_args(grid.pipeline_argv(cell))
    plan = run_pipeline.build_plan(cfg, forwarded, strict=False)
    if not grid.data_file(cell.task).is_file():
        return PlannedWork("train" if plan.dynamics else None,
                           "train" if plan.anchor_seeker else None, "train")
    return planned_work(plan)


def _level_rows(level: str, num_samples: int, robot: str) -> int:
    if level == "medium-expert":
        return 2 * num_samples
    if level == "medium-replay":  # SAC's buffer up to the medium policy's step
        provenance = json.loads((SHIPPED_ROOT / "policies" / robot / "provenance.json").read_text())
        return int(provenance["levels"]["medium"]["train_step"])
    return num_samples


def make_estimate(grid: Grid, work: dict[GridCell, PlannedWork], rates: Rates) -> Estimate:
    """Seconds of the work left: policy runs, dynamics and seekers to train, data to make."""
    cfg = grid.cfg
    artifacts: list[tuple[str, float]] = []
    data: list[tuple[str, float]] = []
    for task in cfg.tasks:
        info = parse_task(split_replica_task(task)[1])
        rows = _level_rows(info.level, cfg.num_samples, info.robot)
        one_fit = dynamics_seconds(rows, rates, max_epochs=cfg.dynamics_max_epochs)
        plans = [w for c, w in work.items() if c.task == task]
        dynamics = {w.dynamics for w in plans}
        if dynamics & {"train", "resume"}:
            artifacts.append((f"forward dynamics {task}"
                              + (" (resumes a stopped run)" if "resume" in dynamics else ""),
                              one_fit))
        seekers = {w.anchor_seeker for w in plans}
        if seekers & {"train", "resume"}:  # reverse dynamics + pretraining
            artifacts.append((f"anchor seeker {task} (about two dynamics fits"
                              + ("; resumes a stopped run)" if "resume" in seekers else ")"),
                              2 * one_fit))
        if not grid.data_file(task).is_file():
            seconds = (rows / rates.sac_steps if info.level == "medium-replay"
                       else rows / rates.env_steps)
            data.append((f"dataset {task}", seconds))
    return estimate([(c, w.policy, w.completed_epochs) for c, w in work.items()], rates,
                    eval_episodes=cfg.eval_episodes, artifacts=artifacts, data=data,
                    parallel=cfg.parallel)


def measure(grid: Grid) -> Rates:
    """The speeds of this machine, one torch thread (`benchmarks/grid_rates.py`)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts' own folder
    from grid_rates import measure_rates

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pairs = list(dict.fromkeys((b.algo, b.variant) for b in grid.budgets))
        task = parse_task(split_replica_task(grid.cfg.tasks[0])[1])
        return measure_rates(task, pairs, repeats=grid.cfg.timing_repeats,
                             device=torch.device(grid.cfg.device))
    finally:
        torch.set_num_threads(threads)


def print_plan(grid: Grid, work: dict[GridCell, PlannedWork], est: Estimate, rates: Rates) -> None:
    print("measured here, one torch thread: " + ", ".join(
        f"{a}{'+cocoa' if v == 'cocoa' else ''} {r:.1f} steps/s"
        for (a, v), r in rates.updates.items())
        + f"; simulator {rates.env_steps:.0f} steps/s; dynamics {rates.dynamics_steps:.1f} "
          f"steps/s; online SAC {rates.sac_steps:.0f} steps/s")
    print(f"\n{'cell':<58}{'steps':>9}  {'policy run':<16}{'estimate':>10}")
    for item in est.cells:
        state = {"skip": "finished", "resume": f"resume {item.completed_epochs}/{item.cell.epochs}",
                 "train": "to train"}[item.action]
        print(f"{item.cell.label:<58}{item.cell.steps:>9,}  {state:<16}"
              f"{format_seconds(item.seconds):>10}")
    for name, seconds in est.data + est.artifacts:
        print(f"{name:<83}{format_seconds(seconds):>10}")
    done = sum(w.policy == "skip" for w in work.values())
    print(f"\n{len(work)} cells, {done} finished. Estimate of what is left: "
          f"{format_seconds(est.total)} of one thread, about {format_seconds(est.wall)} wall "
          f"with {grid.cfg.parallel} runs at once (the paper's network sizes; evaluation "
          "counted at full 1000-step episodes, dynamics at their epoch cap: upper bounds; "
          "MOPO's model rollouts not counted)", flush=True)


# --------------------------------------------------------------------------- running

def make_data(grid: Grid) -> None:
    """Sample the missing datasets from the shipped behaviour policies."""
    missing: dict[str, list[str]] = {}
    for task in grid.cfg.tasks:
        if not grid.data_file(task).is_file():
            info = parse_task(split_replica_task(task)[1])
            missing.setdefault(info.robot, []).append(info.level)
    for robot, levels in missing.items():
        print(f"making {robot} {', '.join(levels)} from the shipped behaviour policies into "
              f"{grid.data_dir}", flush=True)
        make_dataset.main(make_dataset.MakeDatasetConfig(
            robot=robot, levels=tuple(levels), policies=SHIPPED, num_samples=grid.cfg.num_samples,
            out_dir=str(grid.data_dir), device=grid.cfg.device, threads=1,
            progress=grid.cfg.progress))


def sweep_argv(grid: Grid, budget_group: list[Budget], stamp: str) -> list[str]:
    """The `sweep.py` command line of one algorithm's budget (its variants together).

    Each invocation is a new Tune experiment (`stamp`): the pipelines, not Tune's trial states,
    decide what is finished, so a run stopped in any way (a killed process, a deleted file)
    is resumed from its own checkpoint, and a finished one is skipped in a second.
    """
    cfg, first = grid.cfg, budget_group[0]
    flags = grid.flags(first.algo, first.steps // cfg.step_per_epoch)
    key = json.dumps([cfg.tasks, [asdict(b) for b in budget_group], cfg.seeds, flags])
    name = f"results_{first.algo}_{hashlib.sha256(key.encode()).hexdigest()[:10]}_{stamp}"
    return ["--tasks", *cfg.tasks, "--algos", first.algo,
            "--variants", *[b.variant for b in budget_group],
            "--seeds", *map(str, cfg.seeds), "--log_dir", cfg.log_dir, "--name", name,
            "--num_cpus", str(cfg.parallel), "--cpus_per_trial", "1",
            "--max_concurrent_trials", str(cfg.parallel), *flags]


def run_grid(grid: Grid, work: dict[GridCell, PlannedWork]) -> list[dict[str, Any]]:
    """One sweep per (algorithm, budget) with unfinished cells; returns the sweeps' rows."""
    groups: dict[tuple[str, int], list[Budget]] = {}
    for budget in grid.budgets:
        groups.setdefault((budget.algo, budget.steps), []).append(budget)
    rows: list[dict[str, Any]] = []
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for (algo, steps), budgets in groups.items():
        labels = " ".join(b.label for b in budgets)
        cells = [c for c in work if c.algo == algo and c.steps == steps]
        if all(work[c].policy == "skip" for c in cells):
            print(f"{labels} at {steps:,} steps: all {len(cells)} runs finished; skipped",
                  flush=True)
            continue
        print(f"{labels} at {steps:,} steps: {len(cells)} runs on Ray Tune", flush=True)
        rows += sweep.main(sweep_argv(grid, budgets, stamp))
    return rows


def write_page(grid: Grid, command: str) -> Path:
    """The results page and the learning curves, from the runs the pipeline says are the grid's."""
    runs: dict[GridCell, Optional[PolicyRun]] = {}
    artifacts: dict[Path, tuple[str, str]] = {}
    for cell in grid.cells:
        work = cell_work(grid, cell)
        runs[cell] = load_policy_run(work.policy_run) if work.policy_run else None
        record = (work.policy_run / "record" / "pipeline.json") if work.policy_run else None
        if record is not None and record.is_file():
            used = json.loads(record.read_text())
            for stage, name in (("dynamics", "forward dynamics"), ("anchor_seeker", "anchor seeker")):
                if used.get(stage):
                    artifacts[Path(used[stage]["run"])] = (split_replica_task(cell.task)[1], name)
    page, figures_dir = Path(grid.cfg.page), Path(grid.cfg.figures_dir)
    finished = [r for r in runs.values() if r is not None and r.finished]
    figures = []
    cfg = grid.cfg
    notes = []
    if finished:
        try:
            figures.append(plot_learning_curves(
                finished, figures_dir / "learning_curves.png", dpi=72,
                title="Learning curves (replica data, reduced budget)"))
        except MissingExtraError as err:
            print(f"run_results.py: no learning curves: {err}", file=sys.stderr)
            notes.append(f"Learning curves not drawn: {err}.")
    left_out = [f"{a.name}{v}" for a in ALGORITHMS.values()
                for v in (("", "+cocoa") if a.has_cocoa else ("",))
                if f"{a.name}{v}" not in {b.label for b in grid.budgets}]
    notes = [*notes, f"Data: {', '.join(cfg.tasks)} from `{grid.data_dir}` (replica files: "
             f"{cfg.num_samples:,} rows per sampled level; medium-expert is medium then expert; "
             "medium-replay is online SAC's buffer up to the medium policy).",
             f"Budgets: {', '.join(b.label + ' ' + format(b.steps, ',') for b in grid.budgets)} "
             f"gradient steps; an evaluation of {cfg.eval_episodes} episode(s) every "
             f"{cfg.step_per_epoch:,} steps; seeds {', '.join(map(str, cfg.seeds))}; dynamics "
             f"at most {cfg.dynamics_max_epochs} epochs, anchor seeker {cfg.seeker_epochs} "
             "pretraining epochs; every other option at its script's default.",
             f"Not run in this grid: {', '.join(left_out) if left_out else 'nothing'}"
             + (" (why, and what their budgets would cost: docs/PIPELINE.md, \"What the default "
                "grid leaves out\")." if left_out else ".")]
    data_scores = []
    for task in cfg.tasks:
        if grid.data_file(task).is_file():
            meta = read_hdf5_metadata(grid.data_file(task))
            if "metadata/behaviour_return_normalized" in meta:
                data_scores.append((paper_task_key(task),
                                    float(meta["metadata/behaviour_return_normalized"])))
    text = results_markdown(
        collect_rows(runs), command=command, figures=figures, page_dir=page.parent, notes=notes,
        data_scores=data_scores,
        artifacts=[(task, stage, artifact_wall_seconds(run))
                   for run, (task, stage) in artifacts.items()])
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return page


def display_command(args: Sequence[str]) -> str:
    """The grid's command line as the page shows it: without `--report_only` (the page says
    how to only rewrite it) and with the home folder written `~`."""
    home = str(Path.home()) + "/"
    words = []
    for word in ["python", "run_example/run_results.py", *args]:
        if word == "--report_only":
            continue
        quoted = shlex.quote(word)
        if quoted == word and word.startswith(home):
            quoted = "~/" + word[len(home):]
        words.append(quoted)
    return " ".join(words)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Command-line entry point; returns the page written (or that would be, with --dry_run)."""
    args = list(sys.argv[1:] if argv is None else argv)
    grid = parse_args(args)
    command = display_command(args)
    if grid.cfg.report_only:
        return write_page(grid, command)
    start = time.time()
    work = {cell: cell_work(grid, cell) for cell in grid.cells}
    rates = measure(grid)
    print_plan(grid, work, make_estimate(grid, work, rates), rates)
    if grid.cfg.dry_run:
        return Path(grid.cfg.page)
    make_data(grid)
    rows = run_grid(grid, work)
    page = write_page(grid, command)
    failed = [r for r in rows if r["status"] != "finished"]
    print(f"wrote {page} in {format_seconds(time.time() - start)}; "
          + (f"{len(failed)} runs unfinished or failed: run the same command again"
             if failed else "every run finished"), flush=True)
    if failed and argv is None:
        sys.exit(1)
    return page


if __name__ == "__main__":
    run_main(main)
