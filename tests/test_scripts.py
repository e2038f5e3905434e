"""Each policy script end to end on a simulator-made D4RL-format file (1 epoch x 2 steps)."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sim_data import write_task_file

from offlinerlkit.policy_trainer.mf import MFPolicyTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_cql  # noqa: E402
import run_iql  # noqa: E402
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402

TASK = "hopper-medium-v2"
COMMON = dict(task=TASK, epoch=1, step_per_epoch=2, batch_size=16, eval_episodes=1, device="cpu",
              progress=False, seed=0)
TINY_DYNAMICS = dict(dynamics_hidden_dims=(16, 16), dynamics_weight_decay=(0.0, 0.0, 0.0),
                     num_ensemble=3, num_elites=2, dynamics_max_epochs=2)
TINY_MB = dict(hidden_dims=(16, 16), rollout_batch_size=32, rollout_freq=2, checkpoint_freq=1,
               **TINY_DYNAMICS)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_file(tmp_path_factory.mktemp("d4rl"), TASK, num_steps=800)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(fh)]


def _check_policy_run(run: Path, keys: set[str]) -> None:
    for rel in ("record/hyper_param.json", "record/consoleout_backup.txt", "model/policy.pth",
                "checkpoint/policy_000001.pt"):
        assert (run / rel).is_file(), rel
    (row,) = _rows(run)
    assert keys <= set(row), set(row)
    assert all(np.isfinite(float(row[k])) for k in keys)
    assert json.loads((run / "record" / "hyper_param.json").read_text())["dataset_source"]


def test_run_cql(tmp_path: Path, data_file: Path) -> None:
    cfg = run_cql.CQLConfig(**COMMON, dataset_path=str(data_file), log_dir=str(tmp_path),
                            hidden_dims=(16, 16), num_repeat_actions=2)
    run = run_cql.main(cfg)
    _check_policy_run(run, {"loss/actor", "loss/critic1", "loss/critic2", "alpha",
                            "eval/normalized_episode_reward", "eval/last_10_performance"})


def test_run_iql(tmp_path: Path, data_file: Path) -> None:
    cfg = run_iql.IQLConfig(**COMMON, dataset_path=str(data_file), log_dir=str(tmp_path),
                            hidden_dims=(16, 16))
    run = run_iql.main(cfg)
    _check_policy_run(run, {"loss/actor", "loss/q1", "loss/q2", "loss/v",
                            "eval/normalized_episode_reward"})
    saved = json.loads((run / "record" / "hyper_param.json").read_text())
    assert saved["reward_transform"]


@pytest.mark.parametrize("script", [run_mopo, run_mobile], ids=["mopo", "mobile"])
def test_model_based_two_stages_and_resume(tmp_path: Path, data_file: Path, script) -> None:
    cfg_cls = run_mopo.MOPOConfig if script is run_mopo else run_mobile.MOBILEConfig
    # stage A: no --load_dynamics_path -> dynamics in model/, then stop
    dyn_run = script.main(cfg_cls(**COMMON, dataset_path=str(data_file), log_dir=str(tmp_path / "a"),
                                  **TINY_MB))
    assert (dyn_run / "model" / "dynamics.pth").is_file()
    assert (dyn_run / "checkpoint_last" / "dynamics.pth").is_file()
    assert not (dyn_run / "record" / "policy_training_progress.csv").exists()
    # the task preset was applied (hopper-medium: rollout length 5) and recorded in the folder name
    assert "rollout_length-5" in dyn_run.parent.name
    # stage C: policy, then resume equals an uninterrupted run
    policy_cfg = dict(COMMON, dataset_path=str(data_file), load_dynamics_path=str(dyn_run / "model"),
                      **TINY_MB)
    straight = script.main(cfg_cls(**{**policy_cfg, "epoch": 2}, log_dir=str(tmp_path / "s")))
    keys = ({"loss/actor", "loss/critic1", "rollout_info/num_transitions"} if script is run_mopo
            else {"loss/actor", "loss/critic", "rollout_info/num_transitions"})
    assert keys <= set(_rows(straight)[0])
    interrupted = _interrupt_after_first_checkpoint(
        lambda: script.main(cfg_cls(**{**policy_cfg, "epoch": 2}, log_dir=str(tmp_path / "r"))))
    first = next((tmp_path / "r").glob(f"{TASK}/*/seed_*"))
    assert interrupted and not (first / "model" / "policy.pth").exists()
    resumed = script.main(cfg_cls(**{**policy_cfg, "epoch": 2, "resume": str(first)},
                                  log_dir=str(tmp_path / "r")))
    assert _rows(resumed) == _rows(straight)
    a = torch.load(straight / "model" / "policy.pth")
    b = torch.load(resumed / "model" / "policy.pth")
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
    saved = json.loads((straight / "record" / "hyper_param.json").read_text())
    assert saved["resolved"]["rollout_length"] == 5
    assert saved["resolved_from"]["rollout_length"].startswith("preset:")


def _interrupt_after_first_checkpoint(run) -> bool:
    """Run `run()` but stop it like a kill right after its first checkpoint is written."""
    original = MFPolicyTrainer.save

    def save_then_stop(self: MFPolicyTrainer) -> None:
        original(self)
        raise KeyboardInterrupt

    MFPolicyTrainer.save = save_then_stop  # type: ignore[method-assign]
    try:
        run()
    except KeyboardInterrupt:
        return True
    finally:
        MFPolicyTrainer.save = original  # type: ignore[method-assign]
    return False


def test_wrong_dynamics_task_is_refused(tmp_path: Path, data_file: Path) -> None:
    dyn_run = run_mopo.main(run_mopo.MOPOConfig(**COMMON, dataset_path=str(data_file),
                                                log_dir=str(tmp_path), **TINY_MB))
    other = dict(COMMON, task="hopper-medium-replay-v2")
    with pytest.raises(ValueError, match="hopper-medium-v2"):
        run_mopo.main(run_mopo.MOPOConfig(**other, dataset_path=str(data_file), log_dir=str(tmp_path),
                                          load_dynamics_path=str(dyn_run), **TINY_MB))
