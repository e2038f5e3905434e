"""The anchor seeker: architecture, BC pretraining (spec §4.5-4.6) and its file (§4.7)."""
from __future__ import annotations

import argparse
import json
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from offlinerlkit.anchor import (
    HOLDOUT_LOSS_KEY,
    SEEKER_FILE,
    TRAIN_LOSS_KEY,
    AnchorSeeker,
    SeekerFileError,
    load_seeker,
    original_stop_epoch,
    pretrain_seeker,
    save_seeker,
    update_stall_count,
)
from offlinerlkit.nets.optim import adam

S, A = 4, 2
TASK = "hopper-medium-v2"


class _OriginalBackbone(nn.Module):
    """The original's MLP: the layers in an `nn.Sequential` called `model`."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], layernorm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.LayerNorm(h)] if layernorm else [])
            width = h
        self.model = nn.Sequential(*layers)


class _OriginalAnchorActor(nn.Module):
    """The original's `AnchorActor` layout: `backbone.model.*` and `last.*`."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], layernorm: bool,
                 max_action: float = 1.0) -> None:
        super().__init__()
        self.backbone = _OriginalBackbone(obs_dim, hidden, layernorm)
        self.last = nn.Linear(hidden[-1], action_dim)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.last(self.backbone.model(obs))) * self.max_action


def _write_original(path, actor: nn.Module, random_states: dict | None = None):
    """An `anchor_seeker_pretrain.pth` exactly as the original writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    states = random_states if random_states is not None else {
        "np": np.random.get_state(), "torch": torch.get_rng_state(), "torch_cuda": []}
    torch.save({"state_dict": actor.state_dict(), "random_states": states}, path)
    return path


def _as_numpy1_pickle(path) -> None:
    """Rename numpy 2's `numpy._core` globals to numpy 1's `numpy.core` (the original ran 1.24)."""
    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zout:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)


def _hyper(run, **values) -> None:
    (run / "record").mkdir(parents=True, exist_ok=True)
    (run / "record" / "hyper_param.json").write_text(json.dumps(values))


def _obs(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, S, generator=torch.Generator().manual_seed(seed)) * 3


# --- the network ---
@pytest.mark.parametrize("layernorm,keys", [(True, [0, 2, 3, 5]), (False, [0, 2])])
def test_key_layout_matches_the_original(layernorm, keys):
    seeker = AnchorSeeker(S, A, (16, 8), layernorm=layernorm)
    expected = [f"backbone.model.{i}.{p}" for i in keys for p in ("weight", "bias")]
    assert list(seeker.state_dict()) == expected + ["last.weight", "last.bias"]
    original = _OriginalAnchorActor(S, A, (16, 8), layernorm)
    assert list(original.state_dict()) == list(seeker.state_dict())
    original.load_state_dict(seeker.state_dict())
    obs = _obs()
    torch.testing.assert_close(seeker(obs), original(obs))


def test_output_is_tanh_scaled_by_max_action(device):
    torch.manual_seed(0)
    seeker = AnchorSeeker(S, A, (8,), max_action=2.0).to(device)
    with torch.no_grad():
        seeker.last.weight.mul_(100)  # saturate the tanh
    out = seeker(_obs().to(device))
    assert out.shape == (64, A) and out.abs().max() <= 2.0 and out.abs().max() > 1.9


# --- pretraining ---
def test_original_early_stop_rule_on_constructed_losses():
    assert update_stall_count(1e10, 100.0, 3) == 0  # the first epoch never stalls
    assert update_stall_count(200.0, 199.0, 2) == 3  # |1 / 200| = 0.005 counts (<=)
    assert update_stall_count(200.0, 201.0, 2) == 3  # either direction
    assert update_stall_count(200.0, 198.9, 4) == 0  # a larger change resets the counter
    # epoch 0 vs 1e10 and epoch 1 (-50 %) reset; epochs 2..6 change by ~0.2 % -> stop after 6
    assert original_stop_epoch([100, 50, 49.9, 49.8, 49.7, 49.6, 49.5, 49.4]) == 6
    assert original_stop_epoch([100, 100, 100, 120, 120, 120, 120, 120]) is None  # reset at 3
    assert original_stop_epoch([100, 100, 100, 120, 120, 120, 120, 120, 120]) == 8
    assert original_stop_epoch([5.0] * 10, patience=2) == 2


def _bc_data(n: int = 512, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, S, generator=gen)
    w = torch.randn(S, A, generator=gen)
    return x, 0.9 * torch.tanh(x @ w)


@pytest.mark.parametrize("mode", ["original", "improved"])
def test_bc_loss_falls(mode, device):
    x, y = (t.to(device) for t in _bc_data())
    torch.manual_seed(0)
    seeker = AnchorSeeker(S, A, (32, 32)).to(device)
    before = F.mse_loss(seeker(x), y).item()
    seen: list[tuple[int, dict]] = []
    losses = pretrain_seeker(seeker, x, y, epochs=30, batch_size=32, mode=mode, progress=False,
                             generator=torch.Generator(device=device).manual_seed(1),
                             on_epoch=lambda e, m: seen.append((e, m)))
    assert losses[-1] < 0.3 * losses[0]
    assert F.mse_loss(seeker(x), y).item() < 0.2 * before
    assert [e for e, _ in seen] == list(range(len(losses)))  # 0-based epochs
    keys = {TRAIN_LOSS_KEY} if mode == "original" else {TRAIN_LOSS_KEY, HOLDOUT_LOSS_KEY}
    assert all(set(m) == keys for _, m in seen)
    assert [m[TRAIN_LOSS_KEY] for _, m in seen] == losses


def test_original_mode_is_sequential_unshuffled_and_drops_the_last_batch():
    x, y = _bc_data(n=3 * 16 + 5)
    torch.manual_seed(0)
    seeker = AnchorSeeker(S, A, (8, 8))
    replica = AnchorSeeker(S, A, (8, 8))
    replica.load_state_dict(seeker.state_dict())
    pretrain_seeker(seeker, x, y, epochs=2, batch_size=16, progress=False)
    # The same optimiser factory, so both sides run the same Adam kernel (fused where the build
    # has it) and the comparison can be exact; fused vs per-tensor Adam differ at float rounding.
    optim = adam(replica.parameters(), lr=1e-3)
    for _ in range(2):
        for j in range(3):  # rows 48..52 never train
            loss = F.mse_loss(replica(x[16 * j:16 * (j + 1)]), y[16 * j:16 * (j + 1)])
            optim.zero_grad()
            loss.backward()
            optim.step()
    for key, value in replica.state_dict().items():
        torch.testing.assert_close(seeker.state_dict()[key], value, rtol=0, atol=0)


def test_original_mode_stops_by_the_rule():
    x, y = _bc_data(n=128)
    seeker = AnchorSeeker(S, A, (8,))
    # with a negligible learning rate every epoch's summed loss is the same: the counter reaches
    # 5 at epoch 5 (epoch 0 is compared with 1e10)
    losses = pretrain_seeker(seeker, x, y, epochs=50, lr=1e-12, batch_size=32, progress=False)
    assert len(losses) == 6


def test_improved_mode_keeps_the_best_held_out_weights():
    x, y = _bc_data(n=400)
    torch.manual_seed(0)
    seeker = AnchorSeeker(S, A, (16,))
    held: list[float] = []
    pretrain_seeker(seeker, x, y, epochs=15, lr=3e-2, batch_size=16, mode="improved",
                    holdout_ratio=0.25, progress=False, generator=torch.Generator().manual_seed(3),
                    on_epoch=lambda e, m: held.append(m[HOLDOUT_LOSS_KEY]))
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(3))  # the same split
    hold = perm[300:]
    with torch.no_grad():
        final = F.mse_loss(seeker(x[hold]), y[hold]).item()
    assert final == pytest.approx(min(held), rel=1e-5)


def test_pretrain_input_checks():
    x, y = _bc_data(n=10)
    seeker = AnchorSeeker(S, A, (8,))
    with pytest.raises(ValueError, match="no full minibatch"):
        pretrain_seeker(seeker, x, y, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="mode"):
        pretrain_seeker(seeker, x, y, mode="shuffled", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frozen"):
        pretrain_seeker(AnchorSeeker(S, A, (8,)).requires_grad_(False), x, y, batch_size=2,
                        progress=False)


# --- files ---
def test_our_file_round_trips_and_is_weights_only_readable(tmp_path):
    torch.manual_seed(0)
    seeker = AnchorSeeker(S, A, (16, 8), layernorm=True, max_action=1.0)
    run = tmp_path / "run"
    path = save_seeker(run / "model", seeker, metadata={"task": TASK, "scale_coef": 0.8})
    assert path == run / "model" / SEEKER_FILE
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "random_states", "metadata"}
    assert set(raw["random_states"]) == {"np", "torch", "torch_cuda"}
    assert raw["random_states"]["np"][0] == "MT19937" and raw["random_states"]["np"][1].numel() == 624
    assert raw["metadata"]["hidden_dims"] == [16, 8] and raw["metadata"]["task"] == TASK
    assert raw["metadata"]["scale_coef"] == 0.8
    obs = _obs()
    for where in (path, run / "model", run):
        loaded = load_seeker(where, task=TASK, obs_dim=S, action_dim=A)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert loaded.hidden_dims == (16, 8) and loaded.layernorm
        torch.testing.assert_close(loaded(obs), seeker(obs))
    assert [p.name for p in (run / "model").iterdir()] == [SEEKER_FILE]  # no temporary files


def test_our_state_dict_loads_into_the_original_layout(tmp_path):
    torch.manual_seed(1)
    seeker = AnchorSeeker(S, A, (16, 8), layernorm=True)
    path = save_seeker(tmp_path / SEEKER_FILE, seeker, metadata={"task": TASK})
    payload = torch.load(path, weights_only=False)  # what the original's torch.load does
    original = _OriginalAnchorActor(S, A, (16, 8), True)
    original.load_state_dict(payload["state_dict"])  # strict: the exact key set
    obs = _obs()
    torch.testing.assert_close(original(obs), seeker(obs))
    np_state = payload["random_states"]["np"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))


@pytest.mark.parametrize("layernorm", [True, False])
@pytest.mark.parametrize("hidden", [(16, 8), (12, 12, 6)])
def test_loads_an_original_file(tmp_path, layernorm, hidden):
    torch.manual_seed(2)
    original = _OriginalAnchorActor(S, A, hidden, layernorm)
    path = _write_original(tmp_path / "run" / "model" / SEEKER_FILE, original)
    with pytest.raises(pickle.UnpicklingError):  # numpy's RNG state needs the allowlist
        torch.load(path, weights_only=True)
    _hyper(tmp_path / "run", task=TASK, anchor_seeker_hidden_dims=list(hidden),
           asp_layernorm=layernorm, max_action=1.0)
    seeker = load_seeker(tmp_path / "run" / "model", task=TASK, obs_dim=S, action_dim=A)
    assert seeker.hidden_dims == hidden and seeker.layernorm == layernorm
    assert not any(p.requires_grad for p in seeker.parameters()) and not seeker.training
    obs = _obs()
    torch.testing.assert_close(seeker(obs), original(obs))


def test_loads_an_original_file_pickled_by_numpy_1(tmp_path):
    original = _OriginalAnchorActor(S, A, (8, 8), True)
    path = _write_original(tmp_path / SEEKER_FILE, original)
    _as_numpy1_pickle(path)
    with open(path, "rb") as f:
        assert b"numpy.core.multiarray" in f.read()
    seeker = load_seeker(path, task=None, obs_dim=S, action_dim=A)
    torch.testing.assert_close(seeker(_obs()), original(_obs()))


def test_original_file_task_check_and_our_hyper_param_layout(tmp_path, caplog):
    original = _OriginalAnchorActor(S, A, (8, 8), True)
    path = _write_original(tmp_path / "run" / "model" / SEEKER_FILE, original)
    with caplog.at_level("WARNING"):
        load_seeker(path, task=TASK, obs_dim=S, action_dim=A)  # nothing to check against
    assert "cannot check the task" in caplog.text
    _hyper(tmp_path / "run", config={"task": TASK})
    load_seeker(path, task=TASK, obs_dim=S, action_dim=A)
    with pytest.raises(SeekerFileError, match="walker2d-medium-v2"):
        load_seeker(path, task="walker2d-medium-v2", obs_dim=S, action_dim=A)
    _hyper(tmp_path / "run", task=TASK, anchor_seeker_hidden_dims=[100, 100])
    with pytest.raises(SeekerFileError, match="mixes files"):
        load_seeker(path, task=TASK, obs_dim=S, action_dim=A)


def test_refuses_files_with_foreign_objects(tmp_path):
    original = _OriginalAnchorActor(S, A, (8,), True)
    path = _write_original(tmp_path / SEEKER_FILE, original,
                           random_states={"np": argparse.Namespace(task=TASK), "torch": None})
    with pytest.raises(SeekerFileError, match="refusing to unpickle"):
        load_seeker(path, task=None, obs_dim=S, action_dim=A)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_seeker(tmp_path / "missing", task=TASK, obs_dim=S, action_dim=A)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match=SEEKER_FILE):
        load_seeker(tmp_path / "empty_run", task=TASK, obs_dim=S, action_dim=A)

    seeker = AnchorSeeker(S, A, (8, 8))
    good = save_seeker(tmp_path / "good", seeker, metadata={"task": TASK})
    blob = good.read_bytes()
    for name, data in (("corrupt.pth", b"garbage" * 10), ("truncated.pth", blob[: len(blob) // 2]),
                       ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(SeekerFileError, match=name):
            load_seeker(path, task=TASK, obs_dim=S, action_dim=A)

    cases = [
        ({"obs_dim": S + 1}, "obs_dim"),
        ({"action_dim": A + 1}, "action_dim"),
        ({"task": "walker2d-medium-v2"}, "trained for task"),
        ({"hidden_dims": (100, 100)}, "hidden dims"),
        ({"layernorm": False}, "layernorm"),
        ({"max_action": 2.0}, "max_action"),
    ]
    for override, message in cases:
        kwargs = {"task": TASK, "obs_dim": S, "action_dim": A, **override}
        with pytest.raises(SeekerFileError, match=message) as info:
            load_seeker(good, **kwargs)
        assert str(good) in str(info.value)

    weird = tmp_path / "weird.pth"
    torch.save({"state_dict": {"backbone.model.1.weight": torch.zeros(3, 3)}}, weird)
    with pytest.raises(SeekerFileError, match="unexpected anchor-seeker weights"):
        load_seeker(weird, task=None, obs_dim=None, action_dim=None)
    with pytest.raises(ValueError, match="obs_dim"):
        save_seeker(tmp_path / "x", seeker, metadata={"task": TASK, "obs_dim": 99})


def test_state_dict_is_the_original_key_set_even_after_loading(tmp_path):
    seeker = AnchorSeeker(S, A, (8,), layernorm=False)
    path = save_seeker(tmp_path, seeker, metadata={"task": None})
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload["state_dict"], OrderedDict)
    assert list(payload["state_dict"]) == ["backbone.model.0.weight", "backbone.model.0.bias",
                                           "last.weight", "last.bias"]


def test_our_file_task_is_checked_against_the_run_json(tmp_path):
    path = save_seeker(tmp_path / "run" / "model", AnchorSeeker(S, A, (8,)), metadata={"task": TASK})
    _hyper(tmp_path / "run", config={"task": TASK, "asp_layernorm": False})  # f/g flag: ignored
    load_seeker(path, task=TASK, obs_dim=S, action_dim=A)
    _hyper(tmp_path / "run", config={"task": "walker2d-medium-v2"})
    with pytest.raises(SeekerFileError, match="mixes files"):
        load_seeker(path, task=TASK, obs_dim=S, action_dim=A)
