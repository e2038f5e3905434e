"""The results page of a grid (`docs/RESULTS.md`): scores, budgets, wall times, the paper's
numbers beside them, learning curves, and an analysis computed from the numbers.

Input is the grid's cells with the policy run each one used (`run_example/run_results.py` asks
the pipeline which run that is), so the page shows exactly the runs of this grid. Per (task,
algorithm, variant): the mean and population std (`ddof=0`, as `table.py`) over seeds of each
run's final `eval/last_10_performance`; the wall time of a run is the sum of its recorded
`time/train_one_epoch` and `time/eval_one_epoch` (epochs repeated by a resume count once).

The analysis compares each algorithm with and without COCOA per task: the difference of the
means, and whether it exceeds the seed spread, taken as the sum of the two stds (the mean +- std
intervals do not overlap). With one seed per side there is no spread and no verdict. This is a
description of the numbers, not a significance test.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np

from offlinerlkit.algorithms import display_name
from offlinerlkit.pipeline.grid import GridCell, format_seconds
from offlinerlkit.pipeline.results import PROGRESS_FILE, PolicyRun, paper_task_key, read_progress
from offlinerlkit.reference.paper_table import PAPER_SOURCE, PaperCell, paper_cells

__all__ = ["LABEL", "ResultRow", "analysis_lines", "artifact_wall_seconds", "collect_rows",
           "policy_wall_seconds", "results_markdown"]

#: How every number of the page is labelled.
LABEL = "replica data, reduced budget"
_TIME_KEYS = ("time/train_one_epoch", "time/eval_one_epoch")


def policy_wall_seconds(run: Path) -> float:
    """Training plus evaluation seconds recorded in a policy run's progress file."""
    columns = read_progress(run / "record" / PROGRESS_FILE)
    return float(sum(np.nansum(columns[k]) for k in _TIME_KEYS if k in columns))


def artifact_wall_seconds(run: Path) -> Optional[float]:
    """Seconds from a run folder's start (its `seed_<k>_<YYYYmmdd-HHMMSS>` name) to its newest
    file in `model/`; None when the name has no time stamp or nothing is in `model/`."""
    try:
        started = datetime.strptime("_".join(run.name.split("_")[2:])[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return None
    files = [p for p in (run / "model").glob("*") if p.is_file()]
    if not files:
        return None
    return max(p.stat().st_mtime for p in files) - started.timestamp()


@dataclass(frozen=True)
class ResultRow:
    """One (task, algorithm, variant) of the grid.

    Attributes:
        task: the paper's task name (`hopper-medium`).
        algo, variant: the column.
        steps: the gradient-step budget of each run.
        seeds: the seeds with a finished run.
        scores: each seed's final `eval/last_10_performance`, in `seeds` order.
        wall_seconds: each seed's policy wall time (training and evaluation).
        missing: seeds of the grid without a finished run.
        paper: the paper's number for this cell, if it has one.
    """

    task: str
    algo: str
    variant: str
    steps: int
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    wall_seconds: tuple[float, ...]
    missing: tuple[int, ...]
    paper: Optional[PaperCell]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else math.nan

    @property
    def std(self) -> float:
        """Population std over seeds (NaN without runs)."""
        return float(np.std(self.scores)) if self.scores else math.nan

    @property
    def name(self) -> str:
        return display_name(self.algo) + (" + COCOA" if self.variant == "cocoa" else "")


def collect_rows(runs: Mapping[GridCell, Optional[PolicyRun]],
                 reference: Optional[Mapping[tuple[str, str, str], PaperCell]] = None
                 ) -> list[ResultRow]:
    """Group the grid's cells into rows, in the grid's order; a cell counts when its run finished.

    Args:
        runs: each cell of the grid and its policy run (None: not made yet).
        reference: the paper's numbers (default: `paper_cells()`).
    """
    reference = paper_cells() if reference is None else reference
    groups: dict[tuple[str, str, str, int], list[tuple[GridCell, Optional[PolicyRun]]]] = {}
    for cell, run in runs.items():
        key = (paper_task_key(cell.task), cell.algo, cell.variant, cell.steps)
        groups.setdefault(key, []).append((cell, run))
    rows = []
    for (task, algo, variant, steps), members in groups.items():
        done = sorted(((c.seed, r) for c, r in members if r is not None and r.finished
                       and not math.isnan(r.last_10)), key=lambda sr: sr[0])
        rows.append(ResultRow(
            task=task, algo=algo, variant=variant, steps=steps,
            seeds=tuple(s for s, _ in done), scores=tuple(r.last_10 for _, r in done),
            wall_seconds=tuple(policy_wall_seconds(r.path) for _, r in done),
            missing=tuple(sorted(c.seed for c, r in members
                                 if c.seed not in {s for s, _ in done})),
            paper=reference.get((task, algo, variant))))
    return rows


def _score(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def _table(rows: Sequence[ResultRow]) -> list[str]:
    lines = ["| task | algorithm | score (mean ± std) | seeds | gradient steps | wall time per run "
             "| paper |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        seeds = f"{len(row.seeds)}" + (f" (missing {', '.join(map(str, row.missing))})"
                                       if row.missing else "")
        wall = (format_seconds(float(np.mean(row.wall_seconds))) if row.wall_seconds else "–")
        paper = row.paper.text() if row.paper is not None else "–"
        lines.append(f"| {row.task} | {row.name} | {_score(row.mean, row.std)} | {seeds} | "
                     f"{row.steps:,} | {wall} | {paper} |")
    return lines


def analysis_lines(rows: Sequence[ResultRow]) -> list[str]:
    """Per algorithm with both variants in `rows`: COCOA minus alone per task, against the
    seed spread (sum of the two stds), and a summary line; computed, never hand-written."""
    by_key = {(r.task, r.algo, r.variant): r for r in rows}
    algos = list(dict.fromkeys(r.algo for r in rows if r.variant == "cocoa"))
    lines: list[str] = []
    for algo in algos:
        tasks = [r.task for r in rows if r.algo == algo and r.variant == "cocoa"
                 and (r.task, algo, "alone") in by_key]
        lines += [f"**{display_name(algo)}**", ""]
        counts = {"higher": 0, "lower": 0, "within": 0, "undecided": 0, "missing": 0}
        diffs = []
        for task in tasks:
            alone, cocoa = by_key[(task, algo, "alone")], by_key[(task, algo, "cocoa")]
            if not alone.scores or not cocoa.scores:
                lines.append(f"* {task}: not comparable yet (finished seeds: alone "
                             f"{len(alone.scores)}, COCOA {len(cocoa.scores)}).")
                counts["missing"] += 1
                continue
            diff, spread = cocoa.mean - alone.mean, alone.std + cocoa.std
            diffs.append(diff)
            paper = ""
            if alone.paper is not None and cocoa.paper is not None:
                paper = f" The paper: {cocoa.paper.mean - alone.paper.mean:+.1f}."
            if min(len(alone.scores), len(cocoa.scores)) < 2:
                verdict, kind = "one seed on a side, so no seed spread to compare with", "undecided"
            elif abs(diff) > spread:
                kind = "higher" if diff > 0 else "lower"
                verdict = f"larger than the seed spread ({spread:.1f}): COCOA is {kind} here"
            else:
                verdict, kind = f"within the seed spread ({spread:.1f}): no difference shown", "within"
            counts[kind] += 1
            lines.append(f"* {task}: COCOA {_score(cocoa.mean, cocoa.std)} vs alone "
                         f"{_score(alone.mean, alone.std)} ({len(cocoa.scores)} and "
                         f"{len(alone.scores)} seeds), difference {diff:+.1f}, {verdict}.{paper}")
        if diffs:
            lines.append(f"* Over {len(diffs)} task{'s' * (len(diffs) != 1)}: mean difference "
                         f"{float(np.mean(diffs)):+.1f}; COCOA higher beyond the spread on "
                         f"{counts['higher']}, lower beyond it on {counts['lower']}, within it on "
                         f"{counts['within']}, undecided (one seed on a side) on "
                         f"{counts['undecided']}"
                         + (f"; {counts['missing']} more not comparable yet."
                            if counts["missing"] else "."))
        lines.append("")
    return lines


def results_markdown(rows: Sequence[ResultRow], *, command: str,
                     artifacts: Sequence[tuple[str, str, Optional[float]]] = (),
                     figures: Sequence[Path] = (), page_dir: Optional[Path] = None,
                     notes: Sequence[str] = (),
                     data_scores: Sequence[tuple[str, float]] = ()) -> str:
    """The whole page.

    Args:
        rows: `collect_rows` of the grid.
        command: the command that made it.
        artifacts: (task, stage, wall seconds) of the dynamics and anchor seekers used.
        figures: learning-curve PNGs, linked relative to `page_dir`.
        page_dir: the folder the page is written to.
        notes: further lines for the setup section (data, budgets, what was left out).
        data_scores: (task, mean D4RL-normalised score of the dataset's episodes), the scale
            the policies' scores are read against.
    """
    total = sum(sum(r.wall_seconds) for r in rows) + sum(s or 0.0 for _, _, s in artifacts)
    lines = [f"# Results ({LABEL})", "",
             f"**{LABEL.capitalize()}.** Scores on datasets made locally from the project's "
             "shipped behaviour policies (`make_dataset.py --policies shipped`, gymnasium -v4), "
             "not on D4RL's files, and at far fewer gradient steps than the paper's 1M (CQL, IQL) "
             "and 3M (MOPO, MOBILE). The paper's numbers stand beside ours for orientation, not "
             "as a like-for-like comparison.", "",
             f"Made by `{command}`: it runs what the grid still lacks (finished runs are "
             "skipped, stopped ones resume) and rewrites this page; add `--report_only` to "
             "only rewrite the page from the run folders.", ""]
    lines += [f"* {note}" for note in notes]
    lines += [f"* Score: mean ± population std over seeds of each run's final "
              "`eval/last_10_performance` (the mean D4RL-normalised score of its last 10 "
              f"evaluations). Paper: {PAPER_SOURCE}; its \"alone\" numbers have no published "
              "spread.",
              "* Wall time per run: the policy run's recorded training and evaluation time "
              "(one torch thread), mean over seeds; the shared dynamics and anchor seekers are "
              "listed below.",
              f"* Compute recorded in this grid: {format_seconds(total)} of one thread.", ""]
    if data_scores:
        lines += ["## Data", "",
                  "The mean D4RL-normalised score of each dataset's episodes (its behaviour "
                  "policy's, stochastic actions): the scale to read the policies' scores against, "
                  "since the replica data are not D4RL's.", "",
                  "| task | dataset's episodes |", "|---|---:|"]
        lines += [f"| {task} | {score:.1f} |" for task, score in data_scores]
        lines += [""]
    lines += ["## Table", ""]
    lines += _table(rows)
    if artifacts:
        lines += ["", "Shared artifacts (one per task, reused by every seed):", "",
                  "| task | stage | wall time |", "|---|---|---:|"]
        lines += [f"| {task} | {stage} | {'–' if s is None else format_seconds(s)} |"
                  for task, stage, s in artifacts]
    lines += ["", "## Does COCOA change the score at this budget?", "",
              "Per task, COCOA's mean minus the algorithm alone, against the seed spread (the sum "
              "of the two stds: the mean ± std intervals do not overlap when the difference "
              "exceeds it). With 2 seeds this describes the runs; it is not a significance "
              "test.", ""]
    analysis = analysis_lines(rows)
    lines += analysis if analysis else ["No algorithm of this grid ran with and without COCOA.", ""]
    if figures:
        lines += ["## Learning curves", "",
                  "Mean over seeds of the normalised score at each evaluation, ± one population "
                  "std.", ""]
        for fig in figures:
            link = Path(os.path.relpath(fig, page_dir)) if page_dir is not None else fig
            lines += [f"![{fig.stem}]({link.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"
