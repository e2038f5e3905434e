"""EnsembleLinear and GaussianEnsemble: shapes, independence of members, buffers, losses."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from device_helpers import close_kw

from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.nets.ensemble_linear import EnsembleLinear


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from threads, and busy machines make spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(device: torch.device | str = "cpu", **kwargs) -> GaussianEnsemble:
    torch.manual_seed(0)
    defaults = dict(num_members=3, num_elites=2, weight_decays=(1e-3, 2e-3, 3e-3))
    return GaussianEnsemble(5, 4, (16, 8), **{**defaults, **kwargs}).to(device)


def test_ensemble_linear_shapes_and_routing(device):
    torch.manual_seed(0)
    layer = EnsembleLinear(6, 4, 3).to(device)
    tol = close_kw(device, rtol=1.3e-6, atol=1e-5)  # assert_close's float32 defaults on CPU
    assert layer.weight.shape == (3, 6, 4) and layer.bias.shape == (3, 1, 4)
    x2 = torch.randn(7, 6).to(device)
    out = layer(x2)
    assert out.shape == (3, 7, 4) and out.device == layer.weight.device
    for e in range(3):  # broadcast input: every member sees the same rows
        torch.testing.assert_close(out[e], x2 @ layer.weight[e] + layer.bias[e], **tol)
    x3 = torch.randn(3, 7, 6).to(device)
    out3 = layer(x3)
    for e in range(3):  # routed input: member e sees block e
        torch.testing.assert_close(out3[e], x3[e] @ layer.weight[e] + layer.bias[e], **tol)
    sub = layer(x3[[2, 0]], torch.tensor([2, 0], device=device))
    torch.testing.assert_close(sub, out3[[2, 0]], **tol)
    with pytest.raises(ValueError, match="expects"):
        layer(torch.randn(2, 7, 6, device=device))


def test_ensemble_linear_init():
    torch.manual_seed(0)
    layer = EnsembleLinear(400, 300, 4)
    std = 1 / (2 * math.sqrt(400))
    assert abs(layer.weight.std().item() - std) < 0.02 * std
    assert layer.weight.abs().max() <= 2.0 and torch.all(layer.bias == 0)


def test_forward_shapes_and_logvar_bounds(device):
    model = _model(device)
    mean, logvar = model(torch.randn(11, 5).to(device) * 100)
    assert mean.shape == logvar.shape == (3, 11, 4) and mean.device.type == device.type
    # soft bounds: min + softplus(max - min) overshoots max by softplus's tail (~3e-5 here)
    assert torch.all(logvar <= model.max_logvar + 1e-3) and torch.all(logvar >= model.min_logvar)
    mean3, _ = model(torch.randn(3, 11, 5).to(device))
    assert mean3.shape == (3, 11, 4)


def test_members_are_independent(device):
    model = _model(device)
    mean, logvar = model(torch.randn(3, 9, 5).to(device))  # routed rows, as in training
    (mean[1].sum() + logvar[1].sum()).backward()
    per_member = model.member_parameters()
    assert len(per_member) == 6  # (weight, bias) x 3 layers
    for name, p in per_member.items():
        assert p.grad[[0, 2]].abs().sum() == 0, name
        assert p.grad[1].abs().sum() > 0, name


def test_forward_mean_matches_forward_and_member_subset(device):
    model = _model(device)
    tol = close_kw(device, rtol=1.3e-6, atol=1e-5)  # assert_close's float32 defaults on CPU
    x = torch.randn(13, 5).to(device)
    mean, _ = model(x)
    torch.testing.assert_close(model.forward_mean(x), mean, **tol)
    subset = torch.tensor([2, 0], device=device)
    sub_mean, sub_logvar = model(x, subset)
    torch.testing.assert_close(sub_mean, mean[[2, 0]], **tol)
    torch.testing.assert_close(model.forward_mean(x, subset), mean[[2, 0]], **tol)
    assert sub_logvar.shape == (2, 13, 4)


def test_inputs_are_standardised_inside_the_model():
    model = _model()
    x = torch.randn(6, 5)
    mu, std = torch.arange(5.0), torch.full((5,), 2.0)
    reference, _ = model((x - mu) / std)
    model.set_scaler(mu.numpy()[None], std.numpy()[None])  # (1, in) arrays as in mu.npy
    out, _ = model(x)
    torch.testing.assert_close(out, reference)


def test_elites_and_scaler_survive_state_dict_roundtrip(device):
    model = _model(device)
    model.set_elites([2, 0])
    model.set_scaler(torch.arange(5.0), torch.full((5,), 3.0))
    buffers = dict(model.named_buffers())
    assert set(buffers) == {"elite_idx", "in_mean", "in_std"}
    assert model.elite_idx.dtype == torch.int64
    assert {b.device.type for b in buffers.values()} == {device.type}
    fresh = _model(device)
    fresh.load_state_dict(model.state_dict())
    assert fresh.elite_idx.tolist() == [2, 0]
    torch.testing.assert_close(fresh.in_std, torch.full((5,), 3.0, device=device))
    x = torch.randn(4, 5).to(device)
    torch.testing.assert_close(fresh(x)[0], model(x)[0])


def test_set_elites_validates():
    model = _model()
    for bad in ([0], [0, 0], [0, 3], [-1, 1]):
        with pytest.raises(ValueError, match="elites"):
            model.set_elites(bad)


def test_weight_decay_loss_and_soft_clamp_formula():
    model = _model()
    expected = sum(wd * 0.5 * layer.weight.square().sum()
                   for wd, layer in zip((1e-3, 2e-3, 3e-3), (*model.layers, model.output_layer)))
    torch.testing.assert_close(model.weight_decay_loss(), expected)
    x = torch.randn(5, 5)
    h = x
    for layer in model.layers:
        h = F.silu(layer(h))
    raw = model.output_layer(h)[..., 4:]
    clamped = model.max_logvar - F.softplus(model.max_logvar - raw)
    clamped = model.min_logvar + F.softplus(clamped - model.min_logvar)
    torch.testing.assert_close(model(x)[1], clamped)
    assert model.max_logvar.shape == (4,) and torch.all(model.max_logvar == 0.5)
    assert torch.all(model.min_logvar == -10.0)


def test_constructor_validates():
    with pytest.raises(ValueError, match="weight_decays"):
        GaussianEnsemble(5, 4, (8, 8), num_members=3, num_elites=2, weight_decays=(0.1, 0.1))
    with pytest.raises(ValueError, match="num_elites"):
        GaussianEnsemble(5, 4, (8,), num_members=2, num_elites=3)
