"""The COCOA paper's result table (D4RL normalised score, 4 seeds), kept as reference data.

The table below is copied verbatim from the paper's repository README (COCOA spec section 11).
Each cell reads "alone -> with COCOA": the algorithm alone (mean only; no spread is published)
and the algorithm with COCOA (mean ± std over 4 seeds; which std, population or sample, is not
stated). "–" means no number was published (IQL on the random tasks). The "Average" row is the
paper's own average (over the 12 tasks, or the 9 non-random tasks for IQL), not recomputed.

`paper_cells()` parses the text once; nothing else in the project duplicates these numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

#: Where the numbers come from, for table captions.
PAPER_SOURCE = ("COCOA (ICLR 2024) repository README, D4RL normalised score, 4 seeds "
                "(COCOA spec section 11)")

#: Row name of the paper's average row.
AVERAGE = "average"

#: Column order of the paper's table.
ALGOS = ("cql", "iql", "mopo", "mobile")

PAPER_TABLE_MARKDOWN = """\
| Task | CQL | IQL | MOPO | MOBILE |
|---|---|---|---|---|
| halfcheetah-random | 31.3 → 23.8±0.8 | – | 37.3 → 33.9±2.3 | 40.9 → 29.5±2.4 |
| hopper-random | 5.3 → 8.8±1.6 | – | 31.7 → 32.3±1.2 | 17.4 → 11.5±8.3 |
| walker2d-random | 5.4 → 5.5±8.5 | – | 4.1 → 23.7±0.5 | 9.9 → 21.4±0.1 |
| halfcheetah-medium | 46.9 → 49.0±0.2 | 47.4 → 47.1±0.1 | 72.4 → 70.8±3.7 | 73.5 → 69.2±1.0 |
| hopper-medium | 61.9 → 66.0±1.4 | 66.3 → 65.5±1.5 | 62.8 → 39.5±2.3 | 92.9 → 103.7±6.1 |
| walker2d-medium | 79.5 → 83.1±0.3 | 78.3 → 81.9±0.2 | 84.1 → 89.4±1.4 | 80.8 → 84.4±1.3 |
| halfcheetah-medium-replay | 45.3 → 46.4±0.4 | 44.2 → 40.3±1.4 | 72.1 → 67.0±0.5 | 66.8 → 68.6±0.9 |
| hopper-medium-replay | 86.3 → 96.5±1.9 | 94.7 → 88.2±5.9 | 92.8 → 71.4±30.1 | 87.9 → 105.3±1.7 |
| walker2d-medium-replay | 76.8 → 83.9±2.9 | 73.9 → 66.9±10.0 | 85.2 → 93.1±5.1 | 81.1 → 83.5±1.7 |
| halfcheetah-medium-expert | 95.0 → 92.4±3.1 | 86.7 → 91.4±1.4 | 83.6 → 109.1±1.4 | 86.75 → 104.1±2.0 |
| hopper-medium-expert | 96.9 → 103.3±1.4 | 91.5 → 105.3±2.0 | 74.9 → 101.4±13.9 | 102.3 → 109.1±4.7 |
| walker2d-medium-expert | 109.1 → 109.4±0.4 | 109.6 → 109.1±0.9 | 105.3 → 109.1±0.4 | 107.0 → 107.5±0.9 |
| Average | 61.6 → 64.0 | 77.0 → 77.3 | 67.2 → 70.1 | 70.6 → 74.8 |
"""


@dataclass(frozen=True)
class PaperCell:
    """One published number.

    Attributes:
        task: the task without its version (`hopper-medium`), or `average`.
        algo: `cql`, `iql`, `mopo` or `mobile`.
        variant: `alone` or `cocoa`.
        mean: the published mean score.
        std: the published spread over seeds, or None where none is published.
    """

    task: str
    algo: str
    variant: str
    mean: float
    std: Optional[float]

    def text(self, digits: int = 1) -> str:
        """`66.0±1.4`, or `61.9` without a published spread."""
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f}±{self.std:.{digits}f}"


def _parse_value(text: str) -> tuple[float, Optional[float]]:
    mean, _, std = text.strip().partition("±")
    return float(mean), (float(std) if std else None)


@lru_cache(maxsize=1)
def _parse() -> tuple[tuple[str, ...], dict[tuple[str, str, str], PaperCell]]:
    lines = [ln.strip() for ln in PAPER_TABLE_MARKDOWN.strip().splitlines()]
    header = [c.strip().lower() for c in lines[0].strip("|").split("|")]
    if tuple(header[1:]) != ALGOS:
        raise ValueError(f"unexpected paper table header {header}")
    tasks: list[str] = []
    cells: dict[tuple[str, str, str], PaperCell] = {}
    for line in lines[2:]:
        row = [c.strip() for c in line.strip("|").split("|")]
        task = row[0].lower()
        if task != AVERAGE:
            tasks.append(task)
        for algo, text in zip(ALGOS, row[1:]):
            if text in ("–", "-", ""):
                continue
            alone, cocoa = (part.strip() for part in text.split("→"))
            for variant, value in (("alone", alone), ("cocoa", cocoa)):
                mean, std = _parse_value(value)
                cells[(task, algo, variant)] = PaperCell(task, algo, variant, mean, std)
    return tuple(tasks), cells


def paper_cells() -> dict[tuple[str, str, str], PaperCell]:
    """Every published number, keyed by `(task, algo, variant)`.

    `task` is the D4RL task without its version (`hopper-medium-replay`) or `average`;
    `variant` is `alone` or `cocoa`. Cells the paper leaves empty are absent.
    """
    return dict(_parse()[1])


#: The paper's tasks in its row order (without the average row).
PAPER_TASKS: tuple[str, ...] = _parse()[0]
