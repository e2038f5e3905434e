"""The result table from fake run folders with known numbers, checked cell by cell."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from script_helpers import D4RL_SOURCE, REPLICA_SOURCE, fake_run

from offlinerlkit.pipeline import build_table, find_policy_runs, format_markdown, write_csv
from offlinerlkit.pipeline.results import data_kind, read_progress
from offlinerlkit.reference import PAPER_TASKS, paper_cells

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_table  # noqa: E402


def constant(final: float, n: int = 12) -> list[float]:
    """Scores whose last-10 mean is `final` (a ramp, then `final` for the last 10 epochs)."""
    return [0.0] * (n - 10) + [final] * 10


@pytest.fixture()
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "log"
    for seed, final in enumerate([60.0, 62.0, 64.0, 66.0]):
        fake_run(root, "hopper-medium-v2", "cql", "alone", seed, constant(final))
    for seed, final in enumerate([70.0, 72.0]):
        fake_run(root, "hopper-medium-v2", "cql", "cocoa", seed, constant(final))
    fake_run(root, "walker2d-medium-v2", "cql", "alone", 0, constant(80.0))
    # an older, unfinished attempt of seed 0 with a different score: ignored
    fake_run(root, "walker2d-medium-v2", "cql", "alone", 0, constant(10.0, 11),
             stamp="20230101-000000", finished=False)
    fake_run(root, "replica:hopper-medium-v2", "cql", "alone", 0, constant(50.0),
             source=REPLICA_SOURCE)
    fake_run(root, "replica:hopper-medium-v2", "cql", "alone", 1, constant(54.0),
             source=REPLICA_SOURCE)
    # a resumed run: the last 3 epochs appear twice in its CSV
    fake_run(root, "hopper-medium-v2", "iql", "alone", 0, constant(40.0), repeat_last=3)
    # not policy runs: a dynamics run and a stray JSON file
    dyn = root / "hopper-medium-v2" / "dynamics" / "seed_0_20240101-000000" / "record"
    dyn.mkdir(parents=True)
    (dyn / "hyper_param.json").write_text(json.dumps({"config": {"task": "x"}, "stage": "forward dynamics"}))
    (root / "hyper_param.json").write_text("{}")
    return root


def test_cells_have_the_known_numbers(runs_root: Path) -> None:
    table = build_table(find_policy_runs([runs_root]))
    assert table.columns == [("cql", "alone"), ("cql", "cocoa"), ("iql", "alone")]
    assert table.rows == ["hopper-medium", "walker2d-medium", "average",
                          "hopper-medium [replica]", "average [replica]"]
    cell = table.cells[("hopper-medium", "cql", "alone")]
    assert cell.mean == pytest.approx(63.0)
    assert cell.std == pytest.approx(math.sqrt(5.0))  # population std of 60, 62, 64, 66
    assert (cell.num_seeds, cell.seeds, cell.data_kind) == (4, (0, 1, 2, 3), "d4rl")
    assert (cell.paper_mean, cell.paper_std, cell.paper_note) == (61.9, None, "published")
    assert cell.epochs == (12, 12)
    cell = table.cells[("hopper-medium", "cql", "cocoa")]
    assert (cell.mean, cell.std, cell.num_seeds) == (pytest.approx(71.0), pytest.approx(1.0), 2)
    assert (cell.paper_mean, cell.paper_std) == (66.0, 1.4)
    cell = table.cells[("walker2d-medium", "cql", "alone")]
    assert (cell.mean, cell.std, cell.num_seeds, cell.paper_mean) == (80.0, 0.0, 1, 79.5)
    assert ("walker2d-medium", "cql", "cocoa") not in table.cells
    cell = table.cells[("hopper-medium", "iql", "alone")]
    assert (cell.mean, cell.epochs, cell.paper_mean) == (40.0, (12, 12), 66.3)
    # average over the tasks present; the paper's average over the same tasks
    avg = table.cells[("average", "cql", "alone")]
    assert (avg.mean, avg.num_tasks, avg.num_seeds) == (pytest.approx(71.5), 2, 1)
    assert avg.paper_mean == pytest.approx((61.9 + 79.5) / 2) and avg.paper_note == "same tasks"
    assert math.isnan(avg.std)
    assert table.cells[("average", "cql", "cocoa")].mean == pytest.approx(71.0)
    # the replica block is separate, with its own average
    rep = table.cells[("hopper-medium [replica]", "cql", "alone")]
    assert (rep.mean, rep.std, rep.num_seeds, rep.data_kind) == (52.0, 2.0, 2, "replica")
    assert rep.paper_mean == 61.9
    assert table.cells[("average [replica]", "cql", "alone")].mean == pytest.approx(52.0)


def test_sample_std_on_request(runs_root: Path) -> None:
    table = build_table(find_policy_runs([runs_root]), ddof=1)
    assert table.cells[("hopper-medium", "cql", "alone")].std == pytest.approx(np.std([60, 62, 64, 66], ddof=1))
    assert math.isnan(table.cells[("walker2d-medium", "cql", "alone")].std)  # one seed


def test_markdown_and_csv(runs_root: Path, tmp_path: Path) -> None:
    table = build_table(find_policy_runs([runs_root]), algos=["cql", "mopo"], variants=["alone", "cocoa"])
    assert ("iql", "alone") not in table.columns and ("mopo", "cocoa") in table.columns
    text = format_markdown(table)
    lines = text.splitlines()
    assert lines[0] == "| Task | CQL alone | CQL +COCOA | MOPO alone | MOPO +COCOA |"
    assert lines[2] == ("| hopper-medium | 63.0±2.2 (paper 61.9) [4 seeds, D4RL file] "
                        "| 71.0±1.0 (paper 66.0±1.4) [2 seeds, D4RL file] | – (paper 62.8) "
                        "| – (paper 39.5±2.3) |")
    assert lines[3].startswith("| walker2d-medium | 80.0±0.0 (paper 79.5) [1 seed, D4RL file] | – (paper 83.1±0.3) |")
    assert lines[4].startswith("| Average | 71.5 (paper 70.7, same tasks) [2 tasks, ≥1 seeds, D4RL file] |")
    assert lines[5].startswith("| hopper-medium [replica] | 52.0±2.0 (paper 61.9) [2 seeds, replica] |")
    assert "population std (ddof=0)" in text
    path = write_csv(table, tmp_path / "out" / "table.csv")
    with open(path) as fh:
        rows = {(r["row"], r["algo"], r["variant"]): r for r in csv.DictReader(fh)}
    assert len(rows) == len(table.cells) == 7
    row = rows[("hopper-medium", "cql", "alone")]
    assert (row["mean"], row["num_seeds"], row["seeds"], row["data_kind"]) == ("63", "4", "0 1 2 3", "d4rl")
    assert float(row["std"]) == pytest.approx(math.sqrt(5), abs=1e-5)
    assert (row["paper_mean"], row["paper_std"], row["std_ddof"]) == ("61.9", "", "0")
    assert len(row["runs"].split(";")) == 4
    assert rows[("average [replica]", "cql", "alone")]["num_tasks"] == "1"


def test_full_row_uses_the_published_average(tmp_path: Path) -> None:
    cells = paper_cells()
    for task in PAPER_TASKS:
        fake_run(tmp_path, f"{task}-v2", "mopo", "alone", 0, constant(cells[(task, "mopo", "alone")].mean))
    table = build_table(find_policy_runs([tmp_path]))
    avg = table.cells[("average", "mopo", "alone")]
    assert (avg.paper_mean, avg.paper_note, avg.num_tasks) == (67.2, "published", 12)
    assert avg.mean == pytest.approx(67.192, abs=1e-3)


def test_resumed_csv_keeps_one_row_per_timestep(runs_root: Path) -> None:
    (path,) = runs_root.glob("hopper-medium-v2/iql/*/record/policy_training_progress.csv")
    columns = read_progress(path)
    assert columns["timestep"].tolist() == [1000.0 * i for i in range(1, 13)]


def test_data_kinds() -> None:
    assert data_kind(D4RL_SOURCE) == "d4rl"
    assert data_kind(REPLICA_SOURCE) == "replica"
    assert data_kind("anything", "replica:hopper-medium-v2") == "replica"
    assert data_kind("given in memory") == "memory"
    assert data_kind("Minari dataset mujoco/hopper/medium-v0 at /x") == "minari"
    assert data_kind(None) == "unknown"


def test_paper_reference_is_complete() -> None:
    cells = paper_cells()
    assert len(PAPER_TASKS) == 12 and len(cells) == 12 * 2 * 3 + 9 * 2 + 4 * 2
    assert ("hopper-random", "iql", "alone") not in cells
    assert cells[("halfcheetah-medium-expert", "mobile", "alone")].mean == 86.75
    assert cells[("hopper-medium-replay", "mopo", "cocoa")].text() == "71.4±30.1"
    for (task, algo, variant), cell in cells.items():
        if task == "average":  # the published averages agree with the cells (rounding)
            values: list[Optional[float]] = [cells[(t, algo, variant)].mean for t in PAPER_TASKS
                                             if (t, algo, variant) in cells]
            assert cell.mean == pytest.approx(np.mean(values), abs=0.05)


def test_make_table_script(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_table.TableConfig(roots=(str(runs_root),), csv=str(tmp_path / "t.csv"),
                                 markdown=str(tmp_path / "t.md"))
    make_table.main(cfg)
    out = capsys.readouterr().out
    assert "| hopper-medium | 63.0±2.2 (paper 61.9) [4 seeds, D4RL file]" in out
    assert (tmp_path / "t.md").read_text() in out + "\n" and (tmp_path / "t.csv").is_file()
