"""The paper's result table from run folders, side by side with the published numbers.

Each cell is one (task, algorithm, variant, data kind): the mean ± std over seeds of each run's
final `eval/last_10_performance` (the mean normalised score of its last 10 evaluations, the
paper's protocol, DATA.md). The std is the **population** std (`ddof=0`, numpy's default and
what the original plotter used) unless `ddof=1` is asked for; the paper does not say which it
used. One run per seed counts (`one_run_per_seed`); runs never evaluated are left out.

Rows are tasks in the paper's order, one block per data kind (`d4rl` rows are named like the
paper's; other kinds carry a suffix, e.g. `hopper-medium [replica]`; Minari rows are the dataset
id with its version, `minari:mujoco/hopper/medium-v0 [minari]`, and `[minari-d4rl]` when the
dataset has no reference returns of its own and D4RL's were used), each block closed by an
average row: per column, the mean of the cell means over the block's tasks that have the
cell. Its paper value is the published average when the block covers every task the paper
averages for that column, else the mean of the paper's cells over the same tasks (marked
`same tasks`).
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from offlinerlkit.algorithms import display_name
from offlinerlkit.pipeline.results import PolicyRun, one_run_per_seed
from offlinerlkit.reference.paper_table import (
    ALGOS,
    AVERAGE,
    PAPER_SOURCE,
    PAPER_TASKS,
    PaperCell,
    paper_cells,
)

__all__ = ["CSV_COLUMNS", "Cell", "ResultTable", "build_table", "cell_text", "format_markdown",
           "table_rows", "write_csv"]

#: Column order of variants, and their header names.
VARIANT_NAMES = {"alone": "alone", "cocoa": "+COCOA", "closest_delta": "+closest-delta"}
KIND_NAMES = {"d4rl": "D4RL file", "replica": "replica",
              "minari": "Minari, scored with its own reference returns",
              "minari-d4rl": "Minari, scored with D4RL's reference returns",
              "memory": "in-memory", "unknown": "unknown source"}
_KIND_ORDER = ("d4rl", "replica", "minari", "minari-d4rl", "memory", "unknown")

CSV_COLUMNS = ("row", "task", "data_kind", "algo", "variant", "mean", "std", "std_ddof",
               "num_seeds", "seeds", "epochs_min", "epochs_max", "num_tasks", "paper_mean",
               "paper_std", "paper_note", "runs")


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        row: the row label (`hopper-medium`, `hopper-medium [replica]`, `average`).
        task: the paper's task name, or `average`.
        data_kind: the data source kind of every run in the cell.
        algo, variant: the column.
        mean, std: over seeds (average rows: mean over tasks, std NaN).
        num_seeds: seeds in the cell (average rows: the fewest of its task cells).
        seeds: the seeds (average rows: empty).
        epochs: (fewest, most) evaluated epochs of the runs.
        num_tasks: task cells averaged (1 for task rows).
        paper_mean, paper_std: the paper's number for this cell (None where it has none).
        paper_note: `published`, `same tasks` (recomputed average) or empty.
        runs: the run directories used.
    """

    row: str
    task: str
    data_kind: str
    algo: str
    variant: str
    mean: float
    std: float
    num_seeds: int
    seeds: tuple[int, ...]
    epochs: tuple[int, int]
    num_tasks: int = 1
    paper_mean: Optional[float] = None
    paper_std: Optional[float] = None
    paper_note: str = ""
    runs: tuple[Path, ...] = ()


@dataclass
class ResultTable:
    """Cells keyed by (row, algo, variant), with the row and column order to print.

    Attributes:
        rows: row labels in order (tasks, then the average, per data kind).
        columns: (algo, variant) pairs in order.
        cells: our cells.
        paper: the paper's cell for (row, algo, variant) of every `d4rl`-like row, for
            printing published numbers next to empty cells.
        ddof: 0 (population std) or 1 (sample std).
    """

    rows: list[str]
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, str, str], Cell]
    paper: dict[tuple[str, str, str], PaperCell] = field(default_factory=dict)
    ddof: int = 0


def _row_label(task: str, kind: str) -> str:
    return task if kind == "d4rl" else f"{task} [{kind}]"


def _task_order(task: str) -> tuple[int, str]:
    return (PAPER_TASKS.index(task), "") if task in PAPER_TASKS else (len(PAPER_TASKS), task)


def _column_order(algo: str, variant: str) -> tuple[int, str, int, str]:
    a = ALGOS.index(algo) if algo in ALGOS else len(ALGOS)
    v = list(VARIANT_NAMES).index(variant) if variant in VARIANT_NAMES else len(VARIANT_NAMES)
    return (a, algo, v, variant)


def _spread(values: np.ndarray, ddof: int) -> float:
    return float(np.std(values, ddof=ddof)) if values.size > ddof else math.nan


def build_table(runs: Sequence[PolicyRun], *, algos: Optional[Sequence[str]] = None,
                variants: Optional[Sequence[str]] = None, ddof: int = 0,
                reference: Optional[Mapping[tuple[str, str, str], PaperCell]] = None
                ) -> ResultTable:
    """Aggregate policy runs into the paper's table.

    Args:
        runs: policy runs (`find_policy_runs`); duplicates of a seed are reduced to one.
        algos: columns to show (default: every algorithm found).
        variants: variants to show (default: every variant found).
        ddof: 0 for the population std over seeds (default), 1 for the sample std.
        reference: the published cells (default: `paper_cells()`).

    Returns:
        The table; cells exist only where runs exist.
    """
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof}")
    reference = paper_cells() if reference is None else reference
    chosen = [r for r in one_run_per_seed(runs) if not math.isnan(r.last_10)
              and (algos is None or r.algo in algos)
              and (variants is None or r.variant in variants)]
    groups: dict[tuple[str, str, str, str], list[PolicyRun]] = {}
    for run in chosen:
        groups.setdefault((run.data_kind, run.task_key, run.algo, run.variant), []).append(run)
    found = {(a, v) for (_, _, a, v) in groups}
    wanted = set(found)
    if algos is not None or variants is not None:  # asked-for columns show even when empty
        wanted |= {(a, v) for a in (algos or {a for a, _ in found})
                   for v in (variants or {v for _, v in found} or ("alone", "cocoa"))}
    columns = sorted(wanted, key=lambda c: _column_order(*c))
    table = ResultTable(rows=[], columns=columns, cells={}, ddof=ddof)
    kinds = sorted({k for (k, _, _, _) in groups},
                   key=lambda k: _KIND_ORDER.index(k) if k in _KIND_ORDER else len(_KIND_ORDER))
    for kind in kinds:
        tasks = sorted({t for (k, t, _, _) in groups if k == kind}, key=_task_order)
        for task in tasks:
            label = _row_label(task, kind)
            table.rows.append(label)
            for algo, variant in columns:
                paper = reference.get((task, algo, variant))
                if paper is not None:
                    table.paper[(label, algo, variant)] = paper
                members = sorted(groups.get((kind, task, algo, variant), []), key=lambda r: r.seed)
                if not members:
                    continue
                scores = np.array([r.last_10 for r in members], dtype=np.float64)
                table.cells[(label, algo, variant)] = Cell(
                    row=label, task=task, data_kind=kind, algo=algo, variant=variant,
                    mean=float(scores.mean()), std=_spread(scores, ddof),
                    num_seeds=len(members), seeds=tuple(r.seed for r in members),
                    epochs=(min(r.epochs for r in members), max(r.epochs for r in members)),
                    paper_mean=None if paper is None else paper.mean,
                    paper_std=None if paper is None else paper.std,
                    paper_note="published" if paper is not None else "",
                    runs=tuple(r.path for r in members))
        average = _row_label(AVERAGE, kind)
        table.rows.append(average)
        for algo, variant in columns:
            cell = _average_cell(table, average, [_row_label(t, kind) for t in tasks], kind,
                                 algo, variant, reference)
            if cell is not None:
                table.cells[(average, algo, variant)] = cell
    return table


def _average_cell(table: ResultTable, label: str, rows: list[str], kind: str, algo: str,
                  variant: str, reference: Mapping[tuple[str, str, str], PaperCell]
                  ) -> Optional[Cell]:
    members = [table.cells[(r, algo, variant)] for r in rows if (r, algo, variant) in table.cells]
    if not members:
        return None
    tasks = [c.task for c in members]
    paper_tasks = [t for t in PAPER_TASKS if (t, algo, variant) in reference]
    published = reference.get((AVERAGE, algo, variant))
    paper_mean: Optional[float] = None
    note = ""
    if published is not None and sorted(tasks) == sorted(paper_tasks):
        paper_mean, note = published.mean, "published"
    elif all((t, algo, variant) in reference for t in tasks):
        paper_mean = float(np.mean([reference[(t, algo, variant)].mean for t in tasks]))
        note = "same tasks"
    return Cell(row=label, task=AVERAGE, data_kind=kind, algo=algo, variant=variant,
                mean=float(np.mean([c.mean for c in members])), std=math.nan,
                num_seeds=min(c.num_seeds for c in members), seeds=(),
                epochs=(min(c.epochs[0] for c in members), max(c.epochs[1] for c in members)),
                num_tasks=len(members), paper_mean=paper_mean, paper_std=None, paper_note=note,
                runs=tuple(p for c in members for p in c.runs))


def _value(mean: Optional[float], std: Optional[float], digits: int = 1) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}±{std:.{digits}f}"


def cell_text(table: ResultTable, row: str, algo: str, variant: str) -> str:
    """One Markdown cell: `64.0±1.4 (paper 66.0±1.4) [4 seeds, D4RL]`."""
    cell = table.cells.get((row, algo, variant))
    paper = table.paper.get((row, algo, variant))
    if cell is None:
        return "–" if paper is None else f"– (paper {paper.text()})"
    ours = _value(cell.mean, cell.std)
    theirs = ""
    if cell.paper_mean is not None:
        mark = ", same tasks" if cell.paper_note == "same tasks" else ""
        theirs = f" (paper {_value(cell.paper_mean, cell.paper_std)}{mark})"
    kind = KIND_NAMES.get(cell.data_kind, cell.data_kind)
    if cell.task == AVERAGE:
        detail = f"{cell.num_tasks} task{'s' * (cell.num_tasks != 1)}, ≥{cell.num_seeds} seeds, {kind}"
    else:
        detail = f"{cell.num_seeds} seed{'s' * (cell.num_seeds != 1)}, {kind}"
    return f"{ours}{theirs} [{detail}]"


def format_markdown(table: ResultTable, *, title: Optional[str] = None) -> str:
    """The table as Markdown, with a caption saying how every number was made."""
    head = ["Task"] + [f"{display_name(a)} {VARIANT_NAMES.get(v, v)}" for a, v in table.columns]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        name = "Average" + row[len(AVERAGE):] if row.startswith(AVERAGE) else row
        lines.append("| " + " | ".join([name] + [cell_text(table, row, a, v)
                                                 for a, v in table.columns]) + " |")
    epochs = sorted({e for c in table.cells.values() for e in c.epochs})
    std_name = "population std (ddof=0)" if table.ddof == 0 else "sample std (ddof=1)"
    lines += [
        "",
        f"Ours: mean ± {std_name} over seeds of each run's final `eval/last_10_performance` "
        "(mean normalised score of its last 10 evaluations); [seeds, data source] per cell; "
        "average rows: mean over the tasks present.",
        f"Paper: {PAPER_SOURCE}; its \"alone\" numbers have no published spread.",
        "Evaluated epochs per run: "
        + (f"{epochs[0]}–{epochs[-1]}" if len(epochs) > 1 else f"{epochs[0]}" if epochs else "none")
        + " (the paper: 1000 for CQL/IQL, 3000 for MOPO/MOBILE).",
    ]
    return "\n".join(lines) + "\n"


def _number(value: Optional[float]) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def table_rows(table: ResultTable) -> list[dict[str, str]]:
    """One CSV row per cell with results, in the table's order (columns: `CSV_COLUMNS`)."""
    out = []
    for row in table.rows:
        for algo, variant in table.columns:
            cell = table.cells.get((row, algo, variant))
            if cell is None:
                continue
            out.append({
                "row": cell.row, "task": cell.task, "data_kind": cell.data_kind, "algo": algo,
                "variant": variant, "mean": _number(cell.mean), "std": _number(cell.std),
                "std_ddof": str(table.ddof), "num_seeds": str(cell.num_seeds),
                "seeds": " ".join(str(s) for s in cell.seeds),
                "epochs_min": str(cell.epochs[0]), "epochs_max": str(cell.epochs[1]),
                "num_tasks": str(cell.num_tasks), "paper_mean": _number(cell.paper_mean),
                "paper_std": _number(cell.paper_std), "paper_note": cell.paper_note,
                "runs": ";".join(str(p) for p in cell.runs)})
    return out


def write_csv(table: ResultTable, path: str | Path) -> Path:
    """Write `table_rows(table)` to `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(table_rows(table))
    return path
