"""Learning curves from run folders: normalised score vs gradient steps, alone vs COCOA (PNG).

    python run_example/plotter.py                          # every policy run under log/
    python run_example/plotter.py --roots log --algos cql --tasks hopper-medium walker2d-medium \
        --smooth 10 --output curves.png

One panel per algorithm and task with offline policy runs (the dataset maker's online SAC run is
not one); in each, the mean over seeds of `eval/normalized_episode_reward` at every `timestep`,
with a ± one-std band. Needs
`pip install -e ".[plot]"` (matplotlib). See docs/PIPELINE.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from offlinerlkit.pipeline import find_policy_runs, plot_learning_curves
from offlinerlkit.utils.cli import opt, run_main


@dataclass(frozen=True)
class PlotConfig:
    """Draw learning curves from run folders (docs/PIPELINE.md)."""

    roots: tuple[str, ...] = opt(("log",), "folders searched for policy runs")
    output: str = opt("learning_curves.png", "PNG file to write")
    algos: Optional[tuple[str, ...]] = opt(None, "rows: algorithms; none: all found")
    tasks: Optional[tuple[str, ...]] = opt(None, "panels: tasks without version, e.g. hopper-medium; none: all found")
    variants: tuple[str, ...] = opt(("alone", "cocoa"), "lines per panel")
    smooth: int = opt(0, "moving-average radius in evaluations (the original plotter used 10)")
    dpi: int = opt(150, "resolution")
    title: Optional[str] = opt(None, "figure title")


def main(cfg: PlotConfig) -> Path:
    """Draw the figure; returns the PNG path."""
    path = plot_learning_curves(find_policy_runs(cfg.roots), cfg.output, algos=cfg.algos,
                                tasks=cfg.tasks, variants=cfg.variants, smooth=cfg.smooth,
                                dpi=cfg.dpi, title=cfg.title)
    print(f"learning curves written to {path}")
    return path


if __name__ == "__main__":
    run_main(main, PlotConfig)
