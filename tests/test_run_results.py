"""`run_results.py`: the results grid end to end on tiny replica data (Ray sweeps), skipping
finished cells, resuming a stopped one, and the page's numbers against the run folders."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from script_helpers import TINY_MODELS, TINY_SEEKER

from offlinerlkit.pipeline import completed_epochs, find_policy_runs, load_policy_run
from offlinerlkit.pipeline.grid import Budget, Rates, estimate, grid_cells
from offlinerlkit.pipeline.report import ResultRow, analysis_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_results  # noqa: E402

TASK = "replica:hopper-medium-v2"
TINY_NETS = ["--batch_size", "16", "--hidden_dims", "16", "16", "--fg_hidden_dims", "8", "8",
             "--embedding_dim", "2"]


def _argv(root: Path, *extra: str) -> list[str]:
    return ["--tasks", TASK, "--budgets", "bc=4", "iql=4", "iql+cocoa=4", "--seeds", "0", "1",
            "--step_per_epoch", "2", "--eval_episodes", "1", "--checkpoint_freq", "1",
            "--num_samples", "1500", "--log_dir", str(root / "log"),
            "--page", str(root / "docs" / "RESULTS.md"),
            "--figures_dir", str(root / "docs" / "results"), "--timing_repeats", "1",
            *TINY_NETS, *TINY_MODELS, *TINY_SEEKER, *extra]


def _history(run: Path) -> list[dict]:
    return json.loads((run / "record" / "pipeline.json").read_text())["history"]


def test_budgets_and_cells() -> None:
    assert Budget.parse("iql+cocoa=100000") == Budget("iql", "cocoa", 100000)
    assert Budget.parse("bc=20").label == "bc"
    for bad in ("bc+cocoa=10", "iql", "iql+x=5", "nope=3", "iql=0"):
        with pytest.raises(ValueError):
            Budget.parse(bad)
    cells = grid_cells(["a", "b"], [Budget("iql", "alone", 6), Budget("cql", "alone", 4)],
                       [0, 1], step_per_epoch=2)
    assert len(cells) == 8 and [c.epochs for c in cells[:4]] == [3, 3, 2, 2]
    with pytest.raises(ValueError, match="multiple"):
        grid_cells(["a"], [Budget("iql", "alone", 5)], [0], step_per_epoch=2)


def test_estimate_counts_what_is_left() -> None:
    rates = Rates(updates={("iql", "alone"): 100.0}, env_steps=1000.0, dynamics_steps=10.0,
                  sac_steps=50.0)
    cell = grid_cells(["t"], [Budget("iql", "alone", 1000)], [0], step_per_epoch=100)[0]
    est = estimate([(cell, "train", 0), (cell, "resume", 4), (cell, "skip", 10)], rates,
                   eval_episodes=2, artifacts=[("dyn", 30.0)], parallel=2)
    per_epoch = 100 / 100.0 + 2 * 1000 / 1000.0  # updates + two full-length episodes
    assert [c.seconds for c in est.cells] == [10 * per_epoch, 6 * per_epoch, 0.0]
    assert est.total == pytest.approx(16 * per_epoch + 30) and est.wall == pytest.approx(est.total / 2)


def test_dry_run_lists_the_cells_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture
                                                  ) -> None:
    run_results.main(_argv(tmp_path, "--dry_run"))
    out = capsys.readouterr().out
    for algo in ("bc", "iql", "iql+cocoa"):
        for seed in (0, 1):
            assert f"{algo} {TASK} seed {seed}" in out
    assert out.count("to train") == 6 and "Estimate of what is left" in out
    assert "steps/s" in out and "forward dynamics" in out and f"dataset {TASK}" in out
    assert not (tmp_path / "log").exists() and not (tmp_path / "docs").exists()


def test_analysis_counts_only_compared_tasks() -> None:
    def row(task: str, variant: str, scores: tuple[float, ...]) -> ResultRow:
        seeds = tuple(range(len(scores)))
        return ResultRow(task=task, algo="iql", variant=variant, steps=100, seeds=seeds,
                         scores=scores, wall_seconds=tuple(1.0 for _ in seeds),
                         missing=tuple(s for s in (0, 1) if s not in seeds), paper=None)

    rows = [row("hopper-medium", "alone", (30.0, 32.0)), row("hopper-medium", "cocoa", (40.0, 42.0)),
            row("hopper-medium-replay", "alone", (37.0,)), row("hopper-medium-replay", "cocoa", (30.0,)),
            row("hopper-medium-expert", "alone", ()), row("hopper-medium-expert", "cocoa", ())]
    lines = analysis_lines(rows)
    assert "* hopper-medium: COCOA 41.0 ± 1.0 vs alone 31.0 ± 1.0 (2 and 2 seeds), difference " \
           "+10.0, larger than the seed spread (2.0): COCOA is higher here." in lines
    assert "* hopper-medium-expert: not comparable yet (finished seeds: alone 0, COCOA 0)." in lines
    assert ("* Over 2 tasks: mean difference +1.5; COCOA higher beyond the spread on 1, lower "
            "beyond it on 0, within it on 0, undecided (one seed on a side) on 1; 1 more not "
            "comparable yet.") in lines


def test_unknown_flags_are_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit, match="--nope"):
        run_results.parse_args(["--nope", "1"])
    with pytest.raises(SystemExit):
        run_results.parse_args(["--tasks", "hopper-medium-v2"])
    assert "is not a replica task" in capsys.readouterr().err


def test_page_command_writes_home_as_tilde() -> None:
    home = str(Path.home())
    shown = run_results.display_command(["--report_only", "--data_dir", f"{home}/data", "--log_dir", "/tmp/a b"])
    assert shown == "python run_example/run_results.py --data_dir ~/data --log_dir '/tmp/a b'"


def _expected(log: Path) -> dict[tuple[str, str], tuple[float, float, list[float]]]:
    """Mean, population std and scores of each (algo, variant), read from the run folders."""
    runs = [r for r in find_policy_runs([log]) if r.finished]
    out = {}
    for key in {(r.algo, r.variant) for r in runs}:
        scores = [r.last_10 for r in sorted(runs, key=lambda r: r.seed) if (r.algo, r.variant) == key]
        out[key] = (float(np.mean(scores)), float(np.std(scores)), scores)
    return out


def _command(*argv: str) -> str:
    """Run the script as the command line does (its own process, so Ray's process-wide state
    stays out of this one); returns its output."""
    proc = subprocess.run([sys.executable, run_results.__file__, *argv], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_grid_runs_skips_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    pytest.importorskip("matplotlib")
    log, page = tmp_path / "log", tmp_path / "docs" / "RESULTS.md"
    _command(*_argv(tmp_path))
    assert (log / "data" / "hopper_medium-v2-replica.hdf5").is_file()
    runs = sorted(log.glob("replica-hopper-medium-v2/*/seed_*"))
    policy_runs = [r for r in runs if r.parent.name in ("bc", "iql", "iql_cocoa")]
    assert len(policy_runs) == 6 and all((r / "model" / "policy.pth").is_file() for r in policy_runs)
    assert all(_history(r)[-1]["policy"]["action"] == "trained" for r in policy_runs)

    # the page: every row's numbers as computed here from the run folders, and the analysis
    expected = _expected(log)
    assert set(expected) == {("bc", "alone"), ("iql", "alone"), ("iql", "cocoa")}
    text = page.read_text()
    assert "replica data, reduced budget" in text.lower()
    with h5py.File(log / "data" / "hopper_medium-v2-replica.hdf5", "r") as h5:
        data_score = float(h5["metadata/behaviour_return_normalized"][()])
    assert f"| hopper-medium | {data_score:.1f} |" in text.split("## Table")[0]
    for (algo, variant), (mean, std, _) in expected.items():
        name = algo.upper() + (" + COCOA" if variant == "cocoa" else "")
        assert f"| hopper-medium | {name} | {mean:.1f} ± {std:.1f} | 2 | 4 |" in text
    (ma, sa, _), (mc, sc, _) = expected[("iql", "alone")], expected[("iql", "cocoa")]
    verdict = "larger than the seed spread" if abs(mc - ma) > sa + sc else "within the seed spread"
    assert (f"* hopper-medium: COCOA {mc:.1f} ± {sc:.1f} vs alone {ma:.1f} ± {sa:.1f} (2 and 2 "
            f"seeds), difference {mc - ma:+.1f}, {verdict}") in text
    assert "| hopper-medium | IQL + COCOA |" in text and "| 65.5±1.5 |" in text  # the paper's
    figure = tmp_path / "docs" / "results" / "learning_curves.png"
    assert "](results/learning_curves.png)" in text
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size < 300_000
    assert "forward dynamics" in text and "anchor seeker" in text

    # the same command again: every cell finished, no sweep, nothing trained or touched
    out = _command(*_argv(tmp_path))
    assert out.count("finished; skipped") == 2 and "Ray Tune" not in out
    assert sorted(log.glob("replica-hopper-medium-v2/*/seed_*")) == runs
    assert all(len(_history(r)) == 1 for r in policy_runs)

    # a run stopped after its first epoch's checkpoint is resumed; the others are skipped
    stopped = next(r for r in policy_runs if r.parent.name == "iql" and r.name.startswith("seed_0"))
    before = load_policy_run(stopped)
    (stopped / "model" / "policy.pth").unlink()
    (stopped / "checkpoint" / "policy_000002.pt").unlink()
    assert "resume 1/2" in _command(*_argv(tmp_path, "--dry_run"))
    assert "Ray Tune" in _command(*_argv(tmp_path))
    assert sorted(log.glob("replica-hopper-medium-v2/*/seed_*")) == runs
    after = load_policy_run(stopped)
    assert after.finished and completed_epochs(stopped) == 2
    assert [h["policy"]["action"] for h in _history(stopped)] == ["trained", "resumed"]
    assert after.scores.tolist() == before.scores.tolist() and after.last_10 == before.last_10
    others = [r for r in policy_runs if r != stopped]
    # BC's sweep was not started; the other IQL trials found their runs finished
    assert all(len(_history(r)) == 1 for r in others if r.parent.name == "bc")
    assert all([h["policy"]["action"] for h in _history(r)] == ["trained", "skipped"]
               for r in others if r.parent.name != "bc")
    assert _expected(log) == expected and not math.isnan(after.last_10)
