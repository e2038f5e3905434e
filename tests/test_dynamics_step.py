"""EnsembleDynamics inference: routing through elites, elite mean, MOPO penalties, MOBILE samples."""
from __future__ import annotations

import pytest
import torch
from device_helpers import close_kw

from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics

S, A = 3, 2
#: `assert_close`'s float32 defaults, kept on CPU (CUDA: `close_kw`'s)
DEFAULT_TOL = {"rtol": 1.3e-6, "atol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from threads, and busy machines make spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stub_model(out_dim: int, num_members: int = 4, elites=(2, 0), device="cpu") -> GaussianEnsemble:
    """Members whose mean offset is the constant `e + 1` and whose std is ~3e-9.

    Every weight is zero, so member `e` outputs its bias: `e + 1` in every mean dimension and a
    log-variance of about -39 (the lower bound is moved to -40 to allow it).
    """
    model = GaussianEnsemble(S + A, out_dim, (8,), num_members=num_members, num_elites=len(elites))
    with torch.no_grad():
        for p in model.member_parameters().values():
            p.zero_()
        for e in range(num_members):
            model.output_layer.bias[e, 0, :out_dim] = e + 1.0
            model.output_layer.bias[e, 0, out_dim:] = -40.0
        model.min_logvar.fill_(-40.0)
    model.set_elites(list(elites))
    return model.to(device)


def _random_model(out_dim: int = S + 1, device="cpu") -> GaussianEnsemble:
    torch.manual_seed(1)
    model = GaussianEnsemble(S + A, out_dim, (16, 16), num_members=5, num_elites=3)
    model.set_elites([4, 1, 2])
    return model.to(device)


def _gen(seed: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _batch(n: int = 64, device="cpu"):
    """Drawn on the CPU, then moved: every device sees the same states and actions."""
    gen = torch.Generator().manual_seed(3)
    obs, action = torch.randn(n, S, generator=gen), torch.rand(n, A, generator=gen) * 2 - 1
    return obs.to(device), action.to(device)


def test_random_elite_rows_come_from_elites_only(device):
    dynamics = EnsembleDynamics(_stub_model(S + 1, device=device), direction="forward")
    obs, action = _batch(2000, device=device)
    next_obs, reward, terminal, info = dynamics.step(obs, action, generator=_gen(0, device))
    delta = (next_obs - obs).round()
    assert torch.all(delta == delta[:, :1])  # one member per row for every state dim
    torch.testing.assert_close(reward.round(), delta[:, :1])  # and the reward comes from the same member
    members = delta[:, 0].long() - 1
    assert set(members.tolist()) == {0, 2}  # elites (2, 0) only; members 1 and 3 never used
    share = (members == 2).float().mean().item()
    assert 0.4 < share < 0.6  # uniform over elites
    assert terminal.dtype == torch.bool and terminal.shape == (2000, 1) and not terminal.any()
    assert set(info) == {"raw_reward", "uncertainty"}


def test_elite_mean_averages_the_elites(device):
    dynamics = EnsembleDynamics(_stub_model(S + 1, device=device), direction="forward")
    obs, action = _batch(device=device)
    next_obs, reward, _, _ = dynamics.step(obs, action, sampling="elite_mean")
    torch.testing.assert_close(next_obs, obs + 2.0)  # members 2 and 0 offset by 3 and 1
    torch.testing.assert_close(reward, torch.full((64, 1), 2.0, device=device))
    torch.testing.assert_close(dynamics.predict_mean(obs, action), obs + 2.0)


def test_predict_mean_equals_step_elite_mean_on_a_random_model(device):
    dynamics = EnsembleDynamics(_random_model(device=device), direction="forward", penalty_coef=1.0)
    obs, action = _batch(device=device)
    expected = dynamics.step(obs, action, sampling="elite_mean")[0]
    torch.testing.assert_close(dynamics.predict_mean(obs, action), expected,
                               **close_kw(device, rtol=1e-6, atol=1e-6))
    mean, _ = dynamics.model(torch.cat([obs, action], -1))
    torch.testing.assert_close(expected, (mean[[4, 1, 2], :, :S] + obs).mean(0),
                               **close_kw(device, **DEFAULT_TOL))


def test_sampling_is_reproducible_with_a_generator(device):
    dynamics = EnsembleDynamics(_random_model(device=device), direction="forward")
    obs, action = _batch(device=device)
    first = dynamics.step(obs, action, generator=_gen(5, device))
    second = dynamics.step(obs, action, generator=_gen(5, device))
    other = dynamics.step(obs, action, generator=_gen(6, device))
    torch.testing.assert_close(first[0], second[0])
    assert not torch.allclose(first[0], other[0])


@pytest.mark.parametrize("mode", ["aleatoric", "pairwise-diff", "ensemble_std"])
def test_mopo_penalties(mode, device):
    dynamics = EnsembleDynamics(_random_model(device=device), direction="forward",
                                penalty_coef=2.5, uncertainty_mode=mode)
    obs, action = _batch(device=device)
    _, reward, _, info = dynamics.step(obs, action, generator=_gen(0, device))
    mean, logvar = dynamics.model(torch.cat([obs, action], -1))  # [E, B, S + 1]
    std = torch.exp(logvar / 2)
    state = mean[..., :S] + obs
    ensemble_std = state.var(0, unbiased=False).mean(-1, keepdim=True).sqrt()
    expected = {
        "aleatoric": std.norm(dim=-1).max(0).values.unsqueeze(-1),  # all dims incl. reward, all members
        "pairwise-diff": (state - state.mean(0)).norm(dim=-1).max(0).values.unsqueeze(-1),
        "ensemble_std": ensemble_std,
    }[mode]
    assert set(info) == {"raw_reward", "uncertainty", "penalty"}
    tol = close_kw(device, **DEFAULT_TOL)
    torch.testing.assert_close(info["penalty"], expected, **tol)
    torch.testing.assert_close(info["uncertainty"], ensemble_std, **tol)
    torch.testing.assert_close(reward, info["raw_reward"] - 2.5 * expected, **tol)
    assert reward.shape == info["penalty"].shape == (64, 1)


def test_zero_penalty_leaves_reward_but_reports_uncertainty():
    dynamics = EnsembleDynamics(_random_model(), direction="forward")
    obs, action = _batch()
    _, reward, _, info = dynamics.step(obs, action, generator=torch.Generator().manual_seed(0))
    assert "penalty" not in info
    torch.testing.assert_close(reward, info["raw_reward"])
    assert info["uncertainty"].shape == (64, 1) and torch.all(info["uncertainty"] > 0)


def test_termination_fn_sees_obs_action_and_prediction():
    seen = {}

    def height_below_zero(obs, action, next_obs):
        seen.update(obs=obs, action=action, next_obs=next_obs)
        return next_obs[:, :1] < 0

    dynamics = EnsembleDynamics(_random_model(), direction="forward", termination_fn=height_below_zero)
    obs, action = _batch()
    next_obs, _, terminal, _ = dynamics.step(obs, action, sampling="elite_mean")
    assert seen["obs"] is obs and seen["action"] is action
    assert torch.equal(terminal, next_obs[:, :1] < 0) and terminal.dtype == torch.bool


def test_mobile_samples_shape_and_routing(device):
    dynamics = EnsembleDynamics(_stub_model(S + 1, device=device), direction="forward")
    obs, action = _batch(7, device=device)
    samples = dynamics.sample_next_obs(obs, action, num_samples=10, generator=_gen(0, device))
    assert samples.shape == (10, 2, 7, S)  # (num_samples, K, B, S)
    torch.testing.assert_close(samples[:, 0], (obs + 3.0).expand(10, -1, -1))  # elite 2 first
    torch.testing.assert_close(samples[:, 1], (obs + 1.0).expand(10, -1, -1))


def test_mobile_samples_are_gaussian_around_the_elite_means(device):
    dynamics = EnsembleDynamics(_random_model(device=device), direction="forward")
    obs, action = _batch(4, device=device)
    samples = dynamics.sample_next_obs(obs, action, num_samples=4000, generator=_gen(0, device))
    mean, logvar = dynamics.model(torch.cat([obs, action], -1), dynamics.model.elite_idx)
    torch.testing.assert_close(samples.mean(0), mean[..., :S] + obs, atol=0.1, rtol=0.0)
    torch.testing.assert_close(samples.std(0), torch.exp(logvar[..., :S] / 2), atol=0.05, rtol=0.05)


def test_reverse_step_has_no_reward_and_never_terminates(device):
    dynamics = EnsembleDynamics(_stub_model(S, device=device), direction="reverse")
    next_obs, action = _batch(500, device=device)
    prev_obs, reward, terminal, info = dynamics.step(next_obs, action, generator=_gen(0, device))
    assert reward is None and not terminal.any() and terminal.shape == (500, 1)
    assert set((prev_obs - next_obs).round()[:, 0].tolist()) == {1.0, 3.0}
    torch.testing.assert_close(dynamics.predict_mean(next_obs, action), next_obs + 2.0)
    assert set(info) == {"uncertainty"}


def test_training_pairs_both_directions():
    obs, action = _batch(5)
    next_obs, reward = obs * 2, torch.arange(5.0)
    fwd = EnsembleDynamics(_random_model(S + 1), direction="forward")
    x, y = fwd.training_pairs(obs, action, next_obs, reward)
    torch.testing.assert_close(x, torch.cat([obs, action], -1))
    torch.testing.assert_close(y, torch.cat([next_obs - obs, reward[:, None]], -1))
    rev = EnsembleDynamics(_random_model(S), direction="reverse")
    x, y = rev.training_pairs(obs, action, next_obs)
    torch.testing.assert_close(x, torch.cat([next_obs, action], -1))
    torch.testing.assert_close(y, obs - next_obs)


def test_constructor_and_input_validation():
    with pytest.raises(ValueError, match="never terminate"):
        EnsembleDynamics(_random_model(S), direction="reverse", termination_fn=lambda o, a, n: o[:, :1] > 0)
    with pytest.raises(ValueError, match="penalty_coef"):
        EnsembleDynamics(_random_model(S), direction="reverse", penalty_coef=1.0)
    with pytest.raises(ValueError, match="uncertainty_mode"):
        EnsembleDynamics(_random_model(), direction="forward", uncertainty_mode="max")  # type: ignore[arg-type]
    dynamics = EnsembleDynamics(_random_model(), direction="forward")
    with pytest.raises(ValueError, match="sampling"):
        dynamics.step(*_batch(), sampling="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"obs \[B, 3\]"):
        dynamics.step(torch.zeros(4, 2), torch.zeros(4, 2))
    assert dynamics.obs_dim == S and dynamics.action_dim == A


def test_row_chunking_does_not_change_results(device):
    model = _random_model(device=device)
    whole = EnsembleDynamics(model, direction="forward", penalty_coef=1.0, chunk_rows=10_000)
    chunked = EnsembleDynamics(model, direction="forward", penalty_coef=1.0, chunk_rows=7)
    obs, action = _batch(64, device=device)
    a, b = whole.step(obs, action, sampling="elite_mean"), chunked.step(obs, action, sampling="elite_mean")
    for x, y in zip(a[:3], b[:3]):
        torch.testing.assert_close(x, y, **close_kw(device, **DEFAULT_TOL))
    for key in a[3]:
        torch.testing.assert_close(a[3][key], b[3][key], **close_kw(device, **DEFAULT_TOL))
    torch.testing.assert_close(whole.predict_mean(obs, action), chunked.predict_mean(obs, action),
                               **close_kw(device, **DEFAULT_TOL))
    assert chunked.sample_next_obs(obs, action, 3).shape == (3, 3, 64, S)
    stub = EnsembleDynamics(_stub_model(S + 1, device=device), direction="forward", chunk_rows=7)
    delta = (stub.step(obs, action)[0] - obs).round()
    assert set(delta[:, 0].tolist()) == {1.0, 3.0}


def test_cached_elite_weights_follow_elites_and_weight_updates(device):
    model = _random_model(device=device)
    dynamics = EnsembleDynamics(model, direction="forward")
    obs, action = _batch(device=device)

    def reference():
        mean, _ = model(torch.cat([obs, action], -1))
        return (mean[model.elite_idx, :, :S] + obs).mean(0)

    torch.testing.assert_close(dynamics.predict_mean(obs, action), reference(),
                               **close_kw(device, **DEFAULT_TOL))
    model.set_elites([0, 3, 1])
    torch.testing.assert_close(dynamics.predict_mean(obs, action), reference(),
                               **close_kw(device, **DEFAULT_TOL))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.cat([obs, action], -1))[0].sum().backward()
    optimizer.step()  # in-place update of every weight
    torch.testing.assert_close(dynamics.predict_mean(obs, action), reference(),
                               **close_kw(device, **DEFAULT_TOL))
    fresh = _random_model(device=device)
    with torch.no_grad():
        fresh.layers[0].weight.mul_(2.0)
    model.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(dynamics.predict_mean(obs, action), reference(),
                               **close_kw(device, **DEFAULT_TOL))
