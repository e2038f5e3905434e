"""MOBILE (spec §7.4): one update, the Bellman-inconsistency penalty by hand, the frozen shared
dynamics, and the shared anchors against a per-call reference."""
from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterator
from typing import Optional

import pytest
import torch
from device_helpers import close_kw
from policy_helpers import (
    ACTION_DIM,
    OBS_DIM,
    assert_all_changed,
    assert_finite_floats,
    assert_params_close,
    assert_polyak,
    assert_unchanged,
    make_tiny_dynamics,
    make_tiny_sac_parts,
    per_call_anchor,
    scaled_anchor_fn,
    snapshot,
    tiny_batch,
    torch_threads,
)
from torch import Tensor, nn

from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.encoder import IdentityEncoder
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.mobile import MAX_Q_BACKUP_REPEATS, MOBILEPolicy
from offlinerlkit.policy.sac import SACHyperparams
from offlinerlkit.types import Batch

MOBILE_KEYS = {"loss/actor", "loss/critic", "loss/alpha", "alpha"}
NUM_SAMPLES, NUM_ELITES = 4, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def make_dynamics(device: torch.device | str = "cpu") -> EnsembleDynamics:
    return make_tiny_dynamics(num_elites=NUM_ELITES, device=device)


def make_mobile(cocoa: bool, dynamics: Optional[EnsembleDynamics] = None, *, num_critics: int = 2,
                device: torch.device | str = "cpu", **kw: object) -> MOBILEPolicy:
    actor, critics = make_tiny_sac_parts(cocoa=cocoa, num_critics=num_critics)
    fn = scaled_anchor_fn() if cocoa else None
    return MOBILEPolicy(actor, critics, dynamics or make_dynamics(device), num_samples=NUM_SAMPLES,
                        actor_anchor_fn=fn, critic_anchor_fn=fn, device=device,
                        **kw)  # type: ignore[arg-type]


# --- one update ---
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_mobile_learn_updates_exactly_the_intended_parameters(cocoa: bool, device: torch.device
                                                             ) -> None:
    torch.manual_seed(0)
    dynamics = make_dynamics(device)
    policy = make_mobile(cocoa, dynamics, device=device)
    actor0, critics0, target0 = (snapshot(policy.nets[k]) for k in ("actor", "critics", "critics_target"))
    dynamics0, log_alpha0 = snapshot(dynamics.model), policy.log_alpha.detach().clone()
    batch = tiny_batch(device=device)
    metrics = policy.learn(batch, num_real=2)

    assert_finite_floats(metrics, MOBILE_KEYS)
    assert_all_changed(actor0, policy.actor, "actor")
    assert_all_changed(critics0, policy.critics, "critics")
    assert_polyak(target0, policy.critics_target, policy.critics)
    assert not torch.equal(policy.log_alpha.detach(), log_alpha0)
    assert_unchanged(dynamics0, dynamics.model, "dynamics")
    assert all(p.grad is None for p in dynamics.model.parameters())
    assert "dynamics" not in policy.nets and not any(
        p is q for p in dynamics.model.parameters() for net in policy.nets.values()
        for q in net.parameters())
    if cocoa:  # s and s' (stacked, one call) and the N*K*B sampled next states
        fn = policy.anchors.actor_fn
        assert isinstance(fn, CountingAnchorFn)
        b = len(batch)
        assert (fn.calls, fn.rows) == (2, 2 * b + NUM_SAMPLES * NUM_ELITES * b)


def test_num_real_is_validated() -> None:
    policy = make_mobile(False)
    for bad in (-1, 9):
        with pytest.raises(ValueError, match="num_real"):
            policy.learn(tiny_batch(batch_size=8), num_real=bad)


# --- the penalty and the target by hand ---
class StubDynamics:
    """Returns fixed next-state samples `[N, K, B, S]`; counts its calls."""

    def __init__(self, samples: Tensor) -> None:
        self.samples, self.calls = samples, 0

    def sample_next_obs(self, obs: Tensor, action: Tensor, num_samples: int,
                        generator: Optional[torch.Generator] = None) -> Tensor:
        assert num_samples == self.samples.shape[0] and obs.shape[0] == self.samples.shape[2]
        self.calls += 1
        return self.samples.clone()


class SumCritics(nn.Module):
    """`Q_j(s, a) = c_j * sum(s)`: action-free, so every value can be computed by hand."""

    def __init__(self, coefs: list[float]) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.tensor(coefs))
        self.num_members = len(coefs)

    def forward(self, obs: Tensor, action: Optional[Tensor] = None,
                anchor: Optional[Tensor] = None) -> Tensor:
        return self.coef.view(-1, 1, 1) * obs.sum(-1, keepdim=True)  # [E, B, 1]


def _stub_policy(samples: Tensor, coefs: list[float], **kw: object) -> MOBILEPolicy:
    actor = TanhGaussianActor(IdentityEncoder(OBS_DIM), (8,), ACTION_DIM)
    return MOBILEPolicy(actor, SumCritics(coefs), StubDynamics(samples),  # type: ignore[arg-type]
                        num_samples=samples.shape[0], **kw)  # type: ignore[arg-type]


def _hand_penalty(samples: Tensor, coefs: list[float]) -> list[float]:
    n, k, b, _ = samples.shape
    sums = samples.double().sum(-1)  # [N, K, B]
    out = []
    for row in range(b):
        per_elite = [sum(min(c * sums[i, e, row].item() for c in coefs) for i in range(n)) / n
                     for e in range(k)]
        mean = sum(per_elite) / k
        out.append(math.sqrt(sum((m - mean) ** 2 for m in per_elite) / (k - 1)))  # unbiased
    return out


def test_penalty_is_the_unbiased_elite_std_of_the_sample_mean_and_zero_on_real_rows() -> None:
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(3, 4, 6, OBS_DIM, generator=g)  # N=3 samples, K=4 elites, B=6
    coefs = [1.0, -0.5]
    policy = _stub_policy(samples, coefs)
    obs, action = torch.randn(6, OBS_DIM, generator=g), torch.zeros(6, ACTION_DIM)
    u = policy.uncertainty(obs, action, num_real=2)
    want = _hand_penalty(samples, coefs)
    assert u.shape == (6, 1)
    assert u[:2].eq(0).all()
    torch.testing.assert_close(u[2:, 0], torch.tensor(want[2:], dtype=torch.float32))
    torch.testing.assert_close(policy.uncertainty(obs, action)[:, 0],
                               torch.tensor(want, dtype=torch.float32))


def test_critic_loss_uses_the_clamped_penalised_target() -> None:
    g = torch.Generator().manual_seed(1)
    b, num_real, beta, gamma = 6, 2, 1.5, 0.9
    samples = torch.randn(2, 3, b, OBS_DIM, generator=g)
    coefs = [0.8, 1.2]
    policy = _stub_policy(samples, coefs, penalty_coef=beta, hp=SACHyperparams(gamma=gamma))
    batch = tiny_batch(batch_size=b, seed=2)
    batch = Batch(obs=batch.obs, action=batch.action,
                  reward=batch.reward.index_fill(0, torch.tensor([1, 4]), -50.0),  # clamped rows
                  next_obs=batch.next_obs, done=batch.done)
    metrics = policy.learn(batch, num_real=num_real)

    u = _hand_penalty(samples, coefs)
    s_sum, next_sum = batch.obs.sum(-1).tolist(), batch.next_obs.sum(-1).tolist()
    total, ys = 0.0, []
    for row in range(b):
        penalty = 0.0 if row < num_real else u[row]
        next_q = min(c * next_sum[row] for c in coefs)
        y = max(0.0, batch.reward[row].item() - beta * penalty
                + gamma * (1 - batch.done[row].item()) * next_q)
        ys.append(y)
        total += sum((c * s_sum[row] - y) ** 2 for c in coefs)
    assert ys[1] == 0.0 and ys[4] == 0.0
    assert metrics["loss/critic"] == pytest.approx(total / (len(coefs) * b), rel=1e-5)
    assert policy.dynamics.calls == 1  # type: ignore[attr-defined]


# --- shared anchors equal per-call anchors ---
def reference_mobile_learn(p: MOBILEPolicy, batch: Batch, num_real: int) -> dict[str, float]:
    """The original MOBILE step written out: every network call anchors its own input (the actor
    and the target critics each anchor the 'N*K*B' samples), and the actor loss back-propagates
    into the critic weights."""
    anchor_a, anchor_c = per_call_anchor(p.anchors.actor_fn), per_call_anchor(p.anchors.critic_fn)

    def actforward(s: Tensor) -> tuple[Tensor, Tensor]:
        return p.actor(s, anchor_a(s)).rsample()

    def q_columns(net: nn.Module, s: Tensor, a: Tensor) -> Tensor:  # [rows, E], like torch.cat(..., 1)
        return torch.cat(list(net(s, a, anchor_c(s))), 1)

    obs, action, next_obs = batch.obs, batch.action, batch.next_obs
    b, e = obs.shape[0], p.critics.num_members
    alpha = p.log_alpha.detach().exp().clamp(0, 1)
    qs = p.critics(obs, action, anchor_c(obs))
    with torch.no_grad():
        pred = p.dynamics.sample_next_obs(obs, action, p.num_samples)
        n, k, _, s = pred.shape
        flat = pred.reshape(-1, s)
        pred_a, _ = actforward(flat)
        pred_q = torch.min(q_columns(p.critics_target, flat, pred_a), 1)[0].reshape(n, k, b, 1)
        penalty = pred_q.mean(0).std(0)
        penalty[:num_real] = 0.0
        if p.max_q_backup:
            r = MAX_Q_BACKUP_REPEATS
            tmp = next_obs.unsqueeze(1).repeat(1, r, 1).view(b * r, -1)
            tmp_a, _ = actforward(tmp)
            tq = q_columns(p.critics_target, tmp, tmp_a).view(b, r, e).max(1)[0].view(-1, e)
            next_q = torch.min(tq, 1)[0].reshape(-1, 1)
        else:
            next_a, next_lp = actforward(next_obs)
            next_q = torch.min(q_columns(p.critics_target, next_obs, next_a), 1)[0].reshape(-1, 1)
            if not p.deterministic_backup:
                next_q = next_q - alpha * next_lp
        y = (batch.reward - p.penalty_coef * penalty) + p.gamma * (1 - batch.done) * next_q
        y = torch.clamp(y, 0, None)
    critic_loss = ((qs - y) ** 2).mean()
    p.critic_optim.zero_grad()
    critic_loss.backward()
    p.critic_optim.step()
    a, lp = actforward(obs)
    actor_loss = -torch.min(q_columns(p.critics, obs, a), 1)[0].mean() + alpha * lp.mean()
    p.actor_optim.zero_grad()
    actor_loss.backward()
    p.actor_optim.step()
    alpha_loss = -(p.log_alpha * (lp.detach() + p.target_entropy)).mean()
    p.alpha_optim.zero_grad()
    alpha_loss.backward()
    p.alpha_optim.step()
    with torch.no_grad():
        for t, o in zip(p.critics_target.parameters(), p.critics.parameters()):
            t.copy_(t * (1 - p.tau) + o * p.tau)
    return {"loss/actor": actor_loss.item(), "loss/critic": critic_loss.item(),
            "loss/alpha": alpha_loss.item(), "alpha": p.log_alpha.detach().exp().clamp(0, 1).item()}


VARIANTS = {
    "default": {},
    "3 critics+max_q+entropy": dict(num_critics=3, max_q_backup=True, deterministic_backup=False),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_mobile_matches_the_per_call_anchor_reference(cocoa: bool, variant: str,
                                                      device: torch.device) -> None:
    torch.manual_seed(0)
    fast = make_mobile(cocoa, device=device, **VARIANTS[variant])  # type: ignore[arg-type]
    ref = copy.copy(fast)  # share the dynamics (a frozen reference), copy everything trainable
    ref.__dict__.update(copy.deepcopy({k: v for k, v in fast.__dict__.items() if k != "dynamics"}))
    for step in range(3):
        batch = tiny_batch(seed=step, device=device)
        torch.manual_seed(100 + step)
        got = fast.learn(batch, num_real=3)
        torch.manual_seed(100 + step)
        want = reference_mobile_learn(ref, batch, 3)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for name in ("actor", "critics", "critics_target"):
        assert_params_close(fast.nets[name], ref.nets[name], **close_kw(device, rtol=1e-5, atol=1e-6))
    torch.testing.assert_close(fast.log_alpha, ref.log_alpha)


# --- state ---
def test_state_dict_round_trip_leaves_the_dynamics_out() -> None:
    torch.manual_seed(0)
    dynamics = make_dynamics()
    first = make_mobile(True, dynamics, num_critics=3)
    first.learn(tiny_batch(seed=0), num_real=2)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state["nets"]) == {"actor", "critics", "critics_target"}
    assert set(state["optims"]) == {"actor_optim", "critic_optim", "alpha_optim"}

    torch.manual_seed(5)
    second = make_mobile(True, dynamics, num_critics=3)
    second.load_state_dict(state)
    batch = tiny_batch(seed=1)
    torch.manual_seed(9)
    m1 = first.learn(batch, num_real=2)
    torch.manual_seed(9)
    assert second.learn(batch, num_real=2) == m1
    for name in first.nets:
        assert_params_close(first.nets[name], second.nets[name], rtol=0, atol=0)
