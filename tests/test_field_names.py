"""Config fields named for what they are; the original's spellings still work everywhere.

The original's names stay command-line aliases (`--tr_hidden_dims` for `--fg_hidden_dims`), and
the `hyper_param.json` of a run saved under the old names still resumes and is still reused by
the pipeline (`utils.fields.upgrade_saved`). `--asp_layernorm` meant two things: the f/g
LayerNorms of the policy scripts (`--fg_layernorm`) and the seeker's (`--seeker_layernorm`).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from offlinerlkit.pipeline.artifacts import ANCHOR_SEEKER, find_artifact, find_policy_run
from offlinerlkit.utils.cli import parse_config
from offlinerlkit.utils.fields import config_to_dict, upgrade_saved
from offlinerlkit.utils.resume import resumed_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_anchor_seeker  # noqa: E402
import run_cql  # noqa: E402
import run_iql  # noqa: E402
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402
import run_pipeline  # noqa: E402
import run_td3bc  # noqa: E402

TASK = "hopper-medium-v2"
POLICY_CONFIGS = [run_cql.CQLConfig, run_iql.IQLConfig, run_mopo.MOPOConfig,
                  run_mobile.MOBILEConfig, run_td3bc.TD3BCConfig]
#: The original's spellings that were field names and are now only flags and saved names.
FORMER_NAMES = {"tr_hidden_dims", "actor_transd", "critic_transd", "asp_layernorm", "asp_epoch",
                "asp_lr", "asp_batch_size"}


@pytest.mark.parametrize("cls", [*POLICY_CONFIGS, run_anchor_seeker.AnchorSeekerConfig],
                         ids=lambda c: c.__name__)
def test_no_field_keeps_a_former_name(cls: type) -> None:
    assert {f.name for f in dataclasses.fields(cls)} & FORMER_NAMES == set()


@pytest.mark.parametrize("cls", POLICY_CONFIGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("argv, field, value", [
    (["--tr_hidden_dims", "8", "8"], "fg_hidden_dims", (8, 8)),
    (["-thd", "8"], "fg_hidden_dims", (8,)),
    (["--actor_transd", "False"], "anchor_delta_actor", False),
    (["-ct", "0"], "anchor_delta_critics", False),
    (["--asp_layernorm", "False"], "fg_layernorm", False),
    (["-aln"], "fg_layernorm", True),
])
def test_policy_scripts_take_the_original_spellings(cls: type, argv: list[str], field: str,
                                                    value: object) -> None:
    assert getattr(parse_config(cls, ["--task", TASK, *argv]), field) == value


@pytest.mark.parametrize("argv, field, value", [
    (["--asp_layernorm", "False"], "seeker_layernorm", False),
    (["--asp_epoch", "3"], "seeker_epochs", 3),
    (["-aspe", "4"], "seeker_epochs", 4),
    (["--asp_lr", "0.01"], "seeker_lr", 0.01),
    (["-bbs", "64"], "seeker_batch_size", 64),
])
def test_the_seeker_script_takes_the_original_spellings(argv: list[str], field: str,
                                                        value: object) -> None:
    cfg = parse_config(run_anchor_seeker.AnchorSeekerConfig, ["--task", TASK, *argv])
    assert getattr(cfg, field) == value


def test_mobile_reward_zscore_keeps_norm_reward_as_its_flag() -> None:
    assert parse_config(run_mobile.MOBILEConfig, ["-nr"]).zscore_rewards is True
    assert parse_config(run_mobile.MOBILEConfig, ["--norm_reward", "False"]).zscore_rewards is False


def test_upgrade_saved_maps_former_names_and_drops_unset_ones() -> None:
    old = {"task": TASK, "tr_hidden_dims": [8, 8], "actor_transd": None, "critic_transd": False,
           "fg_layernorm": True, "asp_layernorm": False}
    assert upgrade_saved(run_cql.CQLConfig, old) == {
        "task": TASK, "fg_hidden_dims": [8, 8], "anchor_delta_actor": None,
        "anchor_delta_critics": False, "fg_layernorm": False}
    unset = {"fg_layernorm": True, "asp_layernorm": None}  # None: the flag was not given
    assert upgrade_saved(run_cql.CQLConfig, unset) == {"fg_layernorm": True}
    older = {"fg_layernorm": False, "asp_layernorm": None}
    assert upgrade_saved(run_cql.CQLConfig, older) == {"fg_layernorm": False}
    assert upgrade_saved(run_cql.CQLConfig, {"asp_layernorm": None}) == {"fg_layernorm": True}
    seeker = {"seeker_layernorm": True, "asp_layernorm": False, "asp_epoch": 7}
    assert upgrade_saved(run_anchor_seeker.AnchorSeekerConfig, seeker) == {
        "seeker_layernorm": False, "seeker_epochs": 7}


def _old_record(run: Path, config: dict, **extra: object) -> Path:
    (run / "record").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "record" / "hyper_param.json").write_text(json.dumps({"config": config, **extra}))
    return run


def _as_saved_before_the_rename(config: object, renames: dict[str, str]) -> dict:
    saved = config_to_dict(config)
    for old, new in renames.items():
        saved[old] = saved.pop(new)
    return json.loads(json.dumps(saved))


def test_a_run_saved_under_the_former_names_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    started = run_cql.CQLConfig(task=TASK, fg_hidden_dims=(8, 8), anchor_delta_critics=False,
                                fg_layernorm=False, epoch=3)
    saved = _as_saved_before_the_rename(started, {"tr_hidden_dims": "fg_hidden_dims",
                                                   "critic_transd": "anchor_delta_critics",
                                                   "actor_transd": "anchor_delta_actor"})
    saved["asp_layernorm"] = False  # the old way of turning the f/g LayerNorms off
    saved["fg_layernorm"] = True
    _old_record(run, saved)
    resumed = resumed_config(run_cql.CQLConfig(resume=str(run)))
    assert resumed == dataclasses.replace(started, resume=str(run))
    # an option given again under its original spelling is checked against the saved value
    given = parse_config(run_cql.CQLConfig, ["--resume", str(run), "--tr_hidden_dims", "8", "8"])
    assert given.fg_hidden_dims == (8, 8)
    with pytest.raises(SystemExit):
        parse_config(run_cql.CQLConfig, ["--resume", str(run), "--tr_hidden_dims", "16"])


def test_the_pipeline_reuses_artifacts_saved_under_the_former_names(tmp_path: Path) -> None:
    source = "the same data"
    seeker_cfg = run_anchor_seeker.AnchorSeekerConfig(task=TASK, seeker_epochs=3, log_dir=str(tmp_path))
    seeker_run = _old_record(tmp_path / "hopper-medium-v2" / "reverse" / "seed_0_old",
                             _as_saved_before_the_rename(seeker_cfg, {"asp_epoch": "seeker_epochs",
                                                                      "asp_lr": "seeker_lr",
                                                                      "asp_batch_size": "seeker_batch_size"}),
                             stage=ANCHOR_SEEKER.stage, dataset_source=source)
    (seeker_run / "model" / ANCHOR_SEEKER.model_file).write_bytes(b"")
    assert find_artifact(tmp_path, ANCHOR_SEEKER, seeker_cfg, dataset_source=source) == seeker_run
    other = dataclasses.replace(seeker_cfg, seeker_epochs=4)
    assert find_artifact(tmp_path, ANCHOR_SEEKER, other, dataset_source=source) is None

    policy_cfg = run_iql.IQLConfig(task=TASK, fg_hidden_dims=(8, 8), log_dir=str(tmp_path), epoch=2)
    policy_run = _old_record(tmp_path / "hopper-medium-v2" / "iql" / "seed_0_old",
                             _as_saved_before_the_rename(policy_cfg, {"tr_hidden_dims": "fg_hidden_dims",
                                                                      "actor_transd": "anchor_delta_actor",
                                                                      "critic_transd": "anchor_delta_critics"}),
                             dataset_source=source)
    state = find_policy_run(tmp_path, policy_cfg, epochs=2, dataset_source=source)
    assert state is not None and state.run == policy_run
    assert find_policy_run(tmp_path, dataclasses.replace(policy_cfg, fg_hidden_dims=(4,)),
                           epochs=2, dataset_source=source) is None


@pytest.mark.parametrize("flag", ["--seeker.asp_epoch", "--seeker.seeker_epochs"])
def test_pipeline_flags_route_under_both_spellings(flag: str) -> None:
    routed = run_pipeline.route_flags([[flag, "2"], ["--tr_hidden_dims", "8"],
                                       ["--fg_hidden_dims", "8"]], "iql")
    assert routed["seeker"] == [flag.replace("seeker.", ""), "2"]
    assert routed["policy"] == ["--tr_hidden_dims", "8", "--fg_hidden_dims", "8"]
