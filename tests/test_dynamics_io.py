"""Saving and loading dynamics: round trips, folder resolution, refusals, original-format files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from policy_helpers import make_tiny_dynamics

from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.dynamics.fit import fit_ensemble
from offlinerlkit.dynamics.io import DynamicsFileError, load_dynamics, save_dynamics

S, A, TASK = 3, 2, "hopper-medium-v2"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from threads, and busy machines make spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dynamics(direction: str = "forward", seed: int = 0) -> EnsembleDynamics:
    torch.manual_seed(seed)
    dynamics = make_tiny_dynamics(S, A, direction=direction, hidden=(8, 8), elites=[2, 0],
                                  weight_decays=(1e-4, 2e-4, 3e-4))
    dynamics.model.set_scaler(torch.linspace(-1, 1, S + A), torch.linspace(0.5, 2, S + A))
    return dynamics


def _batch(n: int = 16):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, S, generator=gen), torch.rand(n, A, generator=gen) * 2 - 1


def _load(path, **kwargs) -> EnsembleDynamics:
    kwargs = {"task": TASK, "obs_dim": S, "action_dim": A, **kwargs}
    return load_dynamics(path, **kwargs)


def test_roundtrip_keeps_weights_elites_and_scaler(tmp_path):
    dynamics = _dynamics()
    path = save_dynamics(tmp_path / "model", dynamics, metadata={"task": TASK, "seed": 3})
    assert path.name == "dynamics.pth"
    assert sorted(p.name for p in path.parent.iterdir()) == ["dynamics.pth", "mu.npy", "std.npy"]
    assert np.load(path.parent / "mu.npy").shape == (1, S + A)
    loaded = _load(tmp_path / "model", penalty_coef=1.5, uncertainty_mode="ensemble_std")
    assert loaded.model.elite_idx.tolist() == [2, 0]
    torch.testing.assert_close(loaded.model.in_std, dynamics.model.in_std)
    assert loaded.model.weight_decays == (1e-4, 2e-4, 3e-4) and loaded.penalty_coef == 1.5
    obs, action = _batch()
    torch.testing.assert_close(loaded.predict_mean(obs, action), dynamics.predict_mean(obs, action))
    meta = torch.load(path, weights_only=True)["metadata"]
    assert meta["task"] == TASK and meta["seed"] == 3 and meta["hidden_dims"] == [8, 8]
    assert meta["num_members"] == 3 and meta["direction"] == "forward" and meta["with_reward"] is True


def test_reverse_roundtrip_and_direction_refusal(tmp_path):
    dynamics = _dynamics("reverse")
    path = save_dynamics(tmp_path / "checkpoint_last", dynamics, metadata={"task": TASK})
    assert path.name == "reverse_dynamics.pth"
    loaded = _load(tmp_path / "checkpoint_last", direction="reverse")
    assert loaded.direction == "reverse" and loaded.obs_dim == S
    with pytest.raises(DynamicsFileError, match="reverse"):
        _load(tmp_path / "checkpoint_last")  # forward wanted
    with pytest.raises(DynamicsFileError, match="reverse"):
        _load(path)


def test_run_folder_prefers_model_then_checkpoint_last(tmp_path):
    run = tmp_path / "run"
    last = _dynamics()
    save_dynamics(run / "checkpoint_last", last, metadata={"task": TASK})
    final = _dynamics()
    final.model.set_elites([1, 2])
    save_dynamics(run / "model", final, metadata={"task": TASK})
    assert _load(run).model.elite_idx.tolist() == [1, 2]
    for name in ("dynamics.pth", "mu.npy", "std.npy"):
        (run / "model" / name).unlink()  # an empty model/ (as the original leaves it)
    assert _load(run).model.elite_idx.tolist() == [2, 0]
    assert _load(run / "checkpoint_last" / "dynamics.pth").model.elite_idx.tolist() == [2, 0]


def test_refuses_other_task_and_sizes(tmp_path):
    save_dynamics(tmp_path / "model", _dynamics(), metadata={"task": TASK})
    with pytest.raises(DynamicsFileError, match="trained for task 'hopper-medium-v2'"):
        _load(tmp_path / "model", task="walker2d-medium-v2")
    with pytest.raises(DynamicsFileError, match="obs_dim=3 but obs_dim=4"):
        _load(tmp_path / "model", obs_dim=4)
    with pytest.raises(DynamicsFileError, match="action_dim=2 but action_dim=6"):
        _load(tmp_path / "model", action_dim=6)
    assert _load(tmp_path / "model", task=None, obs_dim=None, action_dim=None).obs_dim == S


def test_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no dynamics.pth"):
        _load(tmp_path / "empty")
    save_dynamics(tmp_path / "model", _dynamics(), metadata={"task": TASK})
    (tmp_path / "model" / "dynamics.pth").write_bytes(b"\x00garbage")
    with pytest.raises(DynamicsFileError, match="cannot read .*dynamics.pth.*corrupt"):
        _load(tmp_path / "model")
    torch.save({"something": torch.zeros(2)}, tmp_path / "model" / "dynamics.pth")
    with pytest.raises(DynamicsFileError, match="neither"):
        _load(tmp_path / "model")


def test_refuses_scaler_files_from_another_run(tmp_path):
    save_dynamics(tmp_path / "model", _dynamics(), metadata={"task": TASK})
    np.save(tmp_path / "model" / "mu.npy", np.zeros((1, S + A), np.float32))
    with pytest.raises(DynamicsFileError, match="disagree"):
        _load(tmp_path / "model")


def test_hyper_param_json_is_cross_checked(tmp_path):
    save_dynamics(tmp_path / "checkpoint_best", _dynamics(), metadata={"task": None})
    record = tmp_path / "record"
    record.mkdir()
    (record / "hyper_param.json").write_text(json.dumps({"task": TASK, "num_ensemble": 3, "num_elites": 2}))
    assert _load(tmp_path / "checkpoint_best").model.num_members == 3  # task read from the JSON
    with pytest.raises(DynamicsFileError, match="trained for task"):
        _load(tmp_path / "checkpoint_best", task="halfcheetah-medium-v2")
    (record / "hyper_param.json").write_text(json.dumps({"task": TASK, "n_ensemble": 7}))
    with pytest.raises(DynamicsFileError, match="num_members=3 but .*says 7"):
        _load(tmp_path / "checkpoint_best")
    (record / "hyper_param.json").write_text("{not json")
    with pytest.raises(DynamicsFileError, match="hyper_param.json"):
        _load(tmp_path / "checkpoint_best")


def test_hyper_param_json_in_our_layout(tmp_path):
    """Our scripts write `{"config": {flat config}, ...}`; the flat `hidden_dims` is the policy's."""
    state, _, _ = _write_original_run(tmp_path / "run", hyper={"config": {
        "task": TASK, "dynamics_hidden_dims": [8, 6], "num_ensemble": 3, "num_elites": 2,
        "dynamics_weight_decay": [1e-5, 2e-5, 3e-5], "hidden_dims": [256, 256]}})
    dynamics = _load(tmp_path / "run")
    assert dynamics.model.weight_decays == (1e-5, 2e-5, 3e-5)
    with pytest.raises(DynamicsFileError, match="trained for task"):
        _load(tmp_path / "run", task="walker2d-medium-v2")
    (tmp_path / "run" / "record" / "hyper_param.json").write_text(json.dumps({"config": {"num_elites": 4}}))
    with pytest.raises(DynamicsFileError, match="num_elites=2 but .*says 4"):
        _load(tmp_path / "run")


def test_save_rejects_conflicting_metadata_and_foreign_state(tmp_path):
    dynamics = _dynamics()
    with pytest.raises(ValueError, match="obs_dim"):
        save_dynamics(tmp_path, dynamics, metadata={"task": TASK, "obs_dim": 11})
    with pytest.raises(ValueError, match="does not fit"):
        save_dynamics(tmp_path, dynamics, metadata={}, state_dict=_dynamics("reverse").model.state_dict())
    with pytest.raises(TypeError, match="plain Python"):
        save_dynamics(tmp_path, dynamics, metadata={"task": TASK, "obj": object()})


def test_checkpoints_written_during_fit_load_back(tmp_path):
    gen = torch.Generator().manual_seed(0)
    obs, action = torch.randn(400, S, generator=gen), torch.rand(400, A, generator=gen)
    next_obs = obs + 0.1 * action.sum(-1, keepdim=True)
    dynamics = _dynamics()
    x, y = dynamics.training_pairs(obs, action, next_obs, next_obs.sum(-1))
    run = tmp_path / "run"

    def checkpoint(kind):
        save_dynamics(run / f"checkpoint_{kind}", dynamics, metadata={"task": TASK})

    result = fit_ensemble(dynamics, x, y, max_epochs=4, progress=False, generator=gen, checkpoint_fn=checkpoint)
    save_dynamics(run / "model", dynamics, metadata={"task": TASK}, state_dict=result.saved_state)
    from_model, from_last = _load(run), _load(run / "checkpoint_last")
    for key, value in result.saved_state.items():
        torch.testing.assert_close(from_model.model.state_dict()[key], value)
        torch.testing.assert_close(from_last.model.state_dict()[key], value)
    assert _load(run / "checkpoint_best").model.elite_idx.numel() == 2
    assert not list(run.glob("*/.*.tmp"))  # atomic writes leave no temporary files


# --- files written by the original implementation ---
def _original_state(direction: str, members: int = 3, hidden=(8, 6), elites=(2, 0), seed: int = 0) -> dict:
    """The exact key layout of the original `EnsembleDynamicsModel.state_dict()` (spec §3.5)."""
    gen = torch.Generator().manual_seed(seed)
    out = S + int(direction == "forward")
    dims = (S + A, *hidden, 2 * out)
    state = {}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        prefix = f"backbones.{i}" if i < len(hidden) else "output_layer"
        state[f"{prefix}.weight"] = torch.randn(members, d_in, d_out, generator=gen) * 0.3
        state[f"{prefix}.bias"] = torch.randn(members, 1, d_out, generator=gen) * 0.1
        state[f"{prefix}.saved_weight"] = torch.randn(members, d_in, d_out, generator=gen)
        state[f"{prefix}.saved_bias"] = torch.randn(members, 1, d_out, generator=gen)
    state["max_logvar"] = torch.full((out,), 0.5)
    state["min_logvar"] = torch.full((out,), -10.0)
    state["elites"] = torch.tensor(list(elites))
    return state


def _write_original_run(run: Path, direction: str = "forward", scaler: str = "npy",
                        hyper: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    folder = run / "checkpoint_last"
    folder.mkdir(parents=True)
    state = _original_state(direction)
    torch.save(state, folder / ("dynamics.pth" if direction == "forward" else "reverse_dynamics.pth"))
    mu = np.linspace(-1, 1, S + A, dtype=np.float32)[None]
    std = np.linspace(0.5, 2, S + A, dtype=np.float32)[None]
    if scaler == "npy":
        np.save(folder / "mu.npy", mu)
        np.save(folder / "std.npy", std)
    else:
        torch.save(torch.from_numpy(mu), folder / "mu.pt")
        torch.save(torch.from_numpy(std), folder / "std.pt")
    (run / "record").mkdir()
    hyper = hyper if hyper is not None else {
        "task": TASK, "dynamics_hidden_dims": [8, 6], "n_ensemble": 3, "n_elites": 2,
        "dynamics_weight_decay": [2.5e-5, 5e-5, 1e-4], "hidden_dims": [256, 256], "action_dim": 2.0,
    }
    (run / "record" / "hyper_param.json").write_text(json.dumps(hyper))
    return state, mu, std


def _reference_mean(state: dict, mu: np.ndarray, std: np.ndarray, x: torch.Tensor, out: int) -> torch.Tensor:
    """The original forward pass written out: Swish MLP per member on standardised inputs."""
    h = ((x - torch.from_numpy(mu)) / torch.from_numpy(std)).expand(state["elites"].numel() + 1, -1, -1)
    i = 0
    while f"backbones.{i}.weight" in state:
        h = F.silu(torch.einsum("ebi,eio->ebo", h, state[f"backbones.{i}.weight"]) + state[f"backbones.{i}.bias"])
        i += 1
    return (torch.einsum("ebi,eio->ebo", h, state["output_layer.weight"]) + state["output_layer.bias"])[..., :out]


@pytest.mark.parametrize("scaler", ["npy", "pt"])
def test_loads_original_forward_checkpoint(tmp_path, scaler):
    state, mu, std = _write_original_run(tmp_path / "run", scaler=scaler)
    dynamics = _load(tmp_path / "run")  # run folder with an empty-of-dynamics model/ -> checkpoint_last
    model = dynamics.model
    assert model.hidden_dims == (8, 6) and model.num_members == 3 and model.num_elites == 2
    assert model.elite_idx.tolist() == [2, 0] and model.weight_decays == (2.5e-5, 5e-5, 1e-4)
    torch.testing.assert_close(model.layers[1].weight, state["backbones.1.weight"])  # not saved_weight
    obs, action = _batch()
    mean = _reference_mean(state, mu, std, torch.cat([obs, action], -1), S + 1)  # [E, B, S + 1]
    expected = (mean[[2, 0]] + torch.cat([obs, torch.zeros(16, 1)], -1)).mean(0)
    next_obs, reward, _, _ = dynamics.step(obs, action, sampling="elite_mean")
    torch.testing.assert_close(next_obs, expected[:, :S])
    torch.testing.assert_close(reward, expected[:, S:])
    torch.testing.assert_close(dynamics.predict_mean(obs, action), expected[:, :S])


def test_loads_original_reverse_checkpoint_and_checks_it(tmp_path):
    state, mu, std = _write_original_run(tmp_path / "run", direction="reverse")
    dynamics = _load(tmp_path / "run" / "checkpoint_last", direction="reverse")
    next_obs, action = _batch()
    mean = _reference_mean(state, mu, std, torch.cat([next_obs, action], -1), S)
    torch.testing.assert_close(dynamics.predict_mean(next_obs, action), (mean[[2, 0]] + next_obs).mean(0))
    with pytest.raises(DynamicsFileError, match="trained for task"):
        _load(tmp_path / "run", direction="reverse", task="walker2d-medium-v2")
    with pytest.raises(DynamicsFileError, match="obs_dim=3 but obs_dim=11"):
        _load(tmp_path / "run", direction="reverse", obs_dim=11)


def test_original_checkpoint_refusals(tmp_path):
    _write_original_run(tmp_path / "a", hyper={"task": TASK, "dynamics_hidden_dims": [200, 200, 200, 200]})
    with pytest.raises(DynamicsFileError, match="hidden_dims"):
        _load(tmp_path / "a")
    _write_original_run(tmp_path / "b")
    for name in ("mu.npy", "std.npy"):
        (tmp_path / "b" / "checkpoint_last" / name).unlink()
    with pytest.raises(FileNotFoundError, match="mu.npy"):
        _load(tmp_path / "b")
    _write_original_run(tmp_path / "c")
    state = _original_state("forward")
    state["backbones.1.weight"] = state["backbones.1.weight"][:, :5]  # breaks the layer chain
    torch.save(state, tmp_path / "c" / "checkpoint_last" / "dynamics.pth")
    with pytest.raises(DynamicsFileError, match="layer 1"):
        _load(tmp_path / "c")
