"""IQL (spec 7.3): update order and formulas, anchor sharing, parameter updates, save/load."""
from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Iterator
from typing import Optional

import pytest
import torch
from device_helpers import CUDA_ATOL, CUDA_RTOL, close_kw
from torch import Tensor, nn

from offlinerlkit.modules.actor import GaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.encoder import AnchorDeltaEncoder, IdentityEncoder
from offlinerlkit.nets.ensemble_mlp import EnsembleMLP
from offlinerlkit.nets.optim import CosineSchedule
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.iql import IQLPolicy, advantage_weights, expectile_loss
from offlinerlkit.types import Batch

S, A, B = 3, 2, 16
GAMMA, TAU, EXPECTILE, BETA = 0.99, 0.005, 0.7, 3.0
KEYS = {"loss/actor", "loss/q1", "loss/q2", "loss/v"}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads, and on a busy 2-core machine two threads
    make every op about 10x slower; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _networks(use_anchor: bool, *, max_action: float = 1.0,
              ) -> tuple[GaussianActor, CriticEnsemble, CriticEnsemble]:
    def encoder(extra_dim: int, members: int) -> nn.Module:
        if use_anchor:
            return AnchorDeltaEncoder(S, extra_dim, [8], 2, num_members=members, init="orthogonal")
        return IdentityEncoder(S, extra_dim)

    actor = GaussianActor(encoder(0, 1), [16], A, max_action=max_action, init="orthogonal")
    critic_q = CriticEnsemble(encoder(A, 2), [16], num_members=2, init="orthogonal")
    critic_v = CriticEnsemble(encoder(0, 1), [16], num_members=1, init="orthogonal")
    return actor, critic_q, critic_v


def make_policy(use_anchor: bool = False, *, seed: int = 0,
                actor_fn: Optional[Callable[[Tensor], Tensor]] = None,
                critic_fn: Optional[Callable[[Tensor], Tensor]] = None,
                scheduler: bool = False, max_action: float = 1.0,
                device: torch.device | str = "cpu") -> IQLPolicy:
    torch.manual_seed(seed)
    actor, critic_q, critic_v = _networks(use_anchor, max_action=max_action)
    if use_anchor and actor_fn is None:
        actor_fn = critic_fn = CountingAnchorFn(lambda s: 0.9 * s)
    return IQLPolicy(actor, critic_q, critic_v, actor_lr=1e-3, critic_q_lr=1e-3, critic_v_lr=1e-3,
                     optimizer=torch.optim.Adam,
                     actor_lr_schedule=CosineSchedule(5) if scheduler else None,
                     actor_anchor_fn=actor_fn, critic_anchor_fn=critic_fn,
                     gamma=GAMMA, tau=TAU, expectile=EXPECTILE, temperature=BETA, device=device)


def make_batch(seed: int = 1, device: torch.device | str = "cpu") -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, S, generator=g)
    return Batch(obs=obs, action=torch.rand(B, A, generator=g) * 1.8 - 0.9,
                 reward=torch.randn(B, 1, generator=g), next_obs=obs + 0.1 * torch.randn(B, S, generator=g),
                 done=(torch.rand(B, 1, generator=g) < 0.25).float()).to(device)


def _params(net: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _perturb(net: nn.Module, seed: int) -> None:
    """Move an online network away from its target copy, so the two can be told apart."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


# --- the two IQL-specific formulas, against direct computations ---

def test_expectile_loss_hand_computed() -> None:
    u = torch.tensor([2.0, -1.0, 0.5, -3.0, 0.0])
    # weights 0.7 where u >= 0, 0.3 where u < 0: 0.7*4 + 0.3*1 + 0.7*0.25 + 0.3*9 + 0 = 5.975
    assert expectile_loss(u, 0.7).item() == pytest.approx(5.975 / 5)
    assert expectile_loss(u, 0.5).item() == pytest.approx(0.5 * (4 + 1 + 0.25 + 9) / 5)


def test_advantage_weights_hand_computed() -> None:
    adv = torch.tensor([[0.0], [1.0], [2.0], [-1.0]])
    expected = [1.0, math.exp(3.0), 100.0, math.exp(-3.0)]  # exp(6) = 403 is clamped to 100
    assert advantage_weights(adv, 3.0, 100.0).flatten().tolist() == pytest.approx(expected)


# --- one update ---

@pytest.mark.parametrize("use_anchor", [False, True])
def test_learn_returns_finite_floats(use_anchor: bool) -> None:
    metrics = make_policy(use_anchor).learn(make_batch())
    assert set(metrics) == KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("use_anchor", [False, True])
def test_losses_follow_the_update_order(use_anchor: bool) -> None:
    """V regresses on the *target* min-Q; the actor and Q losses use the *updated* V."""
    policy = make_policy(use_anchor)
    _perturb(policy.critic_q, seed=5)  # online Q != target Q
    batch = make_batch()
    old_actor, old_q = copy.deepcopy(policy.actor), copy.deepcopy(policy.critic_q)
    old_v = copy.deepcopy(policy.critic_v)
    anchor = (lambda s: 0.9 * s) if use_anchor else (lambda s: None)
    s, a, s2 = batch.obs, batch.action, batch.next_obs
    with torch.no_grad():
        q_targ = policy.critic_q_target(s, a, anchor(s))  # [2, B, 1]
        q_min = torch.minimum(q_targ[0], q_targ[1])
        u = q_min - old_v(s, None, anchor(s))[0]
        w_v = torch.where(u > 0, torch.tensor(EXPECTILE), torch.tensor(1 - EXPECTILE))
        expected_v = (w_v * u * u).mean().item()
        log_prob = old_actor(s, anchor(s)).log_prob(a)
        q_online = old_q(s, a, anchor(s))

    metrics = policy.learn(batch)

    with torch.no_grad():
        v_new = policy.critic_v(s, None, anchor(s))[0]  # V is not changed after its own step
        w_a = torch.clamp(torch.exp(BETA * (q_min - v_new)), max=100.0)
        expected_actor = -(w_a * log_prob).mean().item()
        y = batch.reward + GAMMA * (1 - batch.done) * policy.critic_v(s2, None, anchor(s2))[0]
        expected_q1 = ((q_online[0] - y) ** 2).mean().item()
        expected_q2 = ((q_online[1] - y) ** 2).mean().item()
        w_old_v = torch.clamp(torch.exp(BETA * (q_min - old_v(s, None, anchor(s))[0])), max=100.0)
    assert metrics["loss/v"] == pytest.approx(expected_v, rel=1e-5)
    assert metrics["loss/actor"] == pytest.approx(expected_actor, rel=1e-5)
    assert metrics["loss/q1"] == pytest.approx(expected_q1, rel=1e-5)
    assert metrics["loss/q2"] == pytest.approx(expected_q2, rel=1e-5)
    assert -(w_old_v * log_prob).mean().item() != pytest.approx(expected_actor, rel=1e-5)


@pytest.mark.parametrize("use_anchor", [False, True])
def test_learn_changes_exactly_the_intended_parameters(use_anchor: bool, device: torch.device
                                                      ) -> None:
    seeker = nn.Linear(S, S).to(device)  # an external, trainable-looking anchor component
    fn = CountingAnchorFn(lambda s: s + 0.1 * seeker(s)) if use_anchor else None
    policy = make_policy(use_anchor, actor_fn=fn, critic_fn=fn, device=device)
    _perturb(policy.critic_q, seed=3)
    before = {name: _params(net) for name, net in policy.nets.items()}
    seeker_before = _params(seeker)

    policy.learn(make_batch(device=device))

    for name in ("actor", "critic_q", "critic_v"):
        after = _params(policy.nets[name])
        unchanged = [k for k, v in after.items() if torch.equal(v, before[name][k])]
        assert not unchanged, f"{name}: {unchanged} did not move"
    online = _params(policy.critic_q)
    for k, new in _params(policy.critic_q_target).items():
        old = before["critic_q_target"][k]
        torch.testing.assert_close(new, (1 - TAU) * old + TAU * online[k],
                                   **close_kw(device, rtol=0, atol=1e-7))
        assert not torch.equal(new, old)
    for k, v in _params(seeker).items():
        assert torch.equal(v, seeker_before[k]) and seeker.weight.grad is None
    assert all(not p.requires_grad for p in policy.critic_q_target.parameters())


# --- anchors ---

def test_one_anchor_computation_of_s_and_s_prime_per_update_and_one_per_act() -> None:
    fn = CountingAnchorFn(lambda s: 0.9 * s)
    policy = make_policy(True, actor_fn=fn, critic_fn=fn)
    batch = make_batch()
    for step in range(1, 4):
        policy.learn(batch)
        assert (fn.calls, fn.rows) == (step, 2 * B * step)
    fn.reset()
    policy.act_tensor(batch.obs, deterministic=True)
    assert (fn.calls, fn.rows) == (1, B)


def test_separate_actor_and_critic_anchor_functions() -> None:
    actor_fn = CountingAnchorFn(lambda s: 0.9 * s)
    critic_fn = CountingAnchorFn(lambda s: 0.8 * s)
    policy = make_policy(True, actor_fn=actor_fn, critic_fn=critic_fn)
    policy.learn(make_batch())
    assert (actor_fn.calls, actor_fn.rows) == (1, B)  # actor: s only
    assert (critic_fn.calls, critic_fn.rows) == (1, 2 * B)  # critics and V: s and s', stacked


def _reference_learn(policy: IQLPolicy, batch: Batch, anchor_fn: Callable[[Tensor], Tensor]
                     ) -> dict[str, float]:
    """Spec 7.3 written out directly, with every network call computing its own anchors."""
    def own(x: Tensor) -> Tensor:
        with torch.no_grad():
            return anchor_fn(x)

    actor, q_net, q_targ, v_net = (policy.actor, policy.critic_q, policy.critic_q_target,
                                   policy.critic_v)
    s, a, s2 = batch.obs, batch.action, batch.next_obs
    with torch.no_grad():
        qt = q_targ(s, a, own(s))
        q = torch.min(qt[0], qt[1])
    diff = q - v_net(s, None, own(s))[0]
    weight = torch.where(diff > 0, EXPECTILE, 1 - EXPECTILE)
    v_loss = (weight * diff ** 2).mean()
    policy.critic_v_optim.zero_grad()
    v_loss.backward()
    policy.critic_v_optim.step()

    with torch.no_grad():
        exp_a = torch.clip(torch.exp((q - v_net(s, None, own(s))[0]) * BETA), None, 100.0)
    actor_loss = -(exp_a * actor(s, own(s)).log_prob(a)).mean()

    q_sa = q_net(s, a, own(s))
    with torch.no_grad():
        target = batch.reward + GAMMA * (1 - batch.done) * v_net(s2, None, own(s2))[0]
    q1_loss, q2_loss = ((q_sa[0] - target) ** 2).mean(), ((q_sa[1] - target) ** 2).mean()
    policy.critic_q_optim.zero_grad()
    (q1_loss + q2_loss).backward()
    policy.critic_q_optim.step()

    policy.actor_optim.zero_grad()
    actor_loss.backward()
    policy.actor_optim.step()
    with torch.no_grad():
        for o, n in zip(q_targ.parameters(), q_net.parameters()):
            o.copy_(o * (1.0 - TAU) + n * TAU)
    return {"loss/actor": actor_loss.item(), "loss/q1": q1_loss.item(), "loss/q2": q2_loss.item(),
            "loss/v": v_loss.item()}


def test_shared_anchors_equal_per_network_anchors(device: torch.device) -> None:
    fn = CountingAnchorFn(lambda s: 0.9 * s + 0.05 * torch.sin(3 * s))
    shared = make_policy(True, actor_fn=fn, critic_fn=fn, device=device)
    reference = make_policy(True, device=device)
    for step in range(3):
        batch = make_batch(seed=10 + step, device=device)
        fn.reset()
        got = shared.learn(batch)
        assert fn.calls == 1
        want = _reference_learn(reference, batch, fn)
        assert fn.calls == 1 + 6  # the reference computes anchors in every network call
        assert got == pytest.approx(want, **({"rel": 1e-6} if device.type == "cpu" else
                                             {"rel": CUDA_RTOL, "abs": CUDA_ATOL}))
    for name, net in shared.nets.items():
        for (k, p), r in zip(net.named_parameters(), reference.nets[name].parameters()):
            torch.testing.assert_close(p, r, **close_kw(device, rtol=1e-6, atol=1e-7),
                                       msg=f"{name}.{k}")


# --- optimiser equivalence stated in the docstring ---

def test_one_adam_over_two_members_equals_per_critic_adams() -> None:
    torch.manual_seed(0)
    joint = EnsembleMLP(4, [8], 1, num_members=2, init="orthogonal")
    singles = [EnsembleMLP(4, [8], 1, num_members=1) for _ in range(2)]
    with torch.no_grad():
        for e, single in enumerate(singles):
            for pj, ps in zip(joint.parameters(), single.parameters()):
                ps.copy_(pj[e:e + 1])
    joint_opt = torch.optim.Adam(joint.parameters(), lr=1e-2)
    single_opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in singles]
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
        joint_opt.zero_grad()
        (joint(x) - y).square().mean(dim=(1, 2)).sum().backward()
        joint_opt.step()
        for m, opt in zip(singles, single_opts):
            opt.zero_grad()
            (m(x) - y).square().mean().backward()
            opt.step()
    for e, single in enumerate(singles):
        for pj, ps in zip(joint.parameters(), single.parameters()):
            torch.testing.assert_close(pj[e:e + 1], ps, rtol=1e-5, atol=1e-6)


# --- state, acting, construction ---

@pytest.mark.parametrize("use_anchor", [False, True])
def test_state_dict_round_trip_gives_identical_next_update(use_anchor: bool) -> None:
    policy = make_policy(use_anchor, scheduler=True)
    for step in range(2):
        policy.learn(make_batch(seed=step))
    policy.step_schedulers()
    buffer = io.BytesIO()
    torch.save(policy.state_dict(), buffer)
    buffer.seek(0)
    restored = make_policy(use_anchor, seed=123, scheduler=True)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert set(policy.schedulers) == {"actor_scheduler"}

    batch = make_batch(seed=7)
    assert restored.learn(batch) == policy.learn(batch)
    for name, net in policy.nets.items():
        for p, r in zip(net.parameters(), restored.nets[name].parameters()):
            assert torch.equal(p, r), name
    assert (restored.actor_optim.param_groups[0]["lr"]
            == policy.actor_optim.param_groups[0]["lr"] < 1e-3)


@pytest.mark.parametrize("use_anchor", [False, True])
def test_actions_are_within_the_box(use_anchor: bool) -> None:
    policy = make_policy(use_anchor, max_action=0.5)
    with torch.no_grad():
        policy.actor.log_std.fill_(2.0)  # wide distribution: raw samples leave the box
    obs = 10 * torch.randn(64, S, generator=torch.Generator().manual_seed(0))
    mode = policy.act_tensor(obs, deterministic=True)
    assert mode.shape == (64, A) and mode.abs().max() <= 0.5
    anchor = 0.9 * obs if use_anchor else None
    torch.testing.assert_close(mode, policy.actor(obs, anchor).mean.clamp(-0.5, 0.5))
    sample = policy.act_tensor(obs, deterministic=False, generator=torch.Generator().manual_seed(1))
    assert sample.abs().max() <= 0.5 and not torch.equal(sample, mode)
    single = policy.act(obs[0].numpy(), deterministic=True)
    assert single.shape == (A,)


def test_constructor_rejects_miswiring() -> None:
    actor, critic_q, critic_v = _networks(False)
    with pytest.raises(ValueError, match="num_members=2"):
        IQLPolicy(actor, critic_v, critic_v)
    with pytest.raises(ValueError, match="expectile"):
        IQLPolicy(actor, critic_q, critic_v, expectile=1.0)
    anchored_actor, anchored_q, anchored_v = _networks(True)
    with pytest.raises(ValueError, match="anchor"):
        IQLPolicy(anchored_actor, anchored_q, anchored_v)
