"""Locally made D4RL-protocol datasets: recording, names, behaviour policies, the script, SAC."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from offlinerlkit.datasets import (
    DatasetError,
    DatasetNotFoundError,
    find_dataset,
    load_dataset,
    qlearning_dataset,
    read_d4rl_hdf5,
    write_d4rl_hdf5,
)
from offlinerlkit.datasets.replica import (
    REPLICA_DIR_ENV,
    REPLICA_LEVELS,
    REPLICA_SOURCE,
    check_replica_metadata,
    concat_datasets,
    cut_dataset,
    find_replica_file,
    is_replica_task,
    replica_dataset_dir,
    replica_file_name,
    replica_policy_path,
    replica_task_name,
    rollout_dataset,
    split_replica_task,
)
from offlinerlkit.envs import make_env
from offlinerlkit.policy_trainer.online import Snapshot
from offlinerlkit.replica import (
    BehaviourPolicy,
    SACTrainOptions,
    choose_medium_snapshot,
    make_replica,
)
from offlinerlkit.utils.tasks import parse_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_dataset  # noqa: E402

TASK = "hopper-random-v2"
MAX_STEPS = 15  # short episodes, so that time limits appear in a small dataset


def _random_behaviour(seed: int = 0, hidden: tuple[int, ...] = (16, 16)) -> BehaviourPolicy:
    torch.manual_seed(seed)
    return BehaviourPolicy.build("hopper", "random", hidden)


def _rollout(num_samples: int = 2000, num_envs: int = 3, seed: int = 0):
    behaviour = _random_behaviour(seed)
    envs = [make_env(TASK, seed=seed + i) for i in range(num_envs)]
    return rollout_dataset(behaviour.act_fn(generator=torch.Generator().manual_seed(seed)), envs,
                           num_samples=num_samples, max_episode_steps=MAX_STEPS)


@pytest.fixture(scope="module")
def small_random(tmp_path_factory: pytest.TempPathFactory):
    """A 2000-step random hopper dataset written as a replica file."""
    rollout = _rollout()
    folder = tmp_path_factory.mktemp("replica")
    path = write_d4rl_hdf5(folder / replica_file_name(TASK), rollout.data,
                           metadata={"source": REPLICA_SOURCE})
    return rollout, path


def _episodes(terminals: np.ndarray, timeouts: np.ndarray) -> list[tuple[int, int]]:
    ends = np.flatnonzero(terminals | timeouts)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return list(zip(starts.tolist(), ends.tolist()))


# --------------------------------------------------------------------------- recording


def test_random_dataset_roundtrip_shapes_and_flags(small_random) -> None:
    rollout, path = small_random
    raw = read_d4rl_hdf5(path, task=TASK)
    n = 2000
    assert raw["observations"].shape == (n, 11) and raw["next_observations"].shape == (n, 11)
    assert raw["actions"].shape == (n, 3) and raw["rewards"].shape == (n,)
    assert raw["infos/qpos"].shape == (n, 6) and raw["infos/qvel"].shape == (n, 6)
    assert raw["infos/action_log_probs"].shape == (n,)
    terminals, timeouts = raw["terminals"], raw["timeouts"]
    assert terminals.dtype == bool and timeouts.dtype == bool
    assert not (terminals & timeouts).any()
    assert terminals.sum() > 5 and timeouts.sum() > 5  # both kinds of episode end occur
    assert terminals[-1] or timeouts[-1]  # the data never ends inside an episode
    check_replica_metadata(raw, source=str(path))
    # every episode is contiguous and a time limit falls exactly on its MAX_STEPS-th step
    for start, end in _episodes(terminals, timeouts)[:-1]:
        length = end - start + 1
        assert length <= MAX_STEPS
        if timeouts[end]:
            assert length == MAX_STEPS
        np.testing.assert_array_equal(raw["next_observations"][start:end],
                                      raw["observations"][start + 1:end + 1])
    # the statistics agree with the data
    assert rollout.num_episodes == len(_episodes(terminals, timeouts))
    assert len(rollout.episode_returns) in (rollout.num_episodes, rollout.num_episodes - 1)

    # the public loaders: qlearning_dataset drops time-limit rows and the last raw row
    q = qlearning_dataset(raw)
    kept = n - 1 - int(timeouts[:-1].sum())
    assert q["observations"].shape == (kept, 11) and q["terminals"].shape == (kept,)
    assert int(q["terminals"].sum()) == int(terminals[:-1].sum())


def test_public_loader_resolves_replica_names(small_random, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """`load_dataset("replica:...")` reads the replica folder and never D4RL's (and vice versa)."""
    _, path = small_random
    monkeypatch.setenv(REPLICA_DIR_ENV, str(path.parent))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    source = find_dataset(f"replica:{TASK}")
    assert source.kind == "replica" and source.path == path and "not D4RL" in source.description
    assert find_dataset(TASK, dataset_source="replica").task == f"replica:{TASK}"
    loaded = load_dataset(f"replica:{TASK}")
    q = qlearning_dataset(read_d4rl_hdf5(path))
    np.testing.assert_array_equal(loaded["observations"], q["observations"])
    np.testing.assert_array_equal(loaded["terminals"], q["terminals"])
    with pytest.raises(DatasetNotFoundError):
        find_dataset(TASK)  # the D4RL name never finds a replica
    with pytest.raises(DatasetError, match="replica"):
        load_dataset(TASK, dataset_path=path)  # nor is a replica file read as D4RL's


def test_replay_in_simulator_reproduces_observations_rewards_and_terminals(small_random) -> None:
    """qpos/qvel give the observation; stepping the action gives next obs, reward, terminal."""
    rollout, _ = small_random
    data = rollout.data
    env = make_env(TASK, seed=0)
    env.reset()
    sim = env.unwrapped
    for i in range(0, len(data["rewards"]), 7):
        sim.set_state(data["infos/qpos"][i], data["infos/qvel"][i])
        np.testing.assert_allclose(sim._get_obs().astype(np.float32), data["observations"][i],
                                   rtol=0, atol=1e-6)
        next_obs, reward, terminated, _, _ = env.step(data["actions"][i])
        np.testing.assert_allclose(next_obs, data["next_observations"][i], rtol=0, atol=1e-5)
        assert reward == pytest.approx(float(data["rewards"][i]), abs=1e-4)
        assert bool(terminated) == bool(data["terminals"][i]), i  # terminal iff it fell
        env.reset()
    env.close()


def test_action_log_probs_are_the_behaviour_log_probs(small_random) -> None:
    rollout, _ = small_random
    data = rollout.data
    assert np.isfinite(data["infos/action_log_probs"]).all()
    assert np.abs(data["actions"]).max() <= 1.0
    # stochastic behaviour: actions are not the actor's deterministic ones
    behaviour = _random_behaviour(0)
    mode, _ = behaviour.act_fn(deterministic=True)(data["observations"][:50])
    assert np.abs(mode - data["actions"][:50]).mean() > 1e-2


def test_rollout_is_exactly_num_samples_and_deterministic() -> None:
    first, second = _rollout(500, num_envs=4, seed=3), _rollout(500, num_envs=4, seed=3)
    assert len(first.data["rewards"]) == 500 and first.num_env_steps >= 500
    for key, value in first.data.items():
        np.testing.assert_array_equal(value, second.data[key], err_msg=key)
    single = _rollout(500, num_envs=1, seed=3)
    assert len(single.data["rewards"]) == 500


def test_cut_and_concat_keep_episode_ends() -> None:
    data = _rollout(300, num_envs=2).data
    cut = cut_dataset(data, 101)
    assert len(cut["rewards"]) == 101 and (cut["terminals"][-1] or cut["timeouts"][-1])
    assert not (cut["terminals"] & cut["timeouts"]).any()
    both = concat_datasets([cut, data])
    assert len(both["rewards"]) == 401
    np.testing.assert_array_equal(both["observations"][101:], data["observations"])
    inside = {k: v[:5] for k, v in data.items()}
    inside["terminals"], inside["timeouts"] = np.zeros(5, bool), np.zeros(5, bool)
    with pytest.raises(ValueError, match="inside an episode"):
        concat_datasets([inside, data])


# --------------------------------------------------------------------------- names and places


def test_replica_names_never_match_d4rl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert is_replica_task("replica:hopper-medium-v2") and not is_replica_task("hopper-medium-v2")
    assert split_replica_task(" replica:hopper-medium-v2") == (True, "hopper-medium-v2")
    assert replica_task_name("hopper-medium-replay-v2") == "replica:hopper-medium-replay-v2"
    for level in REPLICA_LEVELS:
        info = parse_task(f"walker2d-{level}-v2")
        name = replica_file_name(f"replica:{info.name}")
        assert name.endswith("-replica.hdf5") and name != info.d4rl_file_name
    assert replica_file_name("hopper-medium-replay-v2") == "hopper_medium_replay-v2-replica.hdf5"
    assert replica_policy_path(tmp_path, "hopper", "expert") == (
        tmp_path / "policies" / "hopper" / "expert.pt")
    with pytest.raises(ValueError):
        replica_policy_path(tmp_path, "hopper", "medium-replay")

    monkeypatch.setenv(REPLICA_DIR_ENV, str(tmp_path))
    assert replica_dataset_dir() == tmp_path
    with pytest.raises(DatasetNotFoundError, match="make_dataset.py"):
        find_replica_file("replica:hopper-medium-v2")
    (tmp_path / "hopper_medium-v2-replica.hdf5").write_bytes(b"")
    path, description = find_replica_file("replica:hopper-medium-v2")
    assert path == tmp_path / "hopper_medium-v2-replica.hdf5" and "not D4RL" in description
    assert find_replica_file("replica:hopper-medium-v2", dataset_path=tmp_path)[0] == path
    monkeypatch.delenv(REPLICA_DIR_ENV)
    assert replica_dataset_dir() == Path.home() / ".cocoa" / "replica"


def test_check_replica_metadata_rejects_other_sources() -> None:
    check_replica_metadata({"metadata/source": np.asarray(REPLICA_SOURCE)})
    with pytest.raises(DatasetError, match="not a locally made replica"):
        check_replica_metadata({"metadata/source": np.asarray("D4RL")})
    with pytest.raises(DatasetError):
        check_replica_metadata({})


# --------------------------------------------------------------------------- behaviour policies


def test_behaviour_policy_save_load_gives_same_actions(tmp_path: Path) -> None:
    behaviour = _random_behaviour(1, hidden=(32, 32))
    behaviour.info.update(eval_return=12.5, train_step=0)
    path = behaviour.save(tmp_path / "policies" / "hopper" / "random.pt")
    loaded = BehaviourPolicy.load(path)
    assert (loaded.robot, loaded.level, loaded.hidden_dims) == ("hopper", "random", (32, 32))
    assert loaded.info["eval_return"] == 12.5
    obs = np.random.default_rng(0).normal(size=(64, 11)).astype(np.float32)
    a1, _ = behaviour.act_fn(deterministic=True)(obs)
    a2, _ = loaded.act_fn(deterministic=True)(obs)
    np.testing.assert_array_equal(a1, a2)
    s1, lp1 = behaviour.act_fn(generator=torch.Generator().manual_seed(5))(obs)
    s2, lp2 = loaded.act_fn(generator=torch.Generator().manual_seed(5))(obs)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(lp1, lp2)
    with pytest.raises(FileExistsError):
        behaviour.save(path)
    (tmp_path / "other.pt").write_bytes(b"not a policy")
    with pytest.raises(ValueError):
        BehaviourPolicy.load(tmp_path / "other.pt")


def test_choose_medium_snapshot_closest_to_target() -> None:
    snaps = [Snapshot(step=s, actor_state={}, eval_return=r, eval_return_std=0.0,
                      train_return_avg=None, num_updates=0)
             for s, r in [(10, 5.0), (20, 40.0), (30, 35.0), (40, 120.0)]]
    assert choose_medium_snapshot(snaps, 38.0, exclude_step=40).step == 20
    assert choose_medium_snapshot(snaps, 37.5, exclude_step=40).step == 20  # tie: earliest
    assert choose_medium_snapshot(snaps, 200.0, exclude_step=40).step == 20  # never the expert
    assert choose_medium_snapshot(snaps[-1:], 0.0, exclude_step=40).step == 40


# --------------------------------------------------------------------------- the script


TINY = dict(train_steps=240, num_samples=300, hidden_dims=(16, 16), batch_size=16,
            start_steps=100, update_after=50, eval_every=60, eval_episodes=1,
            final_eval_episodes=1, num_envs=2, max_episode_steps=MAX_STEPS, progress=False,
            device="cpu", seed=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("made")
    cfg = make_dataset.MakeDatasetConfig(robot="hopper", out_dir=str(out), **TINY)
    return out, cfg, make_dataset.main(cfg)


def test_make_dataset_writes_all_levels_and_policies(tiny_run) -> None:
    out, cfg, result = tiny_run
    assert set(result.levels) == set(REPLICA_LEVELS)
    files = {lv: out / replica_file_name(f"hopper-{lv}-v2") for lv in REPLICA_LEVELS}
    assert all(f.is_file() for f in files.values())
    for lv in ("random", "medium", "expert"):
        assert (out / "policies" / "hopper" / f"{lv}.pt").is_file()
    raws = {lv: read_d4rl_hdf5(f, task=f"hopper-{lv}-v2") for lv, f in files.items()}
    for lv, raw in raws.items():
        check_replica_metadata(raw)
        assert str(raw["metadata/task"]) == f"replica:hopper-{lv}-v2"
        assert str(raw["metadata/simulator"]) == "Hopper-v4"
        assert str(raw["metadata/versions/gymnasium"]) and str(raw["metadata/versions/mujoco"])
        assert not (raw["terminals"] & raw["timeouts"]).any()
        assert raw["terminals"][-1] or raw["timeouts"][-1]
        for key in ("infos/qpos", "infos/qvel", "infos/action_log_probs", "next_observations"):
            assert key in raw
    for lv in ("random", "medium", "expert"):
        assert len(raws[lv]["rewards"]) == cfg.num_samples
    # medium-replay: SAC's data up to the medium snapshot; medium-expert: medium then expert
    assert len(raws["medium-replay"]["rewards"]) == result.medium_step
    assert int(raws["medium-replay"]["metadata/training/medium_step"]) == result.medium_step
    warm = raws["medium-replay"]["infos/action_log_probs"][: cfg.start_steps]
    np.testing.assert_allclose(warm, -3 * np.log(2.0), rtol=1e-6)  # uniform warm-up actions
    for key in ("observations", "actions", "terminals", "timeouts", "infos/qpos"):
        np.testing.assert_array_equal(
            raws["medium-expert"][key],
            np.concatenate([raws["medium"][key], raws["expert"][key]]), err_msg=key)
    assert result.levels["expert"].policy_step == cfg.train_steps
    # the SAC run's log records where its data went
    assert list((out / "logs").rglob("hyper_param.json"))
    assert list((out / "logs").rglob("policy_training_progress.csv"))


def test_make_dataset_never_overwrites_and_is_deterministic(tiny_run, tmp_path: Path) -> None:
    out, cfg, result = tiny_run
    before = (out / replica_file_name("hopper-random-v2")).stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_dataset.main(cfg)
    assert (out / replica_file_name("hopper-random-v2")).stat().st_mtime_ns == before
    # same seed, another folder: the same data
    again = make_dataset.main(make_dataset.MakeDatasetConfig(
        robot="hopper", out_dir=str(tmp_path), **{**TINY, "train_steps": 120},
        levels=("random", "medium-replay")))
    a = read_d4rl_hdf5(out / replica_file_name("hopper-random-v2"))
    b = read_d4rl_hdf5(again.levels["random"].path)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_make_dataset_samples_more_from_a_saved_policy(tiny_run, tmp_path: Path) -> None:
    out, cfg, _ = tiny_run
    policy = out / "policies" / "hopper" / "expert.pt"
    result = make_dataset.main(make_dataset.MakeDatasetConfig(
        policy=str(policy), out_dir=str(tmp_path), num_samples=120, seed=7, num_envs=2,
        max_episode_steps=MAX_STEPS, progress=False, device="cpu", final_eval_episodes=1))
    (level,) = result.levels.values()
    assert level.level == "expert" and level.num_rows == 120
    raw = read_d4rl_hdf5(level.path, task="hopper-expert-v2")
    assert int(raw["metadata/resampled_from_saved_policy"]) == 1
    assert str(raw["metadata/policy_file"]).endswith("expert.pt")
    with pytest.raises(ValueError, match="hopper policy"):
        make_dataset.main(make_dataset.MakeDatasetConfig(
            policy=str(policy), robot="walker2d", out_dir=str(tmp_path / "w"), num_samples=10,
            progress=False, device="cpu"))


def test_make_dataset_cli_and_validation() -> None:
    from offlinerlkit.utils.cli import parse_config

    cfg = parse_config(make_dataset.MakeDatasetConfig,
                       ["--task", "replica:walker2d-medium-v2", "--levels", "random", "expert",
                        "--train_steps", "1000", "--num_samples", "500"])
    assert cfg.resolved_robot == "walker2d" and cfg.levels == ("random", "expert")
    assert make_dataset.MakeDatasetConfig(robot="hopper").train_steps == 1_000_000
    assert make_dataset.MakeDatasetConfig(robot="hopper").num_samples == 1_000_000
    with pytest.raises(ValueError):
        make_dataset.MakeDatasetConfig()
    with pytest.raises(ValueError):
        make_dataset.MakeDatasetConfig(robot="hopper", levels=("full-replay",))


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_short_sac_run_improves_over_the_random_policy(tmp_path: Path) -> None:
    """Hopper, 20k online SAC steps (about 5 min here): the best snapshot, re-evaluated, is far
    above the randomly initialised policy, and so are the returns of the data it samples."""
    torch.manual_seed(0)
    options = SACTrainOptions(train_steps=20_000, start_steps=5_000, update_after=1_000,
                              eval_every=2_500, eval_episodes=5, final_eval_episodes=10,
                              expert_choice="best")
    result = make_replica("hopper", levels=("random", "expert"), out_dir=tmp_path, seed=0,
                          num_samples=5_000, options=options, num_envs=8)
    random_return = result.levels["random"].eval_return
    expert_return = result.levels["expert"].eval_return
    assert random_return is not None and expert_return is not None
    assert expert_return > max(3 * random_return, random_return + 200), (
        random_return, expert_return, result.eval_curve)
    assert result.levels["expert"].behaviour_return > 2 * result.levels["random"].behaviour_return
