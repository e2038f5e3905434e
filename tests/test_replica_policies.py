"""Replica datasets from saved behaviour policies (make_dataset.py --policies): the same data as
the run that trained them, medium-replay re-created, and the shipped policies themselves."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from offlinerlkit.datasets import read_d4rl_hdf5
from offlinerlkit.datasets.replica import replica_file_name, replica_policy_path
from offlinerlkit.replica import BehaviourPolicy
from offlinerlkit.replica.from_policies import (
    SHIPPED,
    SHIPPED_ROOT,
    make_from_policies,
    shipped_robots,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_dataset  # noqa: E402

TINY = dict(train_steps=240, num_samples=300, hidden_dims=(16, 16), batch_size=16,
            start_steps=100, update_after=50, eval_every=60, eval_episodes=1,
            final_eval_episodes=1, num_envs=2, max_episode_steps=15, progress=False,
            device="cpu", seed=0)
KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
        "infos/qpos", "infos/action_log_probs")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    make_dataset.main(make_dataset.MakeDatasetConfig(robot="hopper", out_dir=str(out), **TINY))
    return out


def _same(a: Path, b: Path) -> None:
    ra, rb = read_d4rl_hdf5(a), read_d4rl_hdf5(b)
    for key in KEYS:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)


def test_policies_give_the_data_of_the_run_that_trained_them(trained: Path, tmp_path: Path) -> None:
    result = make_dataset.main(make_dataset.MakeDatasetConfig(
        robot="hopper", policies=str(trained), out_dir=str(tmp_path),
        **{k: v for k, v in TINY.items() if k != "train_steps"}))
    assert set(result.levels) == {"random", "medium", "expert", "medium-expert"}  # the default
    for level in result.levels:
        name = replica_file_name(f"hopper-{level}-v2")
        _same(trained / name, tmp_path / name)
    raw = read_d4rl_hdf5(tmp_path / replica_file_name("hopper-medium-v2"))
    provenance = json.loads(str(raw["metadata/policy_provenance"]))
    assert provenance["train_step"] == int(raw["metadata/policy_train_step"]) > 0
    assert "hidden_dims" in json.loads(provenance["sac_options"])


def test_medium_replay_is_re_created_by_sac_up_to_the_medium_step(trained: Path,
                                                                  tmp_path: Path) -> None:
    result = make_from_policies("hopper", source=trained, levels=("medium-replay",),
                                out_dir=tmp_path, seed=0, num_samples=10, num_envs=2,
                                max_episode_steps=15)
    name = replica_file_name("hopper-medium-replay-v2")
    _same(trained / name, tmp_path / name)  # same machine and threads: the same SAC run
    assert int(read_d4rl_hdf5(tmp_path / name)["metadata/recreated"]) == 1
    assert result.levels["medium-replay"].policy_step > 0


def test_missing_policies_and_existing_outputs_are_refused(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="walker2d"):
        make_from_policies("walker2d", source=trained, levels=("medium",), out_dir=tmp_path,
                           seed=0, num_samples=10)
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_from_policies("hopper", source=trained, levels=("random",), out_dir=trained,
                           seed=0, num_samples=10)
    with pytest.raises(ValueError, match="not both"):
        make_dataset.MakeDatasetConfig(robot="hopper", policies=SHIPPED, policy="x.pt")


def _check_shipped(root: Path, robot: str) -> None:
    provenance = json.loads((root / "policies" / robot / "provenance.json").read_text())
    for level in ("random", "medium", "expert"):
        policy = BehaviourPolicy.load(replica_policy_path(root, robot, level))
        assert (policy.robot, policy.level) == (robot, level)
        info = provenance["levels"][level]
        for key in ("eval_return", "eval_return_normalized", "eval_episodes", "train_step", "seed"):
            assert policy.info[key] == info[key], (robot, level, key)
        for key in ("command", "code_commit", "sac_options", "version_mujoco"):
            assert policy.info[key], (robot, level, key)
    assert provenance["command"].startswith("python run_example/make_dataset.py --robot " + robot)
    for key in ("code_commit", "versions", "train_steps", "sac_options"):
        assert provenance[key], (robot, key)


def test_ship_policies_copies_weights_with_provenance(trained: Path, tmp_path: Path) -> None:
    import ship_policies

    (run,) = (trained / "logs").glob("replica-hopper/online_sac/seed_0_*")
    dest = ship_policies.main(ship_policies.ShipConfig(run=str(run), dest=str(tmp_path)))
    assert dest == tmp_path / "policies" / "hopper"
    _check_shipped(tmp_path, "hopper")
    with pytest.raises(FileExistsError, match="--overwrite"):
        ship_policies.main(ship_policies.ShipConfig(run=str(run), dest=str(tmp_path)))
    # the shipped copies sample the same data as the run's own policies
    out = tmp_path / "data"
    make_from_policies("hopper", source=tmp_path, levels=("expert",), out_dir=out, seed=0,
                       num_samples=TINY["num_samples"], num_envs=2, max_episode_steps=15)
    name = replica_file_name("hopper-expert-v2")
    _same(trained / name, out / name)


def test_every_shipped_policy_loads_with_its_provenance() -> None:
    shipped = shipped_robots()
    assert "hopper" in shipped, "the hopper behaviour policies must ship with the package"
    for robot in shipped:
        _check_shipped(SHIPPED_ROOT, robot)


def test_shipped_hopper_policies_are_of_d4rl_strength() -> None:
    """The recorded deterministic 10-episode evaluations meet issue 13's targets."""
    provenance = json.loads((SHIPPED_ROOT / "policies" / "hopper" / "provenance.json").read_text())
    levels = provenance["levels"]
    assert levels["expert"]["eval_return_normalized"] >= 90
    assert 25 <= levels["medium"]["eval_return_normalized"] <= 50
    assert levels["expert"]["train_step"] == provenance["train_steps"] == 1_000_000
