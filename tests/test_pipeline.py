"""The pipeline driver: stages in order, artifact reuse by configuration, skip and resume."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from script_helpers import TINY
from sim_data import write_task_file

from offlinerlkit.pipeline import (
    FORWARD_DYNAMICS,
    PIPELINE_FILE,
    PipelinePlan,
    StageSpec,
    completed_epochs,
    find_artifact,
    load_policy_run,
    planned_work,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_mopo  # noqa: E402
import run_pipeline  # noqa: E402

TASK = "hopper-medium-replay-v2"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_file(tmp_path_factory.mktemp("d4rl"), TASK, num_steps=600)


def _run(log: Path, data: Path, *extra: str, algo: str = "iql", variant: str = "cocoa",
         seed: int = 0) -> dict:
    argv = ["--task", TASK, "--algo", algo, "--variant", variant, "--seed", str(seed),
            "--dataset_path", str(data), "--log_dir", str(log), "--device", "cpu",
            "--progress", "False", *TINY, *extra]
    return run_pipeline.run(argv).to_dict()


def _actions(result: dict) -> tuple:
    return tuple(None if result[s] is None else result[s]["action"]
                 for s in ("dynamics", "anchor_seeker", "policy"))


def _runs(log: Path) -> list[Path]:
    return sorted(p for p in log.glob("*/*/seed_*"))


def test_cocoa_stages_run_once_then_are_reused(tmp_path: Path, data: Path) -> None:
    log = tmp_path / "log"
    first = _run(log, data)
    assert _actions(first) == ("trained", "trained", "trained")
    policy = Path(first["policy"]["run"])
    assert policy.parent.name == "iql_cocoa" and (policy / "model" / "policy.pth").is_file()
    config = json.loads((policy / "record" / "hyper_param.json").read_text())["config"]
    assert config["load_dynamics_path"] == str((Path(first["dynamics"]["run"]) / "model").resolve())
    assert config["load_anchor_seeker_path"] == str(
        (Path(first["anchor_seeker"]["run"]) / "model").resolve())
    seeker_cfg = json.loads((Path(first["anchor_seeker"]["run"]) / "record" / "hyper_param.json")
                            .read_text())["config"]
    assert (seeker_cfg["scale_coef"], seeker_cfg["noise_coef"], seeker_cfg["seed"]) == (0.8, 0.1, 0)
    record = json.loads((policy / "record" / PIPELINE_FILE).read_text())
    assert (record["algo"], record["variant"], record["seed"], record["epochs"]) == ("iql", "cocoa", 0, 1)
    assert record["dynamics"] == first["dynamics"] and record["anchor_seeker"] == first["anchor_seeker"]
    made = _runs(log)
    assert len(made) == 3

    # the same pipeline again: nothing is trained
    again = _run(log, data)
    assert _actions(again) == ("reused", "reused", "skipped")
    assert again["policy"]["run"] == first["policy"]["run"] and _runs(log) == made
    history = json.loads((policy / "record" / PIPELINE_FILE).read_text())["history"]
    assert [h["policy"]["action"] for h in history] == ["trained", "skipped"]

    # another policy seed shares the dynamics and the seeker (artifact seeds: shared)
    other = _run(log, data, seed=1)
    assert _actions(other) == ("reused", "reused", "trained")
    assert other["dynamics"]["run"] == first["dynamics"]["run"]
    assert load_policy_run(other["policy"]["run"]).seed == 1

    # per-seed artifacts: seed 1 gets its own dynamics and seeker, trained with seed 1
    own = _run(log, data, "--artifact_seeds", "per_seed", seed=1)
    assert _actions(own) == ("trained", "trained", "trained")
    dyn_cfg = json.loads((Path(own["dynamics"]["run"]) / "record" / "hyper_param.json").read_text())
    assert dyn_cfg["config"]["seed"] == 1 and dyn_cfg["stage"] == "forward dynamics"

    # a changed stage configuration is not reused
    changed = _run(log, data, "--dynamics.dynamics_max_epochs", "1")
    assert _actions(changed) == ("trained", "reused", "trained")


def test_unfinished_policy_run_is_resumed(tmp_path: Path, data: Path) -> None:
    log = tmp_path / "log"
    args = ("--epoch", "2", "--checkpoint_freq", "1")
    first = _run(log, data, *args, variant="alone")
    assert _actions(first) == (None, None, "trained")
    run = Path(first["policy"]["run"])
    reference = load_policy_run(run)
    assert reference.epochs == 2 and completed_epochs(run) == 2
    # a run killed after epoch 1's checkpoint: no final model, no epoch-2 checkpoint
    (run / "model" / "policy.pth").unlink()
    (run / "checkpoint" / "policy_000002.pt").unlink()
    resumed = _run(log, data, *args, variant="alone")
    assert _actions(resumed) == (None, None, "resumed") and resumed["policy"]["run"] == str(run)
    after = load_policy_run(run)
    assert after.finished and after.epochs == 2 and completed_epochs(run) == 2
    assert after.scores.tolist() == reference.scores.tolist()  # same numbers as uninterrupted
    assert after.last_10 == reference.last_10
    # a longer budget extends the finished run
    longer = _run(log, data, "--epoch", "3", "--checkpoint_freq", "1", variant="alone")
    assert _actions(longer) == (None, None, "resumed") and completed_epochs(run) == 3
    assert len(_runs(log)) == 1


def test_stopped_artifact_runs_are_resumed_in_their_folders(tmp_path: Path, data: Path) -> None:
    """A dynamics or seeker run without its model file (stopped) is continued, not trained
    again elsewhere; the same seed and options give the same weights."""
    import torch

    log = tmp_path / "log"
    first = _run(log, data)
    dynamics, seeker = (Path(first[s]["run"]) for s in ("dynamics", "anchor_seeker"))
    files = {dynamics / "model" / "dynamics.pth", seeker / "model" / "anchor_seeker_pretrain.pth"}
    before = {f: torch.load(f, weights_only=True)["state_dict"] for f in files}
    for f in files:
        f.unlink()
    (Path(first["policy"]["run"]) / "model" / "policy.pth").unlink()
    argv = ["--task", TASK, "--algo", "iql", "--variant", "cocoa", "--dataset_path", str(data),
            "--log_dir", str(log), "--device", "cpu", "--progress", "False", *TINY]
    planned = planned_work(run_pipeline.build_plan(*run_pipeline.parse_args(argv)))
    assert (planned.dynamics, planned.anchor_seeker, planned.policy) == ("resume", "resume", "train")
    again = _run(log, data)
    assert _actions(again)[:2] == ("resumed", "resumed")
    assert (again["dynamics"]["run"], again["anchor_seeker"]["run"]) == (str(dynamics), str(seeker))
    for f, state in before.items():
        after = torch.load(f, weights_only=True)["state_dict"]
        assert all(torch.equal(after[k], v) for k, v in state.items()), f
    assert len(_runs(log)) == 3


def test_dynamics_from_run_mopo_are_reused(tmp_path: Path, data: Path) -> None:
    log = tmp_path / "log"
    tiny = dict(dynamics_hidden_dims=(16, 16), dynamics_weight_decay=(0.0, 0.0, 0.0),
                num_ensemble=3, num_elites=2, dynamics_max_epochs=2)
    made = run_mopo.main(run_mopo.MOPOConfig(task=TASK, seed=0, dataset_path=str(data),
                                             log_dir=str(log), device="cpu", progress=False, **tiny))
    result = _run(log, data, "--rollout_batch_size", "32", "--rollout_freq", "2", algo="mopo",
                  variant="alone")
    assert _actions(result) == ("reused", None, "trained")
    assert result["dynamics"]["run"] == str(made)
    assert Path(result["policy"]["run"]).parent.name.startswith("mopo_penalty_coef")


def test_artifacts_must_come_from_the_same_data(tmp_path: Path, data: Path) -> None:
    log = tmp_path / "log"
    plan = run_pipeline.build_plan(run_pipeline.PipelineConfig(
        task=TASK, algo="cql", variant="cocoa", dataset_path=str(data), log_dir=str(log),
        device="cpu", progress=False), TINY)
    assert plan.dynamics is not None and plan.dynamics.config.seed == 0
    source = f"dataset_path {data}"
    assert find_artifact(log, FORWARD_DYNAMICS, plan.dynamics.config, dataset_source=source) is None
    run = plan.dynamics.main(plan.dynamics.config)
    assert find_artifact(log, FORWARD_DYNAMICS, plan.dynamics.config, dataset_source=source) == run
    assert find_artifact(log, FORWARD_DYNAMICS, plan.dynamics.config,
                         dataset_source="dataset_path /elsewhere.hdf5") is None


def test_flags_are_routed_to_their_stages() -> None:
    groups = run_pipeline.split_flags(["--epoch", "3", "--num_ensemble=3", "--seeker.rollout_length",
                                       "4", "--dynamics.holdout_ratio", "0.3", "--target_entropy", "-3"])
    routed = run_pipeline.route_flags(groups, "mopo")
    assert routed["policy"] == ["--epoch", "3", "--target_entropy", "-3"]
    assert routed["dynamics"] == ["--num_ensemble", "3", "--holdout_ratio", "0.3"]
    assert routed["seeker"] == ["--num_ensemble", "3", "--rollout_length", "4"]
    with pytest.raises(run_pipeline.FlagError, match="run_cql.py"):
        run_pipeline.route_flags(run_pipeline.split_flags(["--rollout_batch_size", "3"]), "cql")
    assert run_pipeline.route_flags(run_pipeline.split_flags(["--rollout_batch_size", "3"]), "cql",
                                    strict=False)["policy"] == []
    with pytest.raises(run_pipeline.FlagError, match="every stage"):
        run_pipeline.route_flags(run_pipeline.split_flags(["--policy.seed", "3"]), "cql")
    with pytest.raises(run_pipeline.FlagError, match="prefix"):
        run_pipeline.route_flags(run_pipeline.split_flags(["--model.seed", "3"]), "cql")
    assert run_pipeline.unknown_flags(run_pipeline.split_flags(["--nope", "1", "--epoch", "2"]),
                                      ["cql", "iql"]) == ["--nope"]
    cfg, forwarded = run_pipeline.parse_args(["--algo", "iql", "--epoch", "2", "--seed", "3"])
    assert (cfg.algo, cfg.seed, forwarded) == ("iql", 3, ["--epoch", "2"])


def test_plan_checks_its_stages() -> None:
    plan = run_pipeline.build_plan(run_pipeline.PipelineConfig(task=TASK, algo="iql", variant="alone"))
    assert plan.dynamics is None and plan.anchor_seeker is None
    with pytest.raises(ValueError, match="anchor seeker"):
        PipelinePlan(algo="iql", variant="cocoa", policy=plan.policy,
                     dynamics=StageSpec(plan.policy.config, run_mopo.main))
    with pytest.raises(ValueError, match="forward dynamics"):
        PipelinePlan(algo="mopo", variant="alone", policy=plan.policy)


def test_runs_recorded_before_later_options_still_match(tmp_path: Path, data: Path) -> None:
    """A record without an option added later (e.g. `--anchor_cache`) counts as its old behaviour."""
    log = tmp_path / "log"
    first = _run(log, data, variant="alone")
    run = Path(first["policy"]["run"])
    record_file = run / "record" / "hyper_param.json"
    record = json.loads(record_file.read_text())
    for name in ("tf32", "bf16", "compile", "cuda_graphs", "anchor_cache"):
        record["config"].pop(name)
    record_file.write_text(json.dumps(record))
    again = _run(log, data, variant="alone")
    assert _actions(again) == (None, None, "skipped") and again["policy"]["run"] == str(run)
    other = _run(log, data, "--bf16", "True", variant="alone")  # not the old behaviour
    assert _actions(other) == (None, None, "trained") and other["policy"]["run"] != str(run)
