"""Tests for `offlinerlkit.datasets`: qlearning_dataset, D4RL HDF5 I/O and dataset lookup."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from offlinerlkit.datasets import (
    DatasetError,
    DatasetNotFoundError,
    DatasetSource,
    find_dataset,
    load_dataset,
    load_from_source,
    qlearning_dataset,
    read_d4rl_hdf5,
    read_hdf5_metadata,
    write_d4rl_hdf5,
)
from offlinerlkit.utils.tasks import TaskError, parse_task

TASK = "hopper-medium-replay-v2"
FILE_NAME = parse_task(TASK).d4rl_file_name  # hopper_medium_replay-v2.hdf5
OBS_DIM, ACT_DIM = 11, 3


# --------------------------------------------------------------------------- reference


def reference_qlearning_dataset(dataset, terminate_on_end=False, max_episode_steps=1000):
    """D4RL / OfflineRL-Kit `qlearning_dataset`, literally (env._max_episode_steps passed in)."""
    has_next_obs = True if "next_observations" in dataset.keys() else False
    N = dataset["rewards"].shape[0]
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    use_timeouts = False
    if "timeouts" in dataset:
        use_timeouts = True
    episode_step = 0
    for i in range(N - 1):
        obs = dataset["observations"][i].astype(np.float32)
        if has_next_obs:
            new_obs = dataset["next_observations"][i].astype(np.float32)
        else:
            new_obs = dataset["observations"][i + 1].astype(np.float32)
        action = dataset["actions"][i].astype(np.float32)
        reward = dataset["rewards"][i].astype(np.float32)
        done_bool = bool(dataset["terminals"][i])
        if use_timeouts:
            final_timestep = dataset["timeouts"][i]
        else:
            final_timestep = episode_step == max_episode_steps - 1
        if (not terminate_on_end) and final_timestep:
            episode_step = 0
            continue
        if done_bool or final_timestep:
            episode_step = 0
            if not has_next_obs:
                continue
        obs_.append(obs)
        next_obs_.append(new_obs)
        action_.append(action)
        reward_.append(reward)
        done_.append(done_bool)
        episode_step += 1
    obs_dim = dataset["observations"].shape[1]
    act_dim = dataset["actions"].shape[1]
    return {
        "observations": np.array(obs_, dtype=np.float32).reshape(-1, obs_dim),
        "actions": np.array(action_, dtype=np.float32).reshape(-1, act_dim),
        "next_observations": np.array(next_obs_, dtype=np.float32).reshape(-1, obs_dim),
        "rewards": np.array(reward_, dtype=np.float32),
        "terminals": np.array(done_, dtype=bool),
    }


def episodic_raw(rng, n, *, max_steps, p_terminal, next_obs, timeouts, obs_dim=3, act_dim=2):
    """Random D4RL-like raw data: episodes end at a terminal or at `max_steps` (a timeout)."""
    terminals = np.zeros(n, dtype=bool)
    timeout_flags = np.zeros(n, dtype=bool)
    step = 0
    for i in range(n):
        if rng.random() < p_terminal:
            terminals[i] = True
            step = 0
        elif step == max_steps - 1:
            timeout_flags[i] = True
            step = 0
        else:
            step += 1
    raw = {
        "observations": rng.normal(size=(n, obs_dim)),  # float64, as the loop casts
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": terminals,
    }
    if next_obs:
        raw["next_observations"] = rng.normal(size=(n, obs_dim))
    if timeouts:
        raw["timeouts"] = timeout_flags
    return raw


def assert_same_transitions(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


# --------------------------------------------------------------------------- qlearning_dataset


@pytest.mark.parametrize("terminate_on_end", [False, True])
@pytest.mark.parametrize("timeouts", [False, True])
@pytest.mark.parametrize("next_obs", [False, True])
def test_qlearning_matches_reference_loop(next_obs, timeouts, terminate_on_end):
    rng = np.random.default_rng([int(next_obs), int(timeouts), int(terminate_on_end)])
    for _ in range(60):
        n = int(rng.integers(1, 80))
        max_steps = int(rng.integers(1, 9))
        p_terminal = float(rng.choice([0.0, 0.05, 0.2, 0.6, 1.0]))
        raw = episodic_raw(rng, n, max_steps=max_steps, p_terminal=p_terminal,
                           next_obs=next_obs, timeouts=timeouts)
        # the counter and the timeouts key may disagree: use a different limit for the loop
        loop_steps = int(rng.integers(1, 9))
        got = qlearning_dataset(raw, terminate_on_end=terminate_on_end,
                                max_episode_steps=loop_steps)
        want = reference_qlearning_dataset(raw, terminate_on_end, loop_steps)
        assert_same_transitions(got, want)


@pytest.mark.parametrize("terminate_on_end", [False, True])
@pytest.mark.parametrize("next_obs", [False, True])
def test_qlearning_matches_reference_on_long_episodes(next_obs, terminate_on_end):
    """D4RL-sized episodes (limit 1000) with terminals mid-way, no timeouts key: the counter."""
    rng = np.random.default_rng(7)
    raw = episodic_raw(rng, 30_000, max_steps=1000, p_terminal=0.0015, next_obs=next_obs,
                       timeouts=False)
    # a terminal exactly on the counter's limit row (999) restarts the counter at 0, not 1,
    # which moves every later limit of that stretch; more terminals around later limits
    raw["terminals"][:4000] = False
    raw["terminals"][[999, 2998, 3500, 3501]] = True
    got = qlearning_dataset(raw, terminate_on_end=terminate_on_end)
    want = reference_qlearning_dataset(raw, terminate_on_end, 1000)
    assert_same_transitions(got, want)


def test_qlearning_kept_terminal_leaves_counter_at_one():
    """The quirk: a kept terminal row resets the counter to 0, then `+= 1` makes it 1."""
    n, limit = 12, 4
    raw = {
        "observations": np.arange(n, dtype=np.float64)[:, None],
        "next_observations": np.arange(n, dtype=np.float64)[:, None] + 100,
        "actions": np.zeros((n, 1)),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.zeros(n, dtype=bool),
    }
    raw["terminals"][1] = True
    got = qlearning_dataset(raw, max_episode_steps=limit)
    # rows: 0 (step 0), 1 terminal kept -> counter 1; rows 2, 3 (counter 1, 2); row 4 has
    # counter 3 == limit - 1: skipped; then 5, 6, 7 (0, 1, 2); 8 skipped; 9, 10; 11 dropped (last)
    np.testing.assert_array_equal(got["rewards"], [0, 1, 2, 3, 5, 6, 7, 9, 10])
    np.testing.assert_array_equal(got["terminals"], [False, True] + [False] * 7)
    assert_same_transitions(got, reference_qlearning_dataset(raw, False, limit))


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("next_obs", [False, True])
def test_qlearning_short_datasets(n, next_obs):
    rng = np.random.default_rng(n)
    for terminal in (False, True):
        raw = episodic_raw(rng, n, max_steps=1000, p_terminal=0.0, next_obs=next_obs,
                           timeouts=False)
        raw["terminals"][:] = terminal
        got = qlearning_dataset(raw)
        want = reference_qlearning_dataset(raw)
        assert_same_transitions(got, want)
        assert got["observations"].shape == (len(want["rewards"]), 3)
    assert qlearning_dataset(episodic_raw(rng, 1, max_steps=5, p_terminal=0, next_obs=next_obs,
                                          timeouts=True))["rewards"].shape == (0,)


def test_qlearning_output_types_and_column_inputs():
    rng = np.random.default_rng(3)
    raw = episodic_raw(rng, 50, max_steps=10, p_terminal=0.1, next_obs=True, timeouts=True)
    want = reference_qlearning_dataset(raw)
    raw["rewards"] = raw["rewards"][:, None]  # (N, 1) columns are accepted, as D4RL does
    raw["terminals"] = raw["terminals"].astype(np.float32)[:, None]
    got = qlearning_dataset(raw)
    assert_same_transitions(got, want)
    assert got["observations"].dtype == np.float32 and got["terminals"].dtype == bool


def test_qlearning_rejects_bad_input():
    rng = np.random.default_rng(4)
    raw = episodic_raw(rng, 20, max_steps=5, p_terminal=0.1, next_obs=False, timeouts=False)
    with pytest.raises(DatasetError, match="missing"):
        qlearning_dataset({k: v for k, v in raw.items() if k != "actions"})
    with pytest.raises(DatasetError, match="actions"):
        qlearning_dataset({**raw, "actions": raw["actions"][:-1]})


def test_qlearning_is_fast_on_d4rl_sized_data():
    import time

    rng = np.random.default_rng(5)
    n = 1_000_000
    raw = {
        "observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "actions": rng.normal(size=(n, ACT_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < 0.002,
    }
    start = time.perf_counter()
    out = qlearning_dataset(raw)
    assert time.perf_counter() - start < 3.0
    assert 0.99 * n < len(out["rewards"]) < n


# --------------------------------------------------------------------------- HDF5 files


def d4rl_arrays(rng, n=300, *, obs_dim=OBS_DIM, act_dim=ACT_DIM, next_obs=True):
    """A D4RL v2 style dict with infos, episodes of at most 100 steps."""
    raw = episodic_raw(rng, n, max_steps=100, p_terminal=0.01, next_obs=next_obs,
                       timeouts=True, obs_dim=obs_dim, act_dim=act_dim)
    raw["observations"] = raw["observations"].astype(np.float32)
    if next_obs:
        raw["next_observations"] = raw["next_observations"].astype(np.float32)
    raw["infos/qpos"] = rng.normal(size=(n, 6))
    raw["infos/qvel"] = rng.normal(size=(n, 6))
    raw["infos/action_log_probs"] = rng.normal(size=n).astype(np.float32)
    return raw


def write_raw_h5(path: Path, arrays: dict) -> Path:
    """Write arrays with plain h5py (no validation), to make broken files."""
    with h5py.File(path, "w") as h5:
        for key, value in arrays.items():
            h5.create_dataset(key, data=value)
    return path


def test_write_then_read_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    raw = d4rl_arrays(rng)
    path = tmp_path / "nested" / "folder" / FILE_NAME
    meta = {"algorithm": "SAC", "iteration": 7, "policy": {"fc0/weight": np.ones((2, 3))},
            "names": ["a", "b"]}
    assert write_d4rl_hdf5(path, raw, metadata=meta) == path
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temp file left behind

    with h5py.File(path, "r") as h5:
        assert h5["observations"].dtype == np.float32 and h5["terminals"].dtype == bool
        assert h5["timeouts"].dtype == bool and h5["rewards"].shape == (300,)
        assert isinstance(h5["infos"], h5py.Group) and isinstance(h5["metadata"], h5py.Group)
        assert h5["metadata/policy/fc0/weight"].shape == (2, 3)

    back = read_d4rl_hdf5(path, task=TASK)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts",
                "next_observations", "infos/qpos", "infos/qvel", "infos/action_log_probs"):
        np.testing.assert_array_equal(back[key], raw[key], err_msg=key)
    assert str(back["metadata/algorithm"]) == "SAC"
    assert int(back["metadata/iteration"]) == 7
    assert list(back["metadata/names"]) == ["a", "b"]


def test_read_metadata_only(tmp_path):
    path = write_d4rl_hdf5(tmp_path / FILE_NAME, d4rl_arrays(np.random.default_rng(1)),
                           metadata={"algorithm": "SAC", "score": 36.4, "policy": {"step": 5}})
    meta = read_hdf5_metadata(path)
    assert sorted(meta) == ["metadata/algorithm", "metadata/policy/step", "metadata/score"]
    assert str(meta["metadata/algorithm"]) == "SAC" and float(meta["metadata/score"]) == 36.4
    assert read_hdf5_metadata(write_d4rl_hdf5(tmp_path / "bare.hdf5",
                                              d4rl_arrays(np.random.default_rng(2)))) == {}
    with pytest.raises(DatasetError, match="no such dataset file"):
        read_hdf5_metadata(tmp_path / "nowhere.hdf5")
    (tmp_path / "notes.hdf5").write_text("not an hdf5 file\n")
    with pytest.raises(DatasetError, match="notes.hdf5: cannot be read as HDF5"):
        read_hdf5_metadata(tmp_path / "notes.hdf5")


def test_write_refuses_to_overwrite(tmp_path):
    rng = np.random.default_rng(1)
    path = write_d4rl_hdf5(tmp_path / FILE_NAME, d4rl_arrays(rng))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True") as err:
        write_d4rl_hdf5(path, d4rl_arrays(rng, n=50))
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    write_d4rl_hdf5(path, d4rl_arrays(rng, n=50), overwrite=True)
    assert read_d4rl_hdf5(path)["rewards"].shape == (50,)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_write_validates_before_writing(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / FILE_NAME
    raw = d4rl_arrays(rng)
    bad_cases = {
        "missing": {k: v for k, v in raw.items() if k != "timeouts"},
        "length": {**raw, "actions": raw["actions"][:-1]},
        "nan": {**raw, "rewards": np.where(np.arange(300) == 5, np.nan, raw["rewards"])},
        "flags": {**raw, "terminals": np.full(300, 0.5)},
        "unknown key": {**raw, "extra": np.zeros(300)},
        "infos length": {**raw, "infos/qpos": raw["infos/qpos"][:10]},
    }
    for case, data in bad_cases.items():
        with pytest.raises(DatasetError, match=FILE_NAME):
            write_d4rl_hdf5(path, data)
        assert not path.exists(), case
    with pytest.raises(DatasetError, match="metadata"):
        write_d4rl_hdf5(path, raw, metadata={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_read_file_without_next_observations_or_timeouts(tmp_path):
    """Older D4RL files: no next_observations, no timeouts; the loader uses the counter."""
    rng = np.random.default_rng(3)
    raw = episodic_raw(rng, 2500, max_steps=1000, p_terminal=0.002, next_obs=False,
                       timeouts=False, obs_dim=OBS_DIM, act_dim=ACT_DIM)
    path = write_raw_h5(tmp_path / "old.hdf5", raw)
    got = load_dataset(TASK, dataset_path=path)
    assert_same_transitions(got, reference_qlearning_dataset(raw, False, 1000))


def test_read_reports_missing_key(tmp_path):
    raw = d4rl_arrays(np.random.default_rng(4))
    del raw["terminals"]
    path = write_raw_h5(tmp_path / "missing.hdf5", raw)
    with pytest.raises(DatasetError, match=r"missing.hdf5: missing required dataset\(s\) \['terminals'\]"):
        read_d4rl_hdf5(path)


def test_read_reports_inconsistent_lengths(tmp_path):
    raw = d4rl_arrays(np.random.default_rng(5))
    raw["rewards"] = raw["rewards"][:-3]
    path = write_raw_h5(tmp_path / "lengths.hdf5", raw)
    with pytest.raises(DatasetError, match="lengths.hdf5: per-step datasets have different") as err:
        read_d4rl_hdf5(path)
    assert "rewards: 297" in str(err.value) and "observations: 300" in str(err.value)


def test_read_reports_wrong_sizes_for_task(tmp_path):
    raw = d4rl_arrays(np.random.default_rng(6), obs_dim=17, act_dim=6)  # halfcheetah sizes
    path = write_d4rl_hdf5(tmp_path / "cheetah.hdf5", raw)
    read_d4rl_hdf5(path)  # fine without a task
    read_d4rl_hdf5(path, task="halfcheetah-medium-v2")
    with pytest.raises(DatasetError, match="cheetah.hdf5: 'observations' has size 17") as err:
        read_d4rl_hdf5(path, task=TASK)
    assert "has 11" in str(err.value) and TASK in str(err.value)
    with pytest.raises(DatasetError, match="'observations' has size 17"):
        load_dataset(TASK, dataset_path=path)


@pytest.mark.parametrize(("bad", "word"), [(np.nan, "NaN"), (np.inf, "infinite"),
                                           (-np.inf, "infinite")])
def test_read_reports_non_finite_values(tmp_path, bad, word):
    raw = d4rl_arrays(np.random.default_rng(7))
    raw["observations"][42, 3] = bad
    path = write_raw_h5(tmp_path / "values.hdf5", raw)
    with pytest.raises(DatasetError, match=f"values.hdf5: 'observations' contains 1 {word}") as e:
        read_d4rl_hdf5(path)
    assert "first at row 42" in str(e.value)


def test_read_reports_truncated_and_non_hdf5_files(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "chopped.hdf5", d4rl_arrays(np.random.default_rng(8)))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="chopped.hdf5: cannot be read as HDF5") as err:
        read_d4rl_hdf5(path)
    assert "truncated" in str(err.value)
    text = tmp_path / "notes.hdf5"
    text.write_text("not an hdf5 file\n")
    with pytest.raises(DatasetError, match="notes.hdf5: cannot be read as HDF5"):
        read_d4rl_hdf5(text)
    empty = tmp_path / "empty.hdf5"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.hdf5"):
        load_dataset(TASK, dataset_path=empty)


def test_read_reports_missing_file(tmp_path):
    path = tmp_path / "nowhere" / FILE_NAME
    with pytest.raises(DatasetError, match="no such dataset file") as err:
        read_d4rl_hdf5(path)
    assert isinstance(err.value, FileNotFoundError) and str(path) in str(err.value)


# --------------------------------------------------------------------------- lookup and loading


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No D4RL_DATASET_DIR, HOME in tmp_path, and no d4rl package."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    monkeypatch.setattr("offlinerlkit.datasets.loading._d4rl_package_dirs", lambda: None)
    return home


def test_load_with_explicit_dataset_path(tmp_path, clean_env, caplog):
    raw = d4rl_arrays(np.random.default_rng(9))
    path = write_d4rl_hdf5(tmp_path / "mine.hdf5", raw)
    with caplog.at_level(logging.INFO, logger="offlinerlkit.datasets"):
        got = load_dataset(TASK, dataset_path=path)
    assert_same_transitions(got, reference_qlearning_dataset(raw, False, 1000))
    assert str(path) in caplog.text
    source = find_dataset(TASK, dataset_path=str(path))
    assert source == DatasetSource(kind="path", path=path, description=f"dataset_path {path}",
                                   task=TASK)
    # a folder holding the task's file works too
    write_d4rl_hdf5(tmp_path / "dir" / FILE_NAME, raw)
    assert find_dataset(TASK, dataset_path=tmp_path / "dir").path == tmp_path / "dir" / FILE_NAME
    got_toe = load_from_source(source, terminate_on_end=True)
    assert_same_transitions(got_toe, reference_qlearning_dataset(raw, True, 1000))


def test_load_from_d4rl_dataset_dir_and_home(tmp_path, clean_env, monkeypatch):
    raw = d4rl_arrays(np.random.default_rng(10))
    want = reference_qlearning_dataset(raw, False, 1000)
    default = write_d4rl_hdf5(clean_env / ".d4rl" / "datasets" / FILE_NAME, raw)
    source = find_dataset(TASK)
    assert (source.kind, source.path) == ("d4rl_dir", default)
    assert_same_transitions(load_dataset(TASK), want)

    env_dir = tmp_path / "d4rl_data"
    env_file = write_d4rl_hdf5(env_dir / FILE_NAME, raw)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(env_dir))
    source = find_dataset(TASK)
    assert (source.kind, source.path) == ("d4rl_dir", env_file)
    assert "D4RL_DATASET_DIR" in source.description
    assert_same_transitions(load_dataset(TASK), want)


def test_explicit_missing_path_never_falls_through(tmp_path, clean_env, monkeypatch):
    write_d4rl_hdf5(tmp_path / "d4rl" / FILE_NAME, d4rl_arrays(np.random.default_rng(11)))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    missing = tmp_path / "typo.hdf5"
    with pytest.raises(DatasetNotFoundError, match="given dataset_path") as err:
        load_dataset(TASK, dataset_path=missing)
    assert str(missing) in str(err.value)
    assert err.value.places == (f"{missing} (dataset_path)",)


def test_nothing_found_lists_every_place(tmp_path, clean_env, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(TASK)
    message = str(err.value)
    assert str(clean_env / ".d4rl" / "datasets" / FILE_NAME) in message
    assert "d4rl package: not installed" in message
    assert "D4RL_DATASET_DIR" in message and "--dataset_path" in message
    assert isinstance(err.value, FileNotFoundError)

    # with the d4rl package present (a stand-in exposing DATASET_PATH), its folder is listed
    # and used; nothing else of it is called
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(clean_env))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "env_dir"))
    package_dir = tmp_path / "pkg_dir"
    fake = types.ModuleType("d4rl")
    fake_env = types.ModuleType("d4rl.offline_env")
    fake_env.DATASET_PATH = str(package_dir)
    fake.offline_env = fake_env
    monkeypatch.setitem(sys.modules, "d4rl", fake)
    monkeypatch.setitem(sys.modules, "d4rl.offline_env", fake_env)
    with pytest.raises(DatasetNotFoundError) as err:
        find_dataset(TASK)
    assert err.value.places == (
        f"{tmp_path / 'env_dir' / FILE_NAME} ($D4RL_DATASET_DIR)",
        f"{package_dir / FILE_NAME} (d4rl package DATASET_PATH)",
    )
    for place in err.value.places:
        assert place in str(err.value)
    write_d4rl_hdf5(package_dir / FILE_NAME, d4rl_arrays(np.random.default_rng(12)))
    source = find_dataset(TASK)
    assert (source.kind, source.path) == ("d4rl_package", package_dir / FILE_NAME)
    assert load_dataset(TASK)["observations"].shape[1] == OBS_DIM


def test_wrong_task_name_gives_task_error(tmp_path, clean_env):
    with pytest.raises(TaskError, match="unknown task 'hoper-medium-v2'"):
        load_dataset("hoper-medium-v2")
    with pytest.raises(TaskError):
        find_dataset("minari:../../etc")


def test_import_is_lazy():
    code = (
        "import sys, offlinerlkit.datasets\n"
        "loaded = [m for m in ('minari', 'd4rl', 'gym', 'h5py') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ}, timeout=60)
    assert result.returncode == 0, result.stderr
