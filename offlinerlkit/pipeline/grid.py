"""A results grid: cells (task, algorithm, variant, seed), each with its own gradient-step budget,
and the compute it needs, estimated from measured rates.

A `Budget` says how many gradient steps one (algorithm, variant) gets (`iql+cocoa=100000`); the
grid is every task x budget x seed (`grid_cells`). `estimate` turns the work still to do (the
pipeline's own lookup, `planned_work`, says which stages exist already) into seconds, from rates
measured on the machine that will run it (`Rates`; `run_example/run_results.py` measures them).
Nothing here runs a policy or imports `run_example`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from offlinerlkit.algorithms import algorithm

__all__ = ["Budget", "CellWork", "Estimate", "GridCell", "Rates", "estimate", "grid_cells",
           "format_seconds"]

#: Steps of one evaluation episode at most (gymnasium's MuJoCo time limit).
EPISODE_STEPS = 1000


@dataclass(frozen=True)
class Budget:
    """The gradient-step budget of one (algorithm, variant).

    Attributes:
        algo: a registered algorithm (`offlinerlkit.algorithms`).
        variant: `alone` or `cocoa` (only for algorithms with a COCOA variant).
        steps: gradient steps of each run.
    """

    algo: str
    variant: str
    steps: int

    def __post_init__(self) -> None:
        entry = algorithm(self.algo)
        if self.variant not in ("alone", "cocoa"):
            raise ValueError(f"{self.label}: the variant must be alone or cocoa")
        if self.variant == "cocoa" and not entry.has_cocoa:
            raise ValueError(f"{self.algo} has no COCOA variant")
        if self.steps < 1:
            raise ValueError(f"{self.label}: the budget must be at least 1 step, got {self.steps}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """`iql=100000` (alone) or `iql+cocoa=100000` -> a `Budget`."""
        name, eq, steps = text.partition("=")
        algo, plus, variant = name.strip().lower().partition("+")
        if not eq or (plus and variant != "cocoa") or not steps.strip().isdigit():
            raise ValueError(f"budget {text!r}: write ALGO=STEPS or ALGO+cocoa=STEPS, "
                             "e.g. iql+cocoa=100000")
        return cls(algo, "cocoa" if plus else "alone", int(steps))

    @property
    def label(self) -> str:
        """`iql` or `iql+cocoa`."""
        return self.algo + ("+cocoa" if self.variant == "cocoa" else "")


@dataclass(frozen=True)
class GridCell:
    """One run of the grid: a policy seed of one (task, algorithm, variant) at its budget.

    Attributes:
        task: the task, e.g. `replica:hopper-medium-v2`.
        algo, variant, steps: from its `Budget`.
        seed: the policy seed.
        step_per_epoch: gradient steps between evaluations (`steps` is a multiple of it).
    """

    task: str
    algo: str
    variant: str
    seed: int
    steps: int
    step_per_epoch: int

    @property
    def epochs(self) -> int:
        """Epochs of the run (one evaluation after each)."""
        return self.steps // self.step_per_epoch

    @property
    def label(self) -> str:
        """`iql+cocoa replica:hopper-medium-v2 seed 0`."""
        name = self.algo + ("+cocoa" if self.variant == "cocoa" else "")
        return f"{name} {self.task} seed {self.seed}"


def grid_cells(tasks: Sequence[str], budgets: Sequence[Budget], seeds: Sequence[int], *,
               step_per_epoch: int) -> list[GridCell]:
    """Every task x budget x seed, in that order.

    Raises:
        ValueError: a budget is not a multiple of `step_per_epoch`, or a budget is repeated.
    """
    labels = [b.label for b in budgets]
    if len(set(labels)) != len(labels):
        raise ValueError(f"each algorithm and variant needs one budget, got {labels}")
    for budget in budgets:
        if budget.steps % step_per_epoch:
            raise ValueError(f"{budget.label}={budget.steps}: the budget must be a multiple of "
                             f"--step_per_epoch ({step_per_epoch})")
    return [GridCell(task, b.algo, b.variant, seed, b.steps, step_per_epoch)
            for task in tasks for b in budgets for seed in seeds]


@dataclass(frozen=True)
class Rates:
    """Measured speeds the estimate is made from (one torch thread, the grid's machine).

    Attributes:
        updates: gradient steps/s of each (algo, variant) policy update.
        env_steps: simulator steps/s with a policy network choosing the actions (evaluation
            and data sampling).
        dynamics_steps: training steps/s of the dynamics ensemble (batch 256).
        sac_steps: online SAC steps/s, one update per environment step (medium-replay data).
    """

    updates: Mapping[tuple[str, str], float]
    env_steps: float
    dynamics_steps: float
    sac_steps: float


@dataclass(frozen=True)
class CellWork:
    """The work left in one cell.

    Attributes:
        cell: the cell.
        action: what the pipeline would do to its policy run (`skip`, `resume`, `train`).
        completed_epochs: epochs already done.
        seconds: estimated seconds of its policy run still to go (updates and evaluations).
    """

    cell: GridCell
    action: str
    completed_epochs: int
    seconds: float


@dataclass(frozen=True)
class Estimate:
    """The estimated compute of what is left, in seconds of one thread.

    Attributes:
        cells: each cell's policy work.
        artifacts: (description, seconds) of each dynamics and anchor seeker to train.
        data: (description, seconds) of each dataset to make.
        parallel: runs at once (the wall time is about the total over this).
    """

    cells: list[CellWork]
    artifacts: list[tuple[str, float]] = field(default_factory=list)
    data: list[tuple[str, float]] = field(default_factory=list)
    parallel: int = 1

    @property
    def total(self) -> float:
        """Seconds of one thread for everything left."""
        return (sum(c.seconds for c in self.cells) + sum(s for _, s in self.artifacts)
                + sum(s for _, s in self.data))

    @property
    def wall(self) -> float:
        """Wall seconds with `parallel` runs at once (data first, alone; the rest shared out)."""
        data = sum(s for _, s in self.data)
        return data + (self.total - data) / max(1, self.parallel)


def policy_seconds(cell: GridCell, rates: Rates, *, completed_epochs: int,
                   eval_episodes: int) -> float:
    """Seconds left of one policy run: its remaining updates and evaluations.

    Evaluation is counted at `EPISODE_STEPS` steps per episode, an upper bound (episodes that
    fall end earlier).
    """
    epochs = max(0, cell.epochs - completed_epochs)
    rate = rates.updates.get((cell.algo, cell.variant))
    if rate is None or rate <= 0:
        raise ValueError(f"no measured update rate for {cell.algo} ({cell.variant})")
    per_epoch = cell.step_per_epoch / rate + eval_episodes * EPISODE_STEPS / rates.env_steps
    return epochs * per_epoch


def dynamics_seconds(rows: int, rates: Rates, *, max_epochs: int, batch_size: int = 256,
                     holdout_ratio: float = 0.2) -> float:
    """Seconds to train one dynamics ensemble for `max_epochs` epochs on `rows` transitions
    (an upper bound: patience may stop it earlier)."""
    steps_per_epoch = math.ceil(rows * (1.0 - holdout_ratio) / batch_size)
    return max_epochs * steps_per_epoch / rates.dynamics_steps


def estimate(work: Sequence[tuple[GridCell, str, int]], rates: Rates, *, eval_episodes: int,
             artifacts: Sequence[tuple[str, float]] = (), data: Sequence[tuple[str, float]] = (),
             parallel: int = 1) -> Estimate:
    """The estimate of the grid's work left.

    Args:
        work: per cell, what the pipeline would do to its policy run (`planned_work`) and the
            epochs it has completed.
        rates: measured speeds.
        eval_episodes: evaluation episodes after each epoch.
        artifacts: seconds of each dynamics or seeker still to train (`dynamics_seconds`).
        data: seconds of each dataset still to make.
        parallel: runs at once.
    """
    cells = [CellWork(cell, action, done, 0.0 if action == "skip" else
                      policy_seconds(cell, rates, completed_epochs=done,
                                     eval_episodes=eval_episodes))
             for cell, action, done in work]
    return Estimate(cells, list(artifacts), list(data), parallel)


def format_seconds(seconds: float) -> str:
    """`42 s`, `12.5 min`, `3.4 h`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
