"""The paper's result table from run folders, next to the published numbers (Markdown and CSV).

    python run_example/make_table.py                       # every policy run under log/
    python run_example/make_table.py --roots log runs/gpu --algos cql iql --csv table.csv

Each cell: mean ± std over seeds of the runs' final `eval/last_10_performance`, the paper's
number in brackets, the number of seeds and the data source (D4RL file, replica, Minari, in
memory). The std is the population std unless `--ddof 1`. See docs/PIPELINE.md.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from offlinerlkit.pipeline import build_table, find_policy_runs, format_markdown, write_csv
from offlinerlkit.pipeline.table import ResultTable
from offlinerlkit.utils.cli import opt, run_main


@dataclass(frozen=True)
class TableConfig:
    """Print the paper's table from run folders (docs/PIPELINE.md)."""

    roots: tuple[str, ...] = opt(("log",), "folders searched for policy runs (log roots or run folders)")
    algos: Optional[tuple[str, ...]] = opt(None, "columns: algorithms; none: all found")
    variants: Optional[tuple[str, ...]] = opt(None, "columns: variants alone, cocoa; none: all found")
    ddof: int = opt(0, "0: population std over seeds; 1: sample std")
    csv: Optional[str] = opt(None, "also write the cells to this CSV file")
    markdown: Optional[str] = opt(None, "also write the Markdown table to this file")
    title: Optional[str] = opt(None, "a heading above the table")


def main(cfg: TableConfig) -> ResultTable:
    """Build, print and optionally save the table; returns it."""
    table = build_table(find_policy_runs(cfg.roots), algos=cfg.algos, variants=cfg.variants,
                        ddof=cfg.ddof)
    text = format_markdown(table, title=cfg.title)
    print(text)
    if cfg.markdown:
        Path(cfg.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.markdown).write_text(text)
    if cfg.csv:
        print(f"cells written to {write_csv(table, cfg.csv)}", file=sys.stderr)
    return table


if __name__ == "__main__":
    run_main(main, TableConfig)
