"""Tests of `offlinerlkit.utils.logger`: conversion, averaging, per-phase CSVs, TensorBoard,
hyper-parameters, resume (append) and the no-op logger."""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from offlinerlkit.utils.logger import PHASES, Logger, NoOpLogger, to_jsonable
from offlinerlkit.utils.run_dir import RunDir


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir.create(tmp_path, task="hopper-medium-v2", algo="cql", seed=0,
                         now=datetime(2024, 1, 1))


def _csv(run: RunDir, phase: str = "policy") -> list[list[str]]:
    with open(run.record / f"{phase}_training_progress.csv", newline="") as f:
        return list(csv.reader(f))


def test_values_become_floats_and_are_averaged() -> None:
    logger = NoOpLogger()
    logger.record("a", torch.tensor(1.0))
    logger.record("a", torch.tensor([3.0], requires_grad=True))
    logger.record("b", np.float32(0.5))
    logger.record_dict({"c": np.int64(4), "d": 2, "e": np.array(1.5), "f": torch.tensor([[2]])})
    row = logger.dump(10)
    assert row == {"a": 2.0, "b": 0.5, "c": 4.0, "d": 2.0, "e": 1.5, "f": 2.0}
    assert all(type(v) is float for v in row.values())
    assert list(row) == sorted(row)
    assert logger.dump(20) == {}  # cleared


@pytest.mark.parametrize("bad", ["1.0", None, torch.ones(2), np.zeros(3), [1.0], 1 + 2j])
def test_bad_values_raise_type_error_naming_the_key(bad: object) -> None:
    logger = NoOpLogger()
    with pytest.raises(TypeError, match="loss/critic"):
        logger.record("loss/critic", bad)


def test_record_dict_is_all_or_nothing() -> None:
    logger = NoOpLogger()
    with pytest.raises(TypeError, match="bad"):
        logger.record_dict({"good": 1.0, "bad": "x"})
    assert logger.dump(1) == {}


def test_reserved_and_invalid_keys() -> None:
    logger = NoOpLogger()
    with pytest.raises(ValueError, match="reserved"):
        logger.record("timestep", 1)
    with pytest.raises(ValueError, match="non-empty"):
        logger.record("", 1)


def test_constructor_validation(run: RunDir) -> None:
    with pytest.raises(ValueError, match="unknown logger backend"):
        Logger(run, backends=("console", "stdout"))
    with pytest.raises(ValueError, match="need a run_dir"):
        Logger(None)
    with pytest.raises(ValueError, match="wandb settings"):
        Logger(run, backends=("csv",), wandb={"project": "p"})


def test_wandb_missing_gives_install_hint(run: RunDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(ImportError, match="pip install wandb"):
        Logger(run, backends=("csv", "wandb"), wandb={"project": "p"})


def test_unknown_phase(run: RunDir) -> None:
    with Logger(run, backends=("csv",)) as logger:
        logger.record("a", 1)
        with pytest.raises(ValueError, match="anchor_seeker"):
            logger.dump(1, phase="eval")


def test_csv_header_grows_and_pads(run: RunDir) -> None:
    with Logger(run, backends=("csv",)) as logger:
        logger.record("loss/b", 1.0)
        logger.dump(100)
        assert _csv(run) == [["timestep", "loss/b"], ["100", "1.0"]]  # flushed per row
        logger.record_dict({"loss/b": 2.0, "loss/a": 0.25, "q/mean": 3})
        logger.dump(200)
        logger.record("loss/a", 0.5)
        logger.dump(300)
    assert _csv(run) == [
        ["timestep", "loss/b", "loss/a", "q/mean"],
        ["100", "1.0", "", ""],
        ["200", "2.0", "0.25", "3.0"],
        ["300", "", "0.5", ""],
    ]


def test_one_csv_per_phase(run: RunDir) -> None:
    with Logger(run, backends=("csv",)) as logger:
        logger.record("dynamics/holdout_loss", 0.1)
        logger.dump(1, phase="dynamics")
        logger.record("loss/actor", 1.0)
        logger.dump(1000)  # default phase: policy
        logger.record("dynamics/holdout_loss", 0.05)
        logger.dump(2, phase="dynamics")
        logger.record("bc/loss", 2.0)
        logger.dump(5, phase="anchor_seeker")
    assert _csv(run, "dynamics") == [["timestep", "dynamics/holdout_loss"], ["1", "0.1"],
                                     ["2", "0.05"]]
    assert _csv(run, "policy") == [["timestep", "loss/actor"], ["1000", "1.0"]]
    assert _csv(run, "anchor_seeker") == [["timestep", "bc/loss"], ["5", "2.0"]]
    assert not (run.record / "reverse_dynamics_training_progress.csv").exists()
    assert set(PHASES) == {"policy", "dynamics", "reverse_dynamics", "anchor_seeker"}


def test_console_table_and_backup(run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    with Logger(run, backends=("console",)) as logger:
        logger.info("starting")
        logger.record("loss/critic", 1.23456)
        logger.dump(7)
    out = capsys.readouterr().out
    assert "starting" in out
    assert re.search(r"^\| loss/critic +\| 1\.23 +\|$", out, re.M)
    assert re.search(r"^\| timestep +\| 7 +\|$", out, re.M) and "current_time" in out
    backup = (run.record / "consoleout_backup.txt").read_text()
    assert backup.startswith("starting\n") and out.endswith(backup[len("starting\n"):])


def test_reopen_appends(run: RunDir) -> None:
    with Logger(run, backends=("console", "csv")) as logger:
        logger.info("first session")
        logger.record("loss/a", 1.0)
        logger.dump(1)
        logger.record("loss/a", 2.0)
        logger.dump(2)
    with Logger(RunDir.open(run.path), backends=("console", "csv")) as logger:
        logger.info("second session")
        logger.record("loss/a", 3.0)
        logger.dump(3)
        logger.record_dict({"loss/a": 4.0, "loss/new": 9.0})
        logger.dump(4)
    assert _csv(run) == [["timestep", "loss/a", "loss/new"], ["1", "1.0", ""], ["2", "2.0", ""],
                         ["3", "3.0", ""], ["4", "4.0", "9.0"]]
    backup = (run.record / "consoleout_backup.txt").read_text()
    assert backup.index("first session") < backup.index("second session")


def test_reopen_after_row_cut_short(run: RunDir) -> None:
    path = run.record / "policy_training_progress.csv"
    path.write_text("timestep,loss/a\n1,1.0\n2,2.")  # killed mid-row
    with Logger(run, backends=("csv",)) as logger:
        logger.record("loss/a", 3.0)
        logger.dump(3)
    assert _csv(run)[-1] == ["3", "3.0"]


@dataclasses.dataclass(frozen=True)
class _Sub:
    lr: float = 3e-4
    dims: tuple[int, ...] = (256, 256)


def test_hyper_params_json_round_trip_without_mutation(run: RunDir) -> None:
    config = {
        "sub": _Sub(),
        "path": Path("/data/x.hdf5"),
        "action_dim": np.int64(6),
        "max_action": np.float32(1.0),
        "mu": np.array([0.5, 1.5]),
        "dtype": torch.float32,
        "device": torch.device("cpu"),
        "nested": {"list": [1, (2, 3)], 4: None, "flag": np.bool_(True)},
    }
    before = copy.deepcopy(config)
    with Logger(run, backends=("csv", "tensorboard")) as logger:
        written = logger.write_hyper_params(config)
    expected = {
        "sub": {"lr": 3e-4, "dims": [256, 256]},
        "path": "/data/x.hdf5",
        "action_dim": 6,
        "max_action": 1.0,
        "mu": [0.5, 1.5],
        "dtype": "torch.float32",
        "device": "cpu",
        "nested": {"list": [1, [2, 3]], "4": None, "flag": True},
    }
    text = (run.record / "hyper_param.json").read_text()
    assert json.loads(text) == expected == written
    assert "\n    " in text  # pretty-printed
    # The caller's object is untouched: same values and same (numpy) types.
    assert type(config["action_dim"]) is np.int64 and type(config["max_action"]) is np.float32
    assert isinstance(config["mu"], np.ndarray) and config["nested"]["list"][1] == (2, 3)
    assert config.keys() == before.keys() and config["sub"] == before["sub"]


def test_hyper_params_reject_unserialisable(run: RunDir) -> None:
    with Logger(run, backends=()) as logger:
        with pytest.raises(TypeError, match=r"config\.a\.fn"):
            logger.write_hyper_params({"a": {"fn": object()}})
    assert to_jsonable(_Sub()) == {"lr": 3e-4, "dims": [256, 256]}


def test_tensorboard_scalars_and_text(run: RunDir) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Logger(run, backends=("tensorboard",)) as logger:
        logger.write_hyper_params({"seed": 0})
        logger.record("loss/critic", torch.tensor(0.75))
        logger.dump(1000)
        logger.record("loss/critic", 0.5)
        logger.dump(2000, phase="dynamics")
    assert list(run.tb.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run.tb))
    acc.Reload()
    events = acc.Scalars("loss/critic")
    assert [(e.step, e.value) for e in events] == [(1000, 0.75), (2000, 0.5)]
    assert any(tag.startswith("hyperparameters") for tag in acc.Tags()["tensors"])


def test_noop_and_closed_logger(run: RunDir) -> None:
    logger = Logger(None, backends=())
    logger.record("x", 1)
    assert logger.dump(1) == {"x": 1.0}
    logger.info("ignored")
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        logger.dump(2)
    quiet = Logger(run, backends=())
    quiet.record("x", 1)
    quiet.dump(1)
    quiet.close()
    assert not list(run.record.glob("*.csv"))
