"""CQL (spec §7.2, §12.21, SPEED.md): one update, the conservative term by hand, and the
optimised update against the straightforward one with per-call anchors."""
from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from device_helpers import close_kw
from policy_helpers import (
    assert_all_changed,
    assert_finite_floats,
    assert_params_close,
    assert_polyak,
    make_tiny_sac_parts,
    make_tiny_sac_policy,
    per_call_anchor,
    snapshot,
    tiny_batch,
    torch_threads,
)

from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.cql import CQLPolicy, conservative_term
from offlinerlkit.policy.sac import SACPolicy
from offlinerlkit.types import Batch

CQL_KEYS = {"loss/actor", "loss/critic1", "loss/critic2", "loss/alpha", "alpha"}
LAGRANGE_KEYS = CQL_KEYS | {"loss/cql_alpha", "cql_alpha"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def make_cql(cocoa: bool, **kw: object) -> CQLPolicy:
    return make_tiny_sac_policy(CQLPolicy, cocoa=cocoa, **kw)


# --- one update ---
@pytest.mark.parametrize("lagrange", [False, True], ids=["default", "lagrange"])
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_cql_learn_updates_exactly_the_intended_parameters(cocoa: bool, lagrange: bool,
                                                          device: torch.device) -> None:
    torch.manual_seed(0)
    policy = make_cql(cocoa, with_lagrange=lagrange, max_q_backup=lagrange, device=device)
    actor0, critics0, target0 = (snapshot(policy.nets[k]) for k in ("actor", "critics", "critics_target"))
    log_alpha0 = policy.log_alpha.detach().clone()
    batch = tiny_batch(device=device)
    metrics = policy.learn(batch)

    assert_finite_floats(metrics, LAGRANGE_KEYS if lagrange else CQL_KEYS)
    assert_all_changed(actor0, policy.actor, "actor")
    assert_all_changed(critics0, policy.critics, "critics")
    assert_polyak(target0, policy.critics_target, policy.critics)
    assert not torch.equal(policy.log_alpha.detach(), log_alpha0)
    if lagrange:
        assert metrics["cql_alpha"] == 1.0  # exp(0): the multiplier used in this update
        assert policy.cql_log_alpha.item() != 0.0
    if cocoa:  # s and s' only, stacked in one call: the B*R repeated states reuse s's anchors
        fn = policy.anchors.actor_fn
        assert isinstance(fn, CountingAnchorFn)
        assert (fn.calls, fn.rows) == (1, 2 * len(batch))


def test_cql_alpha_is_not_clamped() -> None:
    cql, sac = make_cql(False), SACPolicy(*make_tiny_sac_parts(cocoa=False))
    with torch.no_grad():
        cql.log_alpha.fill_(0.5)
        sac.log_alpha.fill_(0.5)
    assert cql.alpha.item() == pytest.approx(math.exp(0.5))  # type: ignore[union-attr]
    assert sac.alpha.item() == 1.0  # type: ignore[union-attr]


def test_bad_lse_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="cql_lse_mode"):
        make_cql(False, cql_lse_mode="per_batch")


# --- the conservative term by hand ---
@pytest.mark.parametrize("mode", ["per_row", "per_state"])
def test_conservative_term_matches_a_direct_computation(mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    num_critics, batch, repeats, weight, temp = 2, 3, 4, 5.0, 0.7
    q_data = torch.randn(num_critics, batch, 1, generator=g)
    q_pi, q_next_pi, q_rand = (torch.randn(num_critics, batch * repeats, 1, generator=g) * 3
                               for _ in range(3))
    got = conservative_term(q_data, q_pi, q_next_pi, q_rand, num_repeat=repeats,
                            cql_weight=weight, temperature=temp, mode=mode)  # type: ignore[arg-type]

    qd, qp, qn, qr = (x.double().numpy()[..., 0] for x in (q_data, q_pi, q_next_pi, q_rand))
    want = []
    for j in range(num_critics):
        if mode == "per_row":  # 3 values of each repeated row (state i, repeat k) = row i*R+k
            lse = [math.log(sum(math.exp(v[j, row] / temp) for v in (qp, qn, qr)))
                   for row in range(batch * repeats)]
        else:  # the 3R values of each state
            lse = [math.log(sum(math.exp(v[j, i * repeats + k] / temp)
                                for v in (qp, qn, qr) for k in range(repeats)))
                   for i in range(batch)]
        want.append(weight * temp * np.mean(lse) - weight * qd[j].mean())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_the_two_lse_modes_differ_except_for_one_repeat() -> None:
    g = torch.Generator().manual_seed(1)
    q = [torch.randn(2, 6, 1, generator=g) for _ in range(4)]
    kw = dict(cql_weight=5.0, temperature=1.0)
    row, state = (conservative_term(*q, num_repeat=3, mode=m, **kw) for m in ("per_row", "per_state"))
    assert (state > row).all()  # an LSE over 9 values per state exceeds the mean of 3-value LSEs
    row, state = (conservative_term(*q, num_repeat=1, mode=m, **kw) for m in ("per_row", "per_state"))
    torch.testing.assert_close(row, state)


# --- the optimised update equals the straightforward one ---
def reference_cql_learn(p: CQLPolicy, batch: Batch) -> dict[str, float]:
    """The original (OfflineRL-Kit/COCOA) CQL step written out: every network call anchors its
    own input, the actor runs on all B*R repeated states, policy samples are not detached, the actor
    loss back-propagates into the critic weights, and the Lagrange loss back-propagates everywhere."""
    anchor_a, anchor_c = per_call_anchor(p.anchors.actor_fn), per_call_anchor(p.anchors.critic_fn)

    def actforward(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return p.actor(s, anchor_a(s)).rsample()

    def q_values(s: torch.Tensor, a: torch.Tensor, target: bool = False) -> torch.Tensor:
        return (p.critics_target if target else p.critics)(s, a, anchor_c(s))

    obs, action, next_obs = batch.obs, batch.action, batch.next_obs
    b, r, a_dim = obs.shape[0], p.num_repeat_actions, action.shape[-1]
    alpha = p.log_alpha.detach().exp()
    # actor
    a, log_probs = actforward(obs)
    qa = q_values(obs, a)
    actor_loss = (alpha * log_probs - torch.min(qa[0], qa[1])).mean()
    p.actor_optim.zero_grad()
    actor_loss.backward()
    p.actor_optim.step()
    alpha_loss = -(p.log_alpha * (log_probs.detach() + p.target_entropy)).mean()
    p.alpha_optim.zero_grad()
    alpha_loss.backward()
    p.alpha_optim.step()
    alpha = p.log_alpha.detach().exp()
    # target
    with torch.no_grad():
        if p.max_q_backup:
            tmp_next = next_obs.unsqueeze(1).repeat(1, r, 1).view(b * r, -1)
            tmp_a, _ = actforward(tmp_next)
            tq = q_values(tmp_next, tmp_a, target=True)
            q1n = tq[0].view(b, r, 1).max(1)[0].view(-1, 1)
            q2n = tq[1].view(b, r, 1).max(1)[0].view(-1, 1)
            next_q = torch.min(q1n, q2n)
        else:
            next_a, next_lp = actforward(next_obs)
            tq = q_values(next_obs, next_a, target=True)
            next_q = torch.min(tq[0], tq[1])
            if not p.deterministic_backup:
                next_q = next_q - alpha * next_lp
        target_q = batch.reward + p.gamma * (1 - batch.done) * next_q
    q = q_values(obs, action)
    l1, l2 = (q[0] - target_q).pow(2).mean(), (q[1] - target_q).pow(2).mean()
    # conservative
    random_actions = torch.empty(b * r, a_dim, device=obs.device).uniform_(-1.0, 1.0)
    tmp_obs = obs.unsqueeze(1).repeat(1, r, 1).view(b * r, -1)
    tmp_next = next_obs.unsqueeze(1).repeat(1, r, 1).view(b * r, -1)

    def pi_values(obs_pi: torch.Tensor, obs_to_pred: torch.Tensor) -> list[torch.Tensor]:
        act, lp = actforward(obs_pi)
        qq = q_values(obs_to_pred, act)
        return [qq[0] - lp.detach(), qq[1] - lp.detach()]

    obs_pi, next_pi = pi_values(tmp_obs, tmp_obs), pi_values(tmp_next, tmp_obs)
    rq = q_values(tmp_obs, random_actions)
    rand = [rq[0] - np.log(0.5**a_dim), rq[1] - np.log(0.5**a_dim)]
    cons = []
    for j, qj in enumerate((q[0], q[1])):
        parts = [obs_pi[j], next_pi[j], rand[j]]
        if p.cql_lse_mode == "per_state":  # the reshape the original intended
            parts = [v.reshape(b, r, 1) for v in parts]
        cat = torch.cat(parts, 1)
        cons.append(torch.logsumexp(cat / p.temperature, dim=1).mean() * p.cql_weight * p.temperature
                    - qj.mean() * p.cql_weight)
    metrics = {}
    if p.with_lagrange:
        cql_alpha = torch.clamp(p.cql_log_alpha.exp(), 0.0, 1e6)
        cons = [cql_alpha * (c - p.lagrange_threshold) for c in cons]
        p.cql_alpha_optim.zero_grad()
        cql_alpha_loss = -(cons[0] + cons[1]) * 0.5
        cql_alpha_loss.backward(retain_graph=True)
        p.cql_alpha_optim.step()
        metrics = {"loss/cql_alpha": cql_alpha_loss.item(), "cql_alpha": cql_alpha.item()}
    c1, c2 = l1 + cons[0], l2 + cons[1]
    p.critic_optim.zero_grad()
    (c1 + c2).backward()
    p.critic_optim.step()
    with torch.no_grad():
        for t, o in zip(p.critics_target.parameters(), p.critics.parameters()):
            t.copy_(t * (1 - p.tau) + o * p.tau)
    return {"loss/actor": actor_loss.item(), "loss/critic1": c1.item(), "loss/critic2": c2.item(),
            "loss/alpha": alpha_loss.item(), "alpha": alpha.item(), **metrics}


VARIANTS = {
    "default": {},
    "per_state+lagrange+max_q+entropy": dict(cql_lse_mode="per_state", with_lagrange=True,
                                              max_q_backup=True, deterministic_backup=False),
    "entropy_backup": dict(deterministic_backup=False, num_repeat_actions=3),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_cql_matches_the_straightforward_per_call_anchor_reference(cocoa: bool, variant: str,
                                                                   device: torch.device) -> None:
    torch.manual_seed(0)
    fast = make_cql(cocoa, **VARIANTS[variant], device=device)
    ref = copy.deepcopy(fast)
    for step in range(3):
        batch = tiny_batch(seed=step, device=device)
        torch.manual_seed(100 + step)
        got = fast.learn(batch)
        torch.manual_seed(100 + step)
        want = reference_cql_learn(ref, batch)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for name in ("actor", "critics", "critics_target"):
        assert_params_close(fast.nets[name], ref.nets[name], **close_kw(device, rtol=1e-5, atol=1e-6))
    torch.testing.assert_close(fast.log_alpha, ref.log_alpha)
    if fast.with_lagrange:
        torch.testing.assert_close(fast.cql_log_alpha, ref.cql_log_alpha)
    if cocoa:  # the reference anchors every network call, as the original did
        fast_fn, ref_fn = fast.anchors.actor_fn, ref.anchors.actor_fn
        assert isinstance(fast_fn, CountingAnchorFn) and isinstance(ref_fn, CountingAnchorFn)
        assert fast_fn.calls == 3 and ref_fn.calls > 8 * fast_fn.calls


# --- state ---
def test_state_dict_round_trip_with_the_lagrange_multiplier() -> None:
    torch.manual_seed(0)
    first = make_cql(True, with_lagrange=True)
    first.learn(tiny_batch(seed=0))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state["optims"]) == {"actor_optim", "critic_optim", "alpha_optim", "cql_alpha_optim"}
    assert set(state["extra"]) == {"log_alpha", "cql_log_alpha"}

    torch.manual_seed(3)
    second = make_cql(True, with_lagrange=True)
    second.load_state_dict(state)
    batch = tiny_batch(seed=1)
    torch.manual_seed(11)
    m1 = first.learn(batch)
    torch.manual_seed(11)
    assert second.learn(batch) == m1
    for name in first.nets:
        assert_params_close(first.nets[name], second.nets[name], rtol=0, atol=0)
    assert torch.equal(first.cql_log_alpha, second.cql_log_alpha)
