"""Anchor functions (spec §5.1-5.3, §14 items 5-6) and the bilinear anchor/delta encoder."""
from __future__ import annotations

import pytest
import torch
from device_helpers import close_kw
from policy_helpers import make_tiny_dynamics

from offlinerlkit.anchor import (
    AnchorSeeker,
    ClosestDeltaAnchorFn,
    RolloutAnchorFn,
    closest_delta_anchor_fn,
    rollout_anchor_fn,
)
from offlinerlkit.dynamics import EnsembleDynamics
from offlinerlkit.modules.encoder import AnchorDeltaEncoder
from offlinerlkit.policy.anchors import Anchors

S, A = 3, 2


def _dynamics(direction: str = "forward", seed: int = 0, device="cpu") -> EnsembleDynamics:
    torch.manual_seed(seed)
    return make_tiny_dynamics(S, A, direction=direction, elites=[2, 0], eval_mode=True, device=device)


def _seeker(seed: int = 1, device="cpu") -> AnchorSeeker:
    torch.manual_seed(seed)
    return AnchorSeeker(S, A, (8, 8)).requires_grad_(False).eval().to(device)


def _obs(n: int = 40, seed: int = 2, device="cpu") -> torch.Tensor:
    """Drawn on the CPU, then moved: every device sees the same states."""
    return torch.randn(n, S, generator=torch.Generator().manual_seed(seed)).to(device)


# --- rollout anchors ---
def test_rollout_anchor_is_the_elite_mean_rollout_of_the_seeker(device):
    dynamics, seeker, obs = _dynamics(device=device), _seeker(device=device), _obs(device=device)
    fn = rollout_anchor_fn(seeker, dynamics, horizon=3)
    expected = obs
    for _ in range(3):
        expected = dynamics.step(expected, seeker(expected), sampling="elite_mean")[0]
    torch.testing.assert_close(fn(obs), expected, **close_kw(device, rtol=1.3e-6, atol=1e-5))
    assert fn(obs).dtype == torch.float32 and fn(obs).shape == obs.shape
    assert fn(obs).device == obs.device


def test_rollout_anchor_is_deterministic_and_gradient_free(device):
    fn = rollout_anchor_fn(_seeker(device=device), _dynamics(device=device), horizon=2)
    obs = _obs(device=device).requires_grad_(True)
    first, second = fn(obs), fn(obs)
    assert torch.equal(first, second)  # the same kernels on the same rows: exact on CUDA too
    assert not first.requires_grad
    # a row's anchor ignores the other rows (CUDA: another row count may pick another kernel)
    torch.testing.assert_close(fn(obs[:7]), first[:7], **close_kw(device, rtol=1.3e-6, atol=1e-5))
    pair = Anchors(fn, fn)(obs)  # what the policies call: computed once, shared
    assert pair.actor is pair.critic and torch.equal(pair.actor, first)


def test_horizon_zero_is_the_identity(device):
    obs = _obs(device=device)
    fn = rollout_anchor_fn(_seeker(device=device), _dynamics(device=device), horizon=0)
    assert torch.equal(fn(obs), obs)


def test_rollout_anchor_fn_is_a_small_readable_callable():
    fn = rollout_anchor_fn(_seeker(), _dynamics(), horizon=2)
    assert isinstance(fn, RolloutAnchorFn) and not isinstance(fn, torch.nn.Module)
    assert fn.horizon == 2
    assert "horizon=2" in repr(fn) and "hidden_dims=[8, 8]" in repr(fn)


def test_rollout_anchor_fn_checks_its_parts():
    for horizon in (-1, 1.5, True):
        with pytest.raises(ValueError, match="horizon"):
            rollout_anchor_fn(_seeker(), _dynamics(), horizon)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forward dynamics"):
        rollout_anchor_fn(_seeker(), _dynamics("reverse"), 1)
    with pytest.raises(ValueError, match="obs_dim"):
        rollout_anchor_fn(AnchorSeeker(S + 1, A, (8,)), _dynamics(), 1)


# --- closest-delta anchors (the original's top_10_d) ---
def _reference(dataset: torch.Tensor, calls: list[torch.Tensor], sample_size: int, seed: int):
    """Brute force with the same random draws, in the same order."""
    gen = torch.Generator().manual_seed(seed)
    n = dataset.shape[0]
    perm_1, perm_2 = torch.randperm(n, generator=gen), torch.randperm(n, generator=gen)
    train_deltas = dataset[perm_1] - dataset[perm_2]
    results = []
    for queries in calls:
        deltas = train_deltas[torch.randint(n, (sample_size,), generator=gen)]
        batch = queries.shape[0]
        chunk = 32 if batch % 32 == 0 else 100 if batch % 100 == 0 else batch
        out = []
        for lo in range(0, batch, chunk):
            candidates = dataset[torch.randint(n, (sample_size,), generator=gen)]
            for s in queries[lo:lo + chunk]:
                diffs = s - candidates  # [P, S]
                sq = ((diffs[:, None, :] - deltas[None, :, :]) ** 2).sum(-1)  # [P, P]
                out.append(candidates[sq.min(dim=1).values.argmin()])
        results.append(torch.stack(out))
    return results


def test_closest_delta_matches_a_brute_force_reference():
    dataset = torch.randn(300, S, generator=torch.Generator().manual_seed(0))
    calls = [_obs(64, 1), _obs(200, 2), _obs(7, 3), _obs(1, 4)]  # chunks of 32, 100, all, all
    fn = closest_delta_anchor_fn(dataset, sample_size=50, generator=torch.Generator().manual_seed(9))
    got = [fn(q) for q in calls]
    expected = _reference(dataset, calls, 50, seed=9)
    for g, e, q in zip(got, expected, calls):
        assert g.dtype == torch.float32 and g.shape == q.shape
        assert torch.equal(g, e)
    # every anchor is a dataset state
    assert (got[1][:, None, :] == dataset[None, :, :]).all(-1).any(1).all()


def test_closest_delta_chunk_rule():
    assert [ClosestDeltaAnchorFn.chunk_size(b) for b in (64, 256, 200, 300, 50, 7)] == \
        [32, 32, 100, 100, 50, 7]


def test_closest_delta_is_random_but_reproducible():
    dataset = torch.randn(200, S, generator=torch.Generator().manual_seed(0))
    obs = _obs(32)
    fn = closest_delta_anchor_fn(dataset, sample_size=20, generator=torch.Generator().manual_seed(1))
    again = closest_delta_anchor_fn(dataset, sample_size=20, generator=torch.Generator().manual_seed(1))
    first = fn(obs)
    assert torch.equal(first, again(obs))
    assert not torch.equal(first, fn(obs))  # fresh draws on every call
    assert "sample_size=20" in repr(fn)


# --- the bilinear encoder (spec §6.2, §14 item 5) ---
@pytest.mark.parametrize("extra_dim,members", [(0, 1), (A, 1), (A, 2)])
def test_anchor_delta_encoder_is_a_blockwise_dot_product(extra_dim, members, device):
    torch.manual_seed(0)
    hidden, embedding = (16, 6), 4
    encoder = AnchorDeltaEncoder(S, extra_dim, hidden, embedding, num_members=members).to(device)
    obs, anchor = _obs(10, 1, device), _obs(10, 2, device)
    extra = torch.randn(10, extra_dim).to(device) if extra_dim else None
    out = encoder(obs, anchor, extra)
    delta = obs - anchor
    if extra is not None:
        delta, anchor = torch.cat([delta, extra], -1), torch.cat([anchor, extra], -1)
    f, g = encoder.delta_net(delta), encoder.anchor_net(anchor)  # [E, B, T * D]
    t = hidden[-1]
    assert encoder.output_dim == t and out.shape == (members, 10, t)
    torch.testing.assert_close(out, (f * g).reshape(members, 10, t, embedding).sum(-1),
                               **close_kw(device, rtol=1.3e-6, atol=1e-5))
