"""Replay buffer: dataset loading, ring writes, uniform sampling, array persistence."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from offlinerlkit.buffer.replay_buffer import ReplayBuffer


def _transitions(n: int, obs_dim: int = 3, action_dim: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, action_dim)).astype(np.float32),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < 0.1,
    }


def test_from_transitions_holds_the_dataset() -> None:
    data = _transitions(50)
    buf = ReplayBuffer.from_transitions(data)
    everything = buf.sample_all()
    assert len(buf) == 50 and everything.reward.shape == (50, 1)
    np.testing.assert_array_equal(everything.obs.numpy(), data["observations"])
    np.testing.assert_array_equal(everything.done.numpy()[:, 0], data["terminals"].astype(np.float32))


def test_sample_is_uniform_with_replacement_and_seedable() -> None:
    buf = ReplayBuffer.from_transitions(_transitions(10))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = buf.sample(4000, generator=g1), buf.sample(4000, generator=g2)
    assert torch.equal(a.obs, b.obs)
    rows = {tuple(r) for r in a.obs.numpy().round(6).tolist()}
    assert len(rows) == 10  # all rows appear; 4000 > 10 means replacement
    counts = np.unique(a.obs[:, 0].numpy(), return_counts=True)[1]
    assert counts.min() > 300 and counts.max() < 500


def test_add_batch_wraps_around() -> None:
    buf = ReplayBuffer(5, 3, 2)
    for start in (0, 3, 6):
        obs = torch.full((3, 3), float(start)) + torch.arange(3.0)[:, None]
        buf.add_batch(obs, torch.zeros(3, 2), torch.zeros(3), obs, torch.zeros(3, dtype=torch.bool))
    assert len(buf) == 5 and buf.ptr == 4
    assert sorted(buf.sample_all().obs[:, 0].tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]


def test_shape_mismatch_is_refused() -> None:
    buf = ReplayBuffer(5, 3, 2)
    with pytest.raises(ValueError, match="'action' has shape"):
        buf.add_batch(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 3),
                      torch.zeros(2))


def test_save_load_npz_round_trip(tmp_path: Path) -> None:
    buf = ReplayBuffer(8, 3, 2)
    buf.add_batch(torch.randn(6, 3), torch.randn(6, 2), torch.randn(6), torch.randn(6, 3),
                  torch.ones(6))
    path = buf.save(tmp_path / "fake.npz")
    other = ReplayBuffer(8, 3, 2)
    other.load(path)
    assert other.ptr == buf.ptr and len(other) == len(buf)
    assert torch.equal(other.sample_all().obs, buf.sample_all().obs)
    with np.load(path) as npz:  # plain arrays, no pickled objects
        assert set(npz.files) >= {"obs", "action", "reward", "next_obs", "done", "ptr"}
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="cannot read replay buffer file"):
        other.load(path)


def test_oversized_batch_keeps_the_ring_semantics() -> None:
    buf = ReplayBuffer(4, 1, 1)
    buf.add_batch(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.zeros(1, 1), torch.zeros(1))
    rows = torch.arange(1.0, 7.0)[:, None]  # 6 rows into a buffer of 4 with ptr = 1
    buf.add_batch(rows, torch.zeros(6, 1), torch.zeros(6), rows, torch.zeros(6))
    # row i of the batch goes to slot (1 + i) % 4: slots 1,2,3,0,1,2 <- 1..6, so [4, 5, 6, 3]
    assert buf.sample_all().obs[:, 0].tolist() == [4.0, 5.0, 6.0, 3.0]
    assert buf.ptr == (1 + 6) % 4 and len(buf) == 4
