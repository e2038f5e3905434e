"""The whole COCOA pipeline on a simulator-made D4RL file: dynamics, anchor seeker, 4 policies."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sim_data import write_task_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_anchor_seeker  # noqa: E402
import run_cql  # noqa: E402
import run_dynamics  # noqa: E402
import run_iql  # noqa: E402
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402

TASK = "hopper-medium-replay-v2"
COMMON = dict(task=TASK, device="cpu", progress=False, seed=0)
TINY_DYN = dict(dynamics_hidden_dims=(16, 16), dynamics_weight_decay=(0.0, 0.0, 0.0),
                num_ensemble=3, num_elites=2, dynamics_max_epochs=2)
FAST = dict(epoch=1, step_per_epoch=2, batch_size=16, eval_episodes=1)
TINY_NETS = dict(hidden_dims=(16, 16), fg_hidden_dims=(8, 8), embedding_dim=2)


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cocoa")
    data = write_task_file(root / "d4rl", TASK, num_steps=800)
    dyn = run_dynamics.main(run_dynamics.DynamicsRunConfig(
        **COMMON, **TINY_DYN, dataset_path=str(data), log_dir=str(root / "log")))
    seeker = run_anchor_seeker.main(run_anchor_seeker.AnchorSeekerConfig(
        **COMMON, **TINY_DYN, dataset_path=str(data), log_dir=str(root / "log"),
        rollout_length=3, seeker_epochs=3, anchor_seeker_hidden_dims=(16, 16)))
    return {"root": root, "data": data, "dynamics": dyn, "seeker": seeker}


def test_stage_b_writes_the_original_files(stages: dict[str, Path]) -> None:
    run = stages["seeker"]
    assert run.parent.name == "reverse_action_mode-sample_scale_coef-0.8_noise_coef-0.1"
    for rel in ("model/anchor_seeker_pretrain.pth", "model/reverse_dynamics.pth",
                "checkpoint_last/reverse_dynamics.pth", "checkpoint_best/reverse_dynamics.pth",
                "result/reverse_imagination.pkl", "record/hyper_param.json",
                "record/reverse_dynamics_training_progress.csv",
                "record/anchor_seeker_training_progress.csv"):
        assert (run / rel).is_file(), rel
    with open(run / "record" / "anchor_seeker_training_progress.csv") as fh:
        losses = [float(r["train/anchor_seeking_loss"]) for r in csv.DictReader(fh)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    with open(run / "record" / "reverse_dynamics_training_progress.csv") as fh:
        columns = set(next(csv.DictReader(fh)))  # the original's names for the reverse model
    assert {"loss/reverse_dynamics_train_loss", "loss/reverse_dynamics_holdout_loss"} <= columns
    assert not any(c.startswith("loss/dynamics_") for c in columns)


@pytest.mark.parametrize("name", ["cql", "iql", "mopo", "mobile"])
def test_policy_with_cocoa(stages: dict[str, Path], name: str) -> None:
    module = {"cql": run_cql, "iql": run_iql, "mopo": run_mopo, "mobile": run_mobile}[name]
    cfg_cls = {"cql": run_cql.CQLConfig, "iql": run_iql.IQLConfig, "mopo": run_mopo.MOPOConfig,
               "mobile": run_mobile.MOBILEConfig}[name]
    extra = dict(num_repeat_actions=2) if name == "cql" else {}
    if name in ("mopo", "mobile"):
        extra = dict(rollout_batch_size=32, rollout_freq=2, **TINY_DYN)
    cfg = cfg_cls(**COMMON, **FAST, **TINY_NETS, **extra, dataset_path=str(stages["data"]),
                  log_dir=str(stages["root"] / "log"),
                  load_dynamics_path=str(stages["dynamics"] / "model"),
                  load_anchor_seeker_path=str(stages["seeker"] / "model"),
                  actor_horizon_len=1, critic_horizon_len=1)
    run = module.main(cfg)
    assert run.parent.name.startswith(f"{name}_cocoa")
    assert (run / "model" / "policy.pth").is_file()
    with open(run / "record" / "policy_training_progress.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert np.isfinite(float(row["loss/actor"])) and "eval/normalized_episode_reward" in row
    saved = json.loads((run / "record" / "hyper_param.json").read_text())
    assert saved["cocoa"]["cocoa"] is True and saved["cocoa"]["actor_horizon_len"] == 1
    assert saved["config"]["load_anchor_seeker_path"] == str(stages["seeker"] / "model")


def test_different_horizons_and_plain_critics(stages: dict[str, Path]) -> None:
    cfg = run_iql.IQLConfig(**COMMON, **FAST, **TINY_NETS, dataset_path=str(stages["data"]),
                            log_dir=str(stages["root"] / "log2"),
                            load_dynamics_path=str(stages["dynamics"]),
                            load_anchor_seeker_path=str(stages["seeker"]),
                            actor_horizon_len=2, critic_horizon_len=0, anchor_delta_critics=False)
    run = run_iql.main(cfg)
    saved = json.loads((run / "record" / "hyper_param.json").read_text())["cocoa"]
    assert saved["anchor_delta_critics"] is False and saved["actor_horizon_len"] == 2


def test_closest_delta_ablation_runs_without_a_seeker(stages: dict[str, Path]) -> None:
    cfg = run_cql.CQLConfig(**COMMON, **FAST, **TINY_NETS, dataset_path=str(stages["data"]),
                            log_dir=str(stages["root"] / "log3"), anchor_mode="top_10_d",
                            closest_obs_sample_size=20, num_repeat_actions=2)
    run = run_cql.main(cfg)
    assert json.loads((run / "record" / "hyper_param.json").read_text())["cocoa"]["anchor_mode"] == "top_10_d"


def test_cocoa_misconfigurations_are_refused(stages: dict[str, Path]) -> None:
    base = dict(**COMMON, **FAST, **TINY_NETS, dataset_path=str(stages["data"]),
                log_dir=str(stages["root"] / "bad"))
    with pytest.raises(ValueError, match="--load_dynamics_path"):
        run_cql.main(run_cql.CQLConfig(**base, num_repeat_actions=2,
                                       load_anchor_seeker_path=str(stages["seeker"] / "model")))
    with pytest.raises(ValueError, match="need anchors"):
        run_cql.main(run_cql.CQLConfig(**base, num_repeat_actions=2, anchor_delta_actor=True))
    # dynamics and a seeker trained for another task are refused
    other = dict(base, task="hopper-medium-v2")
    with pytest.raises(ValueError, match=TASK):
        run_iql.main(run_iql.IQLConfig(**other, load_dynamics_path=str(stages["dynamics"]),
                                       load_anchor_seeker_path=str(stages["seeker"] / "model")))
