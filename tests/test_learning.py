"""Learning regression (slow): IQL and BC learn on data of the shipped hopper medium policy.

Thresholds come from measurements on the 2-core development CPU (10 x 1000 gradient steps on
100,000 rows sampled with seed 0, one thread: IQL last-10 score 20.4, BC 22.5; in the main job at
the same budget IQL 19.0, BC 22.7; the behaviour policy scores 36.4, a random policy 1.5), with a
wide margin: a change that breaks learning (scores near the random policy's) fails, run-to-run
noise does not. One thread, so that a busy machine does not stall it: about 8 minutes with two
other trainings on the machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from offlinerlkit.pipeline import load_policy_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_dataset  # noqa: E402
import run_bc  # noqa: E402
import run_iql  # noqa: E402

TASK = "replica:hopper-medium-v2"
BUDGET = dict(epoch=10, step_per_epoch=1000, eval_episodes=5, threads=1, progress=False,
              device="cpu", seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shipped")
    make_dataset.main(make_dataset.MakeDatasetConfig(
        robot="hopper", levels=("medium",), policies="shipped", num_samples=100_000, seed=0,
        out_dir=str(out), progress=False, device="cpu"))
    return out


def _last_10(run: Path) -> float:
    """The run's final `eval/last_10_performance`, as the result tables read it."""
    result = load_policy_run(run)
    assert result is not None, f"{run} is not a finished policy run"
    return result.last_10


@pytest.mark.slow
def test_iql_learns_on_shipped_medium_data(data: Path, tmp_path: Path) -> None:
    run = run_iql.main(run_iql.IQLConfig(task=TASK, dataset_path=str(data),
                                         log_dir=str(tmp_path), **BUDGET))
    assert _last_10(run) >= 10.0  # measured 20.4; a random policy scores 1.5


@pytest.mark.slow
def test_bc_learns_on_shipped_medium_data(data: Path, tmp_path: Path) -> None:
    run = run_bc.main(run_bc.BCConfig(task=TASK, dataset_path=str(data), log_dir=str(tmp_path),
                                      **BUDGET))
    assert _last_10(run) >= 15.0  # measured 22.5
