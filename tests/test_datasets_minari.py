"""Tests for Minari support: the episode -> transition conversion and a local Minari dataset."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from offlinerlkit.datasets import (
    DatasetError,
    DatasetNotFoundError,
    episodes_to_transitions,
    find_dataset,
    load_dataset,
)


def make_episodes(rng, lengths, *, obs_dim=4, act_dim=2):
    """Episodes as Minari stores them: one more observation than actions."""
    episodes = []
    for index, steps in enumerate(lengths):
        terminations = np.zeros(steps, dtype=bool)
        truncations = np.zeros(steps, dtype=bool)
        if index % 2 == 0:
            terminations[-1] = True  # fell
        else:
            truncations[-1] = True  # time limit: not a terminal
        episodes.append({
            "observations": rng.normal(size=(steps + 1, obs_dim)),
            "actions": rng.uniform(-1, 1, size=(steps, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=steps),
            "terminations": terminations,
            "truncations": truncations,
        })
    return episodes


def test_episodes_to_transitions():
    rng = np.random.default_rng(0)
    episodes = make_episodes(rng, [3, 5, 1])
    out = episodes_to_transitions(episodes)
    assert {k: v.shape for k, v in out.items()} == {
        "observations": (9, 4), "actions": (9, 2), "next_observations": (9, 4),
        "rewards": (9,), "terminals": (9,),
    }
    assert out["observations"].dtype == np.float32 and out["terminals"].dtype == bool
    row = 0
    for ep in episodes:
        steps = len(ep["actions"])
        sl = slice(row, row + steps)
        np.testing.assert_array_equal(out["observations"][sl],
                                      ep["observations"][:-1].astype(np.float32))
        np.testing.assert_array_equal(out["next_observations"][sl],
                                      ep["observations"][1:].astype(np.float32))
        np.testing.assert_array_equal(out["terminals"][sl], ep["terminations"])
        row += steps
    # truncated episode ends are kept, with done=False
    np.testing.assert_array_equal(out["terminals"], [0, 0, 1, 0, 0, 0, 0, 0, 1])


def test_episodes_to_transitions_accepts_attribute_objects():
    class Episode:
        def __init__(self, fields):
            self.__dict__.update(fields)

    episodes = make_episodes(np.random.default_rng(1), [2, 4])
    want = episodes_to_transitions(episodes)
    got = episodes_to_transitions(Episode(ep) for ep in episodes)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_episodes_to_transitions_rejects_bad_episodes():
    rng = np.random.default_rng(2)
    with pytest.raises(DatasetError, match="no episodes"):
        episodes_to_transitions([])
    bad = make_episodes(rng, [3])
    bad[0]["observations"] = bad[0]["observations"][:-1]
    with pytest.raises(DatasetError, match="one more row than the 3 actions"):
        episodes_to_transitions(bad)
    bad = make_episodes(rng, [3])
    bad[0]["rewards"] = bad[0]["rewards"][:2]
    with pytest.raises(DatasetError, match="'rewards' has shape"):
        episodes_to_transitions(bad)
    bad = make_episodes(rng, [3])
    bad[0]["observations"][1, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        episodes_to_transitions(bad)
    bad = make_episodes(rng, [3])
    bad[0]["observations"] = {"pos": bad[0]["observations"]}
    with pytest.raises(DatasetError, match="flat array"):
        episodes_to_transitions(bad)


def test_missing_minari_dataset_lists_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    with pytest.raises(DatasetNotFoundError) as err:
        find_dataset("minari:mujoco/hopper/medium-v0")
    assert err.value.places == (str(tmp_path / "store" / "mujoco" / "hopper" / "medium-v0" / "data"),)
    assert str(tmp_path / "store") in str(err.value) and "local ids: none" in str(err.value)
    assert "minari download mujoco/hopper/medium-v0" in str(err.value)
    with pytest.raises(ValueError, match="MINARI_DATASETS_PATH"):
        find_dataset("minari:mujoco/hopper/medium-v0", dataset_path=tmp_path)


def test_load_local_minari_dataset(tmp_path, monkeypatch):
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    episodes = make_episodes(np.random.default_rng(3), [4, 6, 2])
    buffers = [
        EpisodeBuffer(id=i, observations=ep["observations"], actions=ep["actions"],
                      rewards=list(ep["rewards"]), terminations=list(ep["terminations"]),
                      truncations=list(ep["truncations"]), infos={})
        for i, ep in enumerate(episodes)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing author/permalink notices
        minari.create_dataset_from_buffers(
            "test/tiny/medium-v0", buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float64),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
            data_format="hdf5",
        )
    source = find_dataset("minari:test/tiny/medium-v0")
    assert source.kind == "minari"
    assert source.path == tmp_path / "store" / "test" / "tiny" / "medium-v0" / "data"
    got = load_dataset("minari:test/tiny/medium-v0")
    want = episodes_to_transitions(episodes)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], err_msg=key)
    assert got["terminals"].sum() == 2  # the truncated episode's end is not a terminal
