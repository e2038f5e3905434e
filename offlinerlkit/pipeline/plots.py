"""Learning curves from run folders: normalised score against gradient steps, alone vs COCOA.

One panel per (algorithm, task) that has offline policy runs: a row per algorithm and a column
per task when every pair has runs, else the panels in reading order (runs on locally made or
other non-D4RL data get their own panels, `hopper-medium [replica]`). In each panel, one line
per variant (with markers when it has few points, so a single evaluation shows): the mean over
seeds of `eval/normalized_episode_reward` at each `timestep`, with a band of ± one population
std. Seeds that stopped early simply drop out of later points.
`smooth` applies the original plotter's centred moving average (radius in evaluations) to each
seed before averaging.

matplotlib (the `plot` extra) is imported only inside `plot_learning_curves` (a missing one
raises `MissingExtraError` naming the install command), and drawn with the Agg canvas directly
(no pyplot, no global state, no display needed).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from offlinerlkit.algorithms import display_name
from offlinerlkit.pipeline.results import PolicyRun, one_run_per_seed
from offlinerlkit.reference.paper_table import ALGOS, PAPER_TASKS
from offlinerlkit.utils.extras import import_extra

__all__ = ["aggregate_curves", "draw_learning_curves", "plot_learning_curves", "smooth_curve"]

_COLORS = {"alone": "tab:blue", "cocoa": "tab:orange", "closest_delta": "tab:green"}
_LABELS = {"alone": "alone", "cocoa": "+COCOA", "closest_delta": "+closest-delta"}
#: Curves with at most this many evaluations are drawn with a marker at every point.
_MARKER_MAX_POINTS = 20


def smooth_curve(y: np.ndarray, radius: int) -> np.ndarray:
    """Centred moving average over `2 * radius + 1` points, shorter at the ends (radius 0: as is).

    The same formula as the OfflineRL-Kit / COCOA plotter: `conv(y, ones) / conv(ones, ones)`.
    """
    y = np.asarray(y, dtype=np.float64)
    if radius <= 0 or y.size == 0:
        return y
    kernel = np.ones(2 * radius + 1)
    return np.convolve(y, kernel, mode="same") / np.convolve(np.ones_like(y), kernel, mode="same")


def aggregate_curves(runs: Sequence[PolicyRun], *, smooth: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and population std over runs at every timestep any run evaluated.

    Returns:
        `(timesteps, mean, std, count)`, each `[T]`; `count` is the number of runs at each step.
    """
    if not runs:
        empty = np.zeros(0)
        return empty, empty, empty, empty.astype(int)
    steps = np.unique(np.concatenate([r.timesteps for r in runs]))
    values = np.full((len(runs), steps.size), np.nan)  # [R, T]
    for i, run in enumerate(runs):
        values[i, np.searchsorted(steps, run.timesteps)] = smooth_curve(run.scores, smooth)
    count = (~np.isnan(values)).sum(axis=0)
    mean = np.nanmean(values, axis=0)
    std = np.sqrt(np.nanmean((values - mean) ** 2, axis=0))
    return steps, mean, std, count


def _panel_key(run: PolicyRun) -> str:
    return run.task_key if run.data_kind == "d4rl" else f"{run.task_key} [{run.data_kind}]"


def plot_learning_curves(runs: Sequence[PolicyRun], path: str | Path, *,
                         algos: Optional[Sequence[str]] = None,
                         tasks: Optional[Sequence[str]] = None,
                         variants: Sequence[str] = ("alone", "cocoa"), smooth: int = 0,
                         dpi: int = 150, title: Optional[str] = None) -> Path:
    """Draw the learning curves of `runs` (`draw_learning_curves`) to a PNG file.

    Args:
        runs, algos, tasks, variants, smooth, title: see `draw_learning_curves`.
        path: the PNG to write (parent folders are created).
        dpi: resolution.

    Returns:
        The written file.
    """
    fig = draw_learning_curves(runs, algos=algos, tasks=tasks, variants=variants, smooth=smooth,
                               title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def draw_learning_curves(runs: Sequence[PolicyRun], *, algos: Optional[Sequence[str]] = None,
                         tasks: Optional[Sequence[str]] = None,
                         variants: Sequence[str] = ("alone", "cocoa"), smooth: int = 0,
                         title: Optional[str] = None) -> Any:
    """The learning-curve figure of `runs` (a matplotlib `Figure` on an Agg canvas).

    Args:
        runs: policy runs (`find_policy_runs`); one run per seed is kept.
        algos: algorithms to draw (default: every algorithm found, in the paper's order).
        tasks: tasks to draw, as paper task names (default: every task found).
        variants: lines per panel.
        smooth: moving-average radius in evaluations (0: none).
        title: figure title.

    Raises:
        ValueError: no run matches the selection.
        MissingExtraError: matplotlib is not installed.
    """
    backend = import_extra("matplotlib.backends.backend_agg", "plot")
    figure = import_extra("matplotlib.figure", "plot")

    chosen = [r for r in one_run_per_seed(runs) if r.timesteps.size and r.variant in variants
              and (algos is None or r.algo in algos) and (tasks is None or r.task_key in tasks)]
    if not chosen:
        raise ValueError("no evaluated policy run matches the selection (algos, tasks, variants)")
    rows = sorted({r.algo for r in chosen},
                  key=lambda a: (ALGOS.index(a) if a in ALGOS else len(ALGOS), a))
    cols = sorted({_panel_key(r) for r in chosen}, key=lambda k: (
        PAPER_TASKS.index(k.split(" ")[0]) if k.split(" ")[0] in PAPER_TASKS else len(PAPER_TASKS), k))
    # one panel per (algorithm, task) that has runs: the algorithm x task grid when it is full,
    # else the panels in reading order, at most four a row
    panels = [(a, c) for a in rows for c in cols
              if any(r.algo == a and _panel_key(r) == c for r in chosen)]
    num_cols = len(cols) if len(panels) == len(rows) * len(cols) else min(len(panels), 4)
    num_rows = -(-len(panels) // num_cols)
    fig = figure.Figure(figsize=(3.6 * num_cols, 2.8 * num_rows), layout="constrained")
    backend.FigureCanvasAgg(fig)
    axes = fig.subplots(num_rows, num_cols, squeeze=False).ravel()
    for k, (ax, (algo, col)) in enumerate(zip(axes, panels)):
        for variant in variants:
            group = [r for r in chosen
                     if r.algo == algo and _panel_key(r) == col and r.variant == variant]
            if not group:
                continue
            x, mean, std, _ = aggregate_curves(group, smooth=smooth)
            label = f"{_LABELS.get(variant, variant)} ({len(group)} seed{'s' * (len(group) != 1)})"
            color = _COLORS.get(variant)
            # markers on short curves, so a run evaluated once still shows its point
            ax.plot(x, mean, color=color, label=label, linewidth=1.2,
                    marker="o" if x.size <= _MARKER_MAX_POINTS else None, markersize=3)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_title(f"{display_name(algo)}: {col}", fontsize=9)
        ax.set_xlabel("gradient steps", fontsize=8)
        if k % num_cols == 0:
            ax.set_ylabel("normalised score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig
