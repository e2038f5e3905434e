"""Published reference numbers that results are compared against (no training code)."""
from offlinerlkit.reference.paper_table import (
    ALGOS,
    AVERAGE,
    PAPER_SOURCE,
    PAPER_TASKS,
    PaperCell,
    paper_cells,
)

__all__ = ["ALGOS", "AVERAGE", "PAPER_SOURCE", "PAPER_TASKS", "PaperCell", "paper_cells"]
