"""Divergent reverse rollouts (spec §4.2-4.4, §14 item 3) and the imagination pickle."""
from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest
import torch
from policy_helpers import make_tiny_dynamics

from offlinerlkit.anchor import (
    ImaginationFileError,
    divergent_reverse_rollouts,
    imagination_layout,
    load_imagination,
    save_imagination,
)
from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.dynamics import EnsembleDynamics

S, A = 3, 2
# well-separated dataset actions: every chain's direction can be identified from its actions
ACTIONS = np.array([[0.9, 0.9], [-0.9, 0.9], [0.9, -0.9], [-0.9, -0.9], [0.0, 0.5]], np.float32)


class LinearReverseStub:
    """Deterministic reverse dynamics `x_prev = x + a W` (duck-types `EnsembleDynamics`)."""

    direction = "reverse"
    obs_dim, action_dim = S, A
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.weight = torch.tensor([[0.3, -0.1, 0.2], [0.05, 0.4, -0.3]])

    def step(self, obs, action, *, sampling="random_elite", generator=None):
        assert sampling == "random_elite"
        return obs + action @ self.weight, None, torch.zeros(obs.shape[0], 1, dtype=torch.bool), {}


def _reverse_model(seed: int = 0, device="cpu") -> EnsembleDynamics:
    torch.manual_seed(seed)
    return make_tiny_dynamics(S, A, direction="reverse", eval_mode=True, device=device)


def _starts(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, S, generator=torch.Generator().manual_seed(seed))


def _roll(dynamics, n: int, *, seed: int = 1, **kwargs):
    """The rollouts of `_starts(n)` (CPU tensors: the function moves them to the model's device)."""
    generator = torch.Generator(device=dynamics.device).manual_seed(seed)
    kwargs = {"rollout_length": 5, "scale_coef": 0.8, "noise_coef": 0.02, "progress": False,
              "generator": generator, **kwargs}
    return divergent_reverse_rollouts(dynamics, _starts(n), ACTIONS, **kwargs)


def test_layout_is_step_major_within_blocks_in_dataset_order():
    # N=3, blocks of 2, L=2: block 0 step 0 rows (0, 1), step 1 rows (0, 1); block 1 (row 2)
    assert imagination_layout(3, 2, 2).tolist() == [[0, 1, 4], [2, 3, 5]]
    assert imagination_layout(3, 2, None).tolist() == [[0, 1, 2], [3, 4, 5]]
    layout = imagination_layout(21, 5, 8)
    assert sorted(layout.ravel().tolist()) == list(range(105))  # a permutation of the positions


@pytest.mark.parametrize("block_size,chunk_size", [(8, 4), (8, 1000), (None, 7)])
def test_every_start_contributes_a_linked_chain(block_size, chunk_size, device):
    n, length = 21, 5
    starts = _starts(n)
    data = _roll(_reverse_model(device=device), n, block_size=block_size, chunk_size=chunk_size)
    assert set(data) == {"observations", "actions", "next_observations", "rewards", "terminals",
                         "infos/step"}
    assert data["infos/step"] is None
    assert data["observations"].shape == (n * length, S) and data["actions"].shape == (n * length, A)
    assert data["next_observations"].shape == (n * length, S)
    for key in ("rewards", "terminals"):
        assert data[key].shape == (n * length, 1) and data[key].dtype == np.float32
        assert not data[key].any()
    assert all(data[k].dtype == np.float32 for k in ("observations", "actions", "next_observations"))
    pos = imagination_layout(n, length, block_size)  # [L, N]
    # step 1 starts at the real states; step k's next state is step k-1's state
    np.testing.assert_array_equal(data["next_observations"][pos[0]], starts.numpy())
    for k in range(1, length):
        np.testing.assert_array_equal(data["next_observations"][pos[k]], data["observations"][pos[k - 1]])
    assert not np.allclose(data["observations"][pos[0]], starts.numpy())  # the model moved them


def test_each_chain_follows_one_dataset_direction_with_fresh_noise(device):
    n, noise = 200, 0.02
    data = _roll(_reverse_model(device=device), n, noise_coef=noise)
    chains = data["actions"][imagination_layout(n, 5, 256)]  # [L, N, A]
    targets = 0.8 * ACTIONS  # [5, A]
    # distance of every chain's actions to every scaled dataset action: [N, 5]
    gap = np.abs(chains[:, :, None, :] - targets[None, None]).max(axis=(0, 3))
    assert (gap.min(axis=1) < 5 * noise).all()  # all L actions near scale * d for one d
    picked = gap.argmin(axis=1)
    counts = np.bincount(picked, minlength=len(ACTIONS))
    assert (counts >= 15).all(), counts  # directions drawn uniformly from the dataset actions
    assert (chains.std(axis=0) > 0).all()  # noise is redrawn at every step


def test_actions_are_clipped_to_the_action_box():
    data = _roll(_reverse_model(), 40, scale_coef=2.0, noise_coef=0.1, max_action=1.0)
    assert np.abs(data["actions"]).max() == pytest.approx(1.0)
    data = _roll(_reverse_model(), 40, scale_coef=0.8, noise_coef=0.0, max_action=0.5)
    assert np.abs(data["actions"]).max() <= 0.5


def test_same_generator_seed_gives_the_same_rollouts(device):
    a = _roll(_reverse_model(device=device), 30, seed=5)
    b = _roll(_reverse_model(device=device), 30, seed=5)
    for key in ("observations", "actions", "next_observations"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("capacity", [37, 64, 105])
def test_ring_capacity_matches_a_literal_ring_buffer(capacity, caplog):
    """capacity=C keeps what the original's ring buffer held: the last C appends, rotated."""
    n, length, block = 21, 5, 8
    kwargs = {"block_size": block, "noise_coef": 0.0, "chunk_size": 5}
    full = _roll(LinearReverseStub(), n, capacity=None, **kwargs)
    ring = ReplayBuffer(capacity, S, A)
    for lo in range(0, n * length, length * block):  # the original: block by block, step by step
        rows = min(block, n - lo // length)
        for k in range(length):
            sl = slice(lo + k * rows, lo + (k + 1) * rows)
            ring.add_batch(torch.as_tensor(full["observations"][sl]),
                           torch.as_tensor(full["actions"][sl]), torch.zeros(rows),
                           torch.as_tensor(full["next_observations"][sl]), torch.zeros(rows))
    expected = ring.sample_all()
    with caplog.at_level(logging.WARNING, logger="offlinerlkit.anchor.reverse_rollout"):
        kept = _roll(LinearReverseStub(), n, capacity=capacity, **kwargs)
    size = min(capacity, n * length)
    assert kept["observations"].shape == (size, S)
    np.testing.assert_allclose(kept["observations"], expected.obs.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(kept["actions"], expected.action.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(kept["next_observations"], expected.next_obs.numpy(), rtol=0, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if capacity < n * length:
        assert len(warnings) == 1
        assert f"{n * length - capacity} are dropped" in warnings[0]
        assert "capacity=None" in warnings[0]
    else:
        assert not warnings
        np.testing.assert_array_equal(kept["observations"], full["observations"])


def test_input_validation():
    with pytest.raises(ValueError, match="reverse dynamics"):
        torch.manual_seed(0)
        forward = make_tiny_dynamics(S, A)
        _roll(forward, 4)
    with pytest.raises(ValueError, match="start_obs"):
        divergent_reverse_rollouts(_reverse_model(), torch.zeros(4, S + 1), ACTIONS, scale_coef=0.8,
                                   noise_coef=0.1, progress=False)
    with pytest.raises(ValueError, match="dataset_actions"):
        divergent_reverse_rollouts(_reverse_model(), _starts(4), ACTIONS[:, :1], scale_coef=0.8,
                                   noise_coef=0.1, progress=False)
    with pytest.raises(ValueError, match="capacity"):
        _roll(_reverse_model(), 4, capacity=0)


# --- the pickle ---
def _tiny_data(m: int = 6) -> dict:
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(m, S)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(m, A)).astype(np.float32),
            "next_observations": rng.normal(size=(m, S)).astype(np.float32),
            "terminals": np.zeros((m, 1), np.float32), "rewards": np.zeros((m, 1), np.float32),
            "infos/step": None}


def test_save_and_load_round_trip_and_refuse_overwrite(tmp_path):
    data = _roll(_reverse_model(), 10)
    path = save_imagination(tmp_path / "result" / "reverse_imagination.pkl", data)
    loaded = load_imagination(path, obs_dim=S, action_dim=A)
    assert set(loaded) == set(data)
    for key in ("observations", "actions", "next_observations", "rewards", "terminals"):
        np.testing.assert_array_equal(loaded[key], data[key])
    with open(path, "rb") as f:  # a plain pickle of a dict, as the original wrote
        assert set(pickle.load(f)) == set(data)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_imagination(path, data)
    other = _tiny_data()
    save_imagination(path, other, overwrite=True)
    assert load_imagination(path, obs_dim=S, action_dim=A)["observations"].shape == (6, S)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


@pytest.mark.parametrize("protocol", [4, 5])
def test_loads_an_original_style_pickle(tmp_path, protocol):
    data = _tiny_data()
    data["rewards"] = data["rewards"].ravel()  # tolerated: [M] columns
    path = tmp_path / "reverse_imagination.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    loaded = load_imagination(path, obs_dim=S, action_dim=A)
    assert loaded["rewards"].shape == (6, 1) and loaded["infos/step"] is None


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_imagination(missing, obs_dim=S, action_dim=A)

    def write(name: str, obj=None, raw: bytes | None = None):
        path = tmp_path / name
        path.write_bytes(raw if raw is not None else pickle.dumps(obj))
        return path

    cases = {
        "corrupt.pkl": (None, b"not a pickle at all", "corrupt"),
        "truncated.pkl": (None, pickle.dumps(_tiny_data())[:200], "corrupt"),
        "list.pkl": ([1, 2], None, "not a dict"),
        "keys.pkl": ({k: v for k, v in _tiny_data().items() if k != "actions"}, None, "lacks"),
        "shape.pkl": ({**_tiny_data(), "observations": np.zeros((6, S + 1), np.float32)}, None,
                      "shape"),
        "rows.pkl": ({**_tiny_data(), "actions": np.zeros((5, A), np.float32)}, None, "shape"),
        "nan.pkl": ({**_tiny_data(), "next_observations": np.full((6, S), np.nan, np.float32)},
                    None, "NaN"),
    }
    for name, (obj, raw, message) in cases.items():
        path = write(name, obj, raw)
        with pytest.raises(ImaginationFileError, match=message) as info:
            load_imagination(path, obs_dim=S, action_dim=A)
        assert name in str(info.value)
    target = tmp_path / "pwned"
    path = write("exploit.pkl", {**_tiny_data(), "infos/step": _Exploit(str(target))})
    with pytest.raises(ImaginationFileError, match="refusing to unpickle"):
        load_imagination(path, obs_dim=S, action_dim=A)
    assert not target.exists()
