"""SAC and MOPO policies and the anchor plumbing (spec §7.1, §5.4, §12.34)."""
from __future__ import annotations

import copy
import io
from collections.abc import Iterator

import pytest
import torch
from device_helpers import assert_same, close_kw, same_floats
from policy_helpers import (
    ACTION_DIM,
    OBS_DIM,
    assert_all_changed,
    assert_finite_floats,
    assert_params_close,
    assert_polyak,
    make_tiny_critics,
    make_tiny_sac_parts,
    make_tiny_sac_policy,
    per_call_anchor,
    scaled_anchor_fn,
    snapshot,
    tiny_batch,
    torch_threads,
)
from torch import nn

from offlinerlkit.nets.optim import CosineSchedule
from offlinerlkit.policy.anchors import AnchorPair, Anchors, CountingAnchorFn, repeat_rows
from offlinerlkit.policy.mopo import MOPOPolicy
from offlinerlkit.policy.sac import SACHyperparams, SACPolicy
from offlinerlkit.types import Batch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


SAC_KEYS = {"loss/critic1", "loss/critic2", "train/actor/target_Q", "loss/actor", "loss/alpha", "alpha"}


def make_sac(cocoa: bool, cls: type[SACPolicy] = SACPolicy, **kw: object) -> SACPolicy:
    return make_tiny_sac_policy(cls, cocoa=cocoa, **kw)


# --- anchor helper ---
def test_anchors_compute_once_per_batch_and_share_one_function() -> None:
    obs = torch.randn(6, OBS_DIM)
    fn = scaled_anchor_fn()
    pair = Anchors(fn, fn)(obs)
    assert fn.calls == 1 and pair.actor is pair.critic
    torch.testing.assert_close(pair.actor, 0.9 * obs)
    rep = repeat_rows(pair.actor, 3)  # the layout of obs.repeat_interleave(3, 0)
    assert rep is not None and rep.shape == (18, OBS_DIM)
    torch.testing.assert_close(rep, (0.9 * obs).unsqueeze(1).repeat(1, 3, 1).view(18, -1))
    assert repeat_rows(None, 3) is None

    fa, fc = scaled_anchor_fn(0.5), scaled_anchor_fn(0.7)
    pair = Anchors(fa, fc)(obs)
    assert (fa.calls, fc.calls) == (1, 1)
    torch.testing.assert_close(pair.critic, 0.7 * obs)
    assert Anchors(None, None)(obs) == AnchorPair(None, None)
    with pytest.raises(ValueError, match=r"\[N, S\]"):
        Anchors(lambda s: s[:, :2])(obs)


def test_anchors_carry_no_gradient_even_from_a_trainable_function() -> None:
    seeker = nn.Linear(OBS_DIM, OBS_DIM)  # deliberately left trainable
    before = snapshot(seeker)
    actor, critics = make_tiny_sac_parts(cocoa=True)
    policy = SACPolicy(actor, critics, actor_anchor_fn=seeker, critic_anchor_fn=seeker)
    policy.learn(tiny_batch())
    assert all(p.grad is None for p in seeker.parameters())
    assert all(torch.equal(before[k], v) for k, v in seeker.state_dict().items())


def test_wiring_mismatches_are_refused() -> None:
    actor, critics = make_tiny_sac_parts(cocoa=True)
    with pytest.raises(ValueError, match="anchor encoder"):
        SACPolicy(actor, critics)
    actor, critics = make_tiny_sac_parts(cocoa=False)
    with pytest.raises(ValueError, match="ignores anchors"):
        SACPolicy(actor, critics, critic_anchor_fn=scaled_anchor_fn())
    with pytest.raises(ValueError, match="2 members"):
        SACPolicy(actor, make_tiny_critics(OBS_DIM, ACTION_DIM, cocoa=False, num_critics=3))


# --- one update ---
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_sac_learn_updates_exactly_the_intended_parameters(cocoa: bool, device: torch.device
                                                          ) -> None:
    torch.manual_seed(0)
    policy = make_sac(cocoa, device=device)
    actor0, critics0 = snapshot(policy.actor), snapshot(policy.critics)
    target0, log_alpha0 = snapshot(policy.critics_target), policy.log_alpha.detach().clone()
    assert all(torch.equal(critics0[k], target0[k]) for k in critics0)
    batch = tiny_batch(device=device)
    metrics = policy.learn(batch)

    assert_finite_floats(metrics, SAC_KEYS)
    assert_all_changed(actor0, policy.actor, "actor")
    assert_all_changed(critics0, policy.critics, "critics")
    assert_polyak(target0, policy.critics_target, policy.critics)
    assert not torch.equal(policy.log_alpha.detach(), log_alpha0)
    assert metrics["alpha"] == pytest.approx(policy.log_alpha.exp().clamp(0, 1).item())
    assert all(not p.requires_grad for p in policy.critics_target.parameters())
    assert all(p.requires_grad for p in policy.critics.parameters())  # restored after the actor step
    if cocoa:  # s and s', stacked in one call
        fn = policy.anchors.actor_fn
        assert isinstance(fn, CountingAnchorFn)
        assert (fn.calls, fn.rows) == (1, 2 * len(batch))


def test_separate_actor_and_critic_anchor_functions_run_once_per_state_batch() -> None:
    actor, critics = make_tiny_sac_parts(cocoa=True)
    fa, fc = scaled_anchor_fn(0.9), scaled_anchor_fn(0.8)
    policy = SACPolicy(actor, critics, actor_anchor_fn=fa, critic_anchor_fn=fc)
    policy.learn(tiny_batch())
    assert (fa.calls, fa.rows, fc.calls, fc.rows) == (1, 2 * len(tiny_batch()), 1, 2 * len(tiny_batch()))
    obs = torch.randn(4, OBS_DIM)
    action = policy.act_tensor(obs, deterministic=True)
    assert (fa.calls, fc.calls) == (2, 1)
    with torch.no_grad():
        torch.testing.assert_close(action, torch.tanh(policy.actor(obs, 0.9 * obs).mean))
    assert policy.act(obs[0].numpy(), deterministic=False).shape == (ACTION_DIM,)


def test_fixed_alpha_learns_no_temperature() -> None:
    policy = make_sac(False, hp=SACHyperparams(auto_alpha=False, alpha=0.3))
    assert policy.alpha == 0.3 and "alpha_optim" not in policy.optims
    metrics = policy.learn(tiny_batch())
    assert set(metrics) == SAC_KEYS - {"loss/alpha", "alpha"}


def test_alpha_is_clamped_to_one() -> None:
    policy = make_sac(False)
    with torch.no_grad():
        policy.log_alpha.fill_(0.5)
    assert policy.alpha.item() == 1.0  # type: ignore[union-attr]


def test_target_entropy_zero_is_honoured() -> None:
    """The original's falsy test turned 0 into -A (docs/FIDELITY.md); 0 means 0 here."""
    assert make_sac(False).target_entropy == -ACTION_DIM
    assert make_sac(False, hp=SACHyperparams(target_entropy=0.0)).target_entropy == 0.0
    assert make_sac(False, hp=SACHyperparams(target_entropy=-1.5)).target_entropy == -1.5


# --- equivalences ---
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_one_adam_over_the_ensemble_equals_one_adam_per_critic(cocoa: bool) -> None:
    """The original steps each critic with its own Adam; one Adam over the ensemble is the same."""
    torch.manual_seed(0)
    singles = [make_tiny_critics(OBS_DIM, ACTION_DIM, cocoa=cocoa, num_critics=1) for _ in range(2)]
    ensemble = make_tiny_critics(OBS_DIM, ACTION_DIM, cocoa=cocoa, num_critics=2)
    with torch.no_grad():
        for name, p in ensemble.named_parameters():
            for j, single in enumerate(singles):
                p[j].copy_(dict(single.named_parameters())[name][0])
    lr = 1e-2
    separate = [torch.optim.Adam(s.parameters(), lr=lr) for s in singles]
    joint = torch.optim.Adam(ensemble.parameters(), lr=lr)
    for step in range(3):
        b = tiny_batch(seed=step)
        anchor = 0.9 * b.obs if cocoa else None
        for single, opt in zip(singles, separate):
            loss = (single(b.obs, b.action, anchor)[0] - b.reward).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses = (ensemble(b.obs, b.action, anchor) - b.reward).pow(2).mean(dim=(1, 2))
        joint.zero_grad()
        losses.sum().backward()
        joint.step()
    for name, p in ensemble.named_parameters():
        for j, single in enumerate(singles):
            torch.testing.assert_close(p[j], dict(single.named_parameters())[name][0],
                                       rtol=1e-6, atol=1e-7, msg=name)
        assert not torch.equal(p[0], p[1])


def reference_sac_learn(p: SACPolicy, batch: Batch) -> dict[str, float]:
    """The original's SAC step written out: every network call anchors its own input, the actor
    loss back-propagates into the critic weights too, min over two critic outputs."""
    anchor_a, anchor_c = per_call_anchor(p.anchors.actor_fn), per_call_anchor(p.anchors.critic_fn)
    obs, next_obs = batch.obs, batch.next_obs
    alpha = p.log_alpha.detach().exp().clamp(0, 1)
    with torch.no_grad():
        next_a, next_logp = p.actor(next_obs, anchor_a(next_obs)).rsample()
        tq = p.critics_target(next_obs, next_a, anchor_c(next_obs))
        next_q = torch.min(tq[0], tq[1]) - alpha * next_logp
        y = batch.reward + p.gamma * (1 - batch.done) * next_q
    q = p.critics(obs, batch.action, anchor_c(obs))
    l1, l2 = (q[0] - y).pow(2).mean(), (q[1] - y).pow(2).mean()
    p.critic_optim.zero_grad()
    (l1 + l2).backward()
    p.critic_optim.step()
    a, logp = p.actor(obs, anchor_a(obs)).rsample()
    qa = p.critics(obs, a, anchor_c(obs))
    min_qa = torch.min(qa[0], qa[1])
    actor_loss = -min_qa.mean() + alpha * logp.mean()
    p.actor_optim.zero_grad()
    actor_loss.backward()
    p.actor_optim.step()
    alpha_loss = -(p.log_alpha * (logp.detach() + p.target_entropy)).mean()
    p.alpha_optim.zero_grad()
    alpha_loss.backward()
    p.alpha_optim.step()
    with torch.no_grad():
        for t, o in zip(p.critics_target.parameters(), p.critics.parameters()):
            t.copy_(t * (1 - p.tau) + o * p.tau)
    return {"loss/critic1": l1.item(), "loss/critic2": l2.item(),
            "train/actor/target_Q": min_qa.mean().item(), "loss/actor": actor_loss.item(),
            "loss/alpha": alpha_loss.item(),
            "alpha": p.log_alpha.detach().exp().clamp(0, 1).item()}


@pytest.mark.parametrize("cls", [SACPolicy, MOPOPolicy])
@pytest.mark.parametrize("cocoa", [False, True], ids=["plain", "cocoa"])
def test_sac_matches_the_per_call_anchor_reference(cocoa: bool, cls: type[SACPolicy],
                                                   device: torch.device) -> None:
    torch.manual_seed(0)
    fast = make_sac(cocoa, cls, device=device)
    ref = copy.deepcopy(fast)
    for step in range(3):
        batch = tiny_batch(seed=step, device=device)
        torch.manual_seed(100 + step)
        got = fast.learn(batch, num_real=2) if cls is MOPOPolicy else fast.learn(batch)
        torch.manual_seed(100 + step)
        want = reference_sac_learn(ref, batch)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for name in ("actor", "critics", "critics_target"):
        assert_params_close(fast.nets[name], ref.nets[name], **close_kw(device, rtol=1e-5, atol=1e-6))
    torch.testing.assert_close(fast.log_alpha, ref.log_alpha)


# --- state ---
def _through_bytes(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("cls", [SACPolicy, MOPOPolicy])
def test_state_dict_round_trip_gives_an_identical_next_update(cls: type[SACPolicy],
                                                              device: torch.device) -> None:
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(1)
    first = make_sac(True, cls, generator=gen, device=device)
    first.learn(tiny_batch(seed=0, device=device))
    state = _through_bytes(first.state_dict())
    assert set(state["nets"]) == {"actor", "critics", "critics_target"}
    assert set(state["optims"]) == {"actor_optim", "critic_optim", "alpha_optim"}

    torch.manual_seed(7)  # a different initialisation, overwritten by the load
    second = make_sac(True, cls, generator=torch.Generator(device=device).manual_seed(99),
                      device=device)
    second.load_state_dict(state)
    batch = tiny_batch(seed=1, device=device)
    assert first.learn(batch) == same_floats(device, second.learn(batch))
    for name in first.nets:
        for (k, a), b in zip(first.nets[name].state_dict().items(), second.nets[name].state_dict().values()):
            assert_same(device, a, b, f"{name}.{k}")
    assert_same(device, first.log_alpha, second.log_alpha)


def test_a_checkpoint_from_before_the_scheduler_rename_resumes() -> None:
    """MOPO's and MOBILE's scripts registered the actor's scheduler as `actor`; such a checkpoint
    loads into `actor_scheduler` and the next update and learning rate are the same."""
    torch.manual_seed(0)
    hp = SACHyperparams(actor_lr_schedule=CosineSchedule(4))
    first = make_sac(False, MOPOPolicy, hp=hp, generator=torch.Generator().manual_seed(1))
    first.learn(tiny_batch(seed=0))
    first.step_schedulers()
    state = _through_bytes(first.state_dict())
    assert set(state["schedulers"]) == {"actor_scheduler"}
    state["schedulers"] = {"actor": state["schedulers"]["actor_scheduler"]}  # the old layout

    torch.manual_seed(7)
    second = make_sac(False, MOPOPolicy, hp=hp, generator=torch.Generator().manual_seed(99))
    second.load_state_dict(state)
    second.step_schedulers()
    first.step_schedulers()
    assert second.actor_optim.param_groups[0]["lr"] == first.actor_optim.param_groups[0]["lr"] < 1e-4
    batch = tiny_batch(seed=1)
    assert first.learn(batch) == second.learn(batch)
    del state["schedulers"]
    with pytest.raises(KeyError, match=r"checkpoint lacks schedulers \['actor_scheduler'\]"):
        make_sac(False, MOPOPolicy, hp=hp).load_state_dict(state)


# --- MOPO ---
def test_mopo_is_sac_on_the_mixed_batch_and_checks_num_real() -> None:
    torch.manual_seed(0)
    mopo = make_sac(True, MOPOPolicy)
    sac = SACPolicy(copy.deepcopy(mopo.actor), copy.deepcopy(mopo.critics),
                    actor_anchor_fn=scaled_anchor_fn(), critic_anchor_fn=scaled_anchor_fn())
    real, model = tiny_batch(batch_size=2, seed=3), tiny_batch(batch_size=10, seed=4)
    mixed = Batch.cat([real, model])
    torch.manual_seed(5)
    got = mopo.learn(mixed, num_real=len(real))
    torch.manual_seed(5)
    assert got == sac.learn(mixed)
    assert_finite_floats(got, SAC_KEYS)
    for bad in (-1, len(mixed) + 1):
        with pytest.raises(ValueError, match="num_real"):
            mopo.learn(mixed, num_real=bad)
