"""The optimised paths give the same numbers as the straightforward ones (issue 8).

* the chunked bilinear LayerNorm head (`nets.bilinear`) against the op-by-op encoder, alone and
  inside CQL+COCOA updates;
* fused Adam (`nets.optim.adam`) against the default Adam;
* one anchor call for `s` and `s'` stacked (`Anchors.of_pair`) against two calls;
* anchors of dataset states precomputed once (`MFPolicyTrainer(anchor_cache=True)`) against
  anchors computed in every update;
* the opt-in speed options: refused where they cannot work, bf16 autocast runs a COCOA update.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from device_helpers import close_kw
from torch import nn

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.modules.actor import GaussianActor, TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.encoder import AnchorDeltaEncoder
from offlinerlkit.nets import bilinear
from offlinerlkit.nets.optim import adam
from offlinerlkit.policy.anchors import Anchors
from offlinerlkit.policy.cql import CQLPolicy
from offlinerlkit.policy.iql import IQLPolicy
from offlinerlkit.policy_trainer.mb import MBPolicyTrainer
from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.types import Batch
from offlinerlkit.utils.logger import NoOpLogger
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.speed import apply_speed_options, check_speed_options, step_context
from tests.policy_helpers import ACTION_DIM, OBS_DIM, assert_params_close, tiny_batch, torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, so every test crosses chunk borders (and has a partial last one)."""
    monkeypatch.setattr(bilinear, "CPU_CHUNK_ELEMENTS", 3 * 32)


def _perturbed(module: nn.Module, seed: int) -> nn.Module:
    """Random LayerNorm affines too (they start at 1/0, which would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return module


def _unfused_copy(module: nn.Module) -> nn.Module:
    ref = copy.deepcopy(module)
    for m in ref.modules():
        if isinstance(m, AnchorDeltaEncoder):
            m.fused_head = False
    return ref


@pytest.mark.parametrize("members,rows,extra", [(1, 7, 0), (2, 10, 3), (3, 1, 2)])
def test_fused_head_equals_the_op_by_op_encoder(small_chunks: None, members: int, rows: int,
                                                extra: int, device: torch.device) -> None:
    torch.manual_seed(0)
    fused = _perturbed(AnchorDeltaEncoder(OBS_DIM, extra, (16, 8), 4, num_members=members), 1)
    fused = fused.to(device)
    assert fused.fused_head
    ref = _unfused_copy(fused)
    obs, anchor = torch.randn(rows, OBS_DIM).to(device), torch.randn(rows, OBS_DIM).to(device)
    act = torch.randn(rows, extra).to(device) if extra else None
    out, want = fused(obs, anchor, act), ref(obs, anchor, act)
    torch.testing.assert_close(out, want, **close_kw(device, rtol=1e-5, atol=1e-6))
    weights = torch.randn(out.shape).to(device)
    (out * weights).sum().backward()
    (want * weights).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_fused_head_gives_input_gradients_and_works_without_autograd(small_chunks: None,
                                                                     device: torch.device) -> None:
    torch.manual_seed(0)
    enc = _perturbed(AnchorDeltaEncoder(OBS_DIM, 0, (8,), 4, num_members=2), 2).to(device)
    ref = _unfused_copy(enc)
    obs = torch.randn(5, OBS_DIM).to(device).requires_grad_(True)
    obs_ref = obs.detach().clone().requires_grad_(True)
    anchor = torch.randn(5, OBS_DIM).to(device)
    enc(obs, anchor).square().sum().backward()
    ref(obs_ref, anchor).square().sum().backward()
    torch.testing.assert_close(obs.grad, obs_ref.grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(enc(obs, anchor), ref(obs, anchor),
                                   **close_kw(device, rtol=1e-5, atol=1e-6))


def test_without_layernorm_the_op_by_op_path_is_used() -> None:
    assert not AnchorDeltaEncoder(OBS_DIM, 0, (8,), 2, layernorm=False).fused_head


def _cql(fused: bool, device: torch.device | str = "cpu") -> CQLPolicy:
    torch.manual_seed(0)
    actor = TanhGaussianActor(AnchorDeltaEncoder(OBS_DIM, 0, (16, 8), 4), (16, 16), ACTION_DIM)
    critics = CriticEnsemble(AnchorDeltaEncoder(OBS_DIM, ACTION_DIM, (16, 8), 4, num_members=2),
                             (16, 16), num_members=2)
    policy = CQLPolicy(_perturbed(actor, 3), _perturbed(critics, 4),
                       actor_anchor_fn=lambda s: 0.9 * s, critic_anchor_fn=lambda s: 0.9 * s,
                       num_repeat_actions=3, device=device)
    if not fused:
        for net in policy.nets.values():
            for m in net.modules():
                if isinstance(m, AnchorDeltaEncoder):
                    m.fused_head = False
    return policy


def test_cql_cocoa_updates_match_with_and_without_the_fused_head(small_chunks: None,
                                                                 device: torch.device) -> None:
    fast, ref = _cql(True, device), _cql(False, device)
    for step in range(3):
        batch = tiny_batch(seed=step, device=device)
        torch.manual_seed(50 + step)
        got = fast.learn(batch)
        torch.manual_seed(50 + step)
        want = ref.learn(batch)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for name in ("actor", "critics", "critics_target"):
        assert_params_close(fast.nets[name], ref.nets[name], **close_kw(device, rtol=1e-5, atol=1e-6))


def test_fused_adam_matches_the_default_adam() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    ref = copy.deepcopy(net)
    opt, opt_ref = adam(net.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    assert opt.defaults.get("fused"), "this torch build should have fused Adam on CPU"
    for step in range(5):
        x = torch.randn(32, 6, generator=torch.Generator().manual_seed(step))
        for model, o in ((net, opt), (ref, opt_ref)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_stacked_anchor_call_equals_two_calls() -> None:
    torch.manual_seed(0)
    seeker = nn.Sequential(nn.Linear(OBS_DIM, 32), nn.ReLU(), nn.Linear(32, OBS_DIM))
    fa, fc = (lambda s: seeker(s) + s), (lambda s: 0.5 * seeker(s))
    obs, next_obs = torch.randn(9, OBS_DIM), torch.randn(9, OBS_DIM)
    for actor_fn, critic_fn, next_actor in ((fa, fa, True), (fa, fc, True), (fa, fc, False),
                                            (None, fc, True)):
        anchors = Anchors(actor_fn, critic_fn)
        now, nxt = anchors.of_pair(obs, next_obs, next_actor=next_actor)
        want_now, want_next = anchors(obs), anchors(next_obs)
        for got, want in ((now.actor, want_now.actor), (now.critic, want_now.critic),
                          (nxt.critic, want_next.critic)):
            assert (got is None) == (want is None)
            if got is not None:
                torch.testing.assert_close(got, want)
        if next_actor or actor_fn is critic_fn:
            assert (nxt.actor is None) == (want_next.actor is None)
            if nxt.actor is not None:
                torch.testing.assert_close(nxt.actor, want_next.actor)
        else:
            assert nxt.actor is None  # not needed, not computed


def _speed(**kw: bool) -> SimpleNamespace:
    return SimpleNamespace(**{"tf32": False, "bf16": False, "compile": False, "cuda_graphs": False, **kw})


def test_cuda_graphs_are_refused_on_cpu() -> None:
    with pytest.raises(ValueError, match="--cuda_graphs needs a CUDA device"):
        check_speed_options(_speed(cuda_graphs=True), torch.device("cpu"))


def test_default_speed_options_change_nothing() -> None:
    policy = _cql(True)
    before = {k: type(v.forward) for k, v in policy.nets.items()}
    apply_speed_options(policy, _speed(), torch.device("cpu"))
    assert {k: type(v.forward) for k, v in policy.nets.items()} == before
    assert not torch.is_autocast_enabled("cpu")
    with step_context(_speed(), torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_autocast_runs_a_cocoa_update_close_to_float32(device: torch.device) -> None:
    fast, ref = _cql(True, device), _cql(True, device)
    batch = tiny_batch(seed=0, device=device)
    torch.manual_seed(7)
    with step_context(_speed(bf16=True), device):
        assert torch.is_autocast_enabled(device.type)
        got = fast.learn(batch)
    torch.manual_seed(7)
    want = ref.learn(batch)
    assert set(got) == set(want)
    for key, value in got.items():
        assert value == pytest.approx(want[key], rel=0.1, abs=0.05), key  # bf16: ~3 digits


@pytest.mark.slow
def test_compiled_networks_give_the_same_update() -> None:
    fast, ref = _cql(True), _cql(True)
    apply_speed_options(fast, _speed(compile=True), torch.device("cpu"))
    batch = tiny_batch(seed=0)
    torch.manual_seed(7)
    got = fast.learn(batch)
    torch.manual_seed(7)
    want = ref.learn(batch)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_fused_head_under_bf16_autocast_is_close_to_the_op_by_op_one(small_chunks: None) -> None:
    torch.manual_seed(0)
    fused = _perturbed(AnchorDeltaEncoder(OBS_DIM, 2, (16, 8), 4, num_members=2), 5)
    ref = _unfused_copy(fused)
    obs, anchor, act = torch.randn(6, OBS_DIM), torch.randn(6, OBS_DIM), torch.randn(6, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = fused(obs, anchor, act), ref(obs, anchor, act)
        out.float().square().sum().backward()
        want.float().square().sum().backward()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.float(), want.float(), rtol=0.05, atol=0.05)
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        scale = q.grad.abs().max().clamp(min=1.0)
        assert (p.grad - q.grad).abs().max() <= 0.1 * scale, name


# --- precomputed anchors of dataset states (MFPolicyTrainer anchor_cache) ---

class _DeterministicFn:
    """A frozen small network standing in for the rollout anchor function (deterministic)."""

    deterministic = True

    def __init__(self) -> None:
        torch.manual_seed(11)
        self.net = nn.Sequential(nn.Linear(OBS_DIM, 16), nn.Tanh(), nn.Linear(16, OBS_DIM))
        self.net.requires_grad_(False)
        self.calls = 0

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return obs + 0.3 * self.net(obs)


def test_cache_fn_only_for_one_deterministic_function() -> None:
    det, other = _DeterministicFn(), _DeterministicFn()
    assert Anchors(det, det).cache_fn is det
    assert Anchors(None, det).cache_fn is det and Anchors(det, None).cache_fn is det
    assert Anchors(det, other).cache_fn is None  # different horizons: two functions
    assert Anchors(lambda s: s, lambda s: s).cache_fn is None  # not marked deterministic
    assert Anchors(None, None).cache_fn is None
    with pytest.raises(ValueError, match="cannot be precomputed"):
        Anchors(det, other).precompute(torch.zeros(3, OBS_DIM))


def _dataset(n: int = 40) -> ReplayBuffer:
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(n, OBS_DIM, generator=g)
    data = {"observations": obs.numpy(), "actions": (torch.rand(n, ACTION_DIM, generator=g) * 2 - 1).numpy(),
            "next_observations": (obs + 0.1 * torch.randn(n, OBS_DIM, generator=g)).numpy(),
            "rewards": torch.randn(n, generator=g).numpy(), "terminals": torch.zeros(n).numpy()}
    return ReplayBuffer.from_transitions(data)


def _iql(fn: _DeterministicFn) -> IQLPolicy:
    torch.manual_seed(0)

    def enc(extra: int, members: int) -> AnchorDeltaEncoder:
        return AnchorDeltaEncoder(OBS_DIM, extra, (8,), 2, num_members=members)

    actor = GaussianActor(enc(0, 1), (16,), ACTION_DIM)
    q = CriticEnsemble(enc(ACTION_DIM, 2), (16,), num_members=2)
    v = CriticEnsemble(enc(0, 1), (16,), num_members=1)
    return IQLPolicy(actor, q, v, actor_lr=1e-3, critic_q_lr=1e-3, critic_v_lr=1e-3,
                     actor_anchor_fn=fn, critic_anchor_fn=fn)


@pytest.mark.parametrize("algo", ["iql", "cql"])
def test_updates_with_precomputed_anchors_equal_computed_ones(algo: str) -> None:
    fn_cached, fn_live = _DeterministicFn(), _DeterministicFn()
    if algo == "iql":
        cached, live = _iql(fn_cached), _iql(fn_live)
    else:
        cached, live = _cql(True), _cql(True)
        for policy, fn in ((cached, fn_cached), (live, fn_live)):
            policy.anchors = Anchors(fn, fn)
    buffer = _dataset()
    buffer.set_anchors(cached.anchors.precompute(buffer.stored("obs")),
                       cached.anchors.precompute(buffer.stored("next_obs")))
    fn_cached.calls = 0
    for step in range(3):
        batch = buffer.sample(8, generator=torch.Generator().manual_seed(step))
        assert batch.obs_anchor is not None and batch.next_obs_anchor is not None
        plain = Batch(batch.obs, batch.action, batch.reward, batch.next_obs, batch.done)
        torch.manual_seed(20 + step)
        got = cached.learn(batch)
        torch.manual_seed(20 + step)
        want = live.learn(plain)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert fn_cached.calls == 0 and fn_live.calls == 3
    for name in cached.nets:
        assert_params_close(cached.nets[name], live.nets[name])


def test_buffer_anchors_are_checked_and_dropped_when_the_contents_change() -> None:
    buffer = _dataset(10)
    with pytest.raises(ValueError, match="one per stored row"):
        buffer.set_anchors(torch.zeros(9, OBS_DIM), torch.zeros(10, OBS_DIM))
    buffer.set_anchors(torch.ones(10, OBS_DIM), 2 * torch.ones(10, OBS_DIM))
    batch = buffer.sample(4)
    assert torch.equal(batch.obs_anchor, torch.ones(4, OBS_DIM))
    assert torch.equal(batch.next_obs_anchor, 2 * torch.ones(4, OBS_DIM))
    assert Batch.cat([batch, Batch(batch.obs, batch.action, batch.reward, batch.next_obs,
                                   batch.done)]).obs_anchor is None
    one = buffer.sample(1)
    buffer.add_batch(one.obs, one.action, one.reward, one.next_obs, one.done)
    assert not buffer.has_anchors and buffer.sample(2).obs_anchor is None


@pytest.mark.parametrize("cache", [True, False])
def test_trainer_precomputes_dataset_anchors_once(tmp_path: Path, cache: bool) -> None:
    fn = _DeterministicFn()
    policy = _iql(fn)
    buffer = _dataset()
    trainer = MFPolicyTrainer(policy, buffer=buffer, logger=NoOpLogger(), run_dir=RunDir(tmp_path),
                              env=None, task=None, epochs=1, step_per_epoch=3, batch_size=8,
                              eval_episodes=0, progress=False, anchor_cache=cache)
    trainer.train()
    assert buffer.has_anchors is cache
    assert fn.calls == (2 if cache else 3)  # obs and next_obs once, or one call per update
    if cache:
        want = fn.net(buffer.stored("obs")) * 0.3 + buffer.stored("obs")
        torch.testing.assert_close(buffer.sample_all().obs_anchor, want)


# --- model-rollout rows carry their anchors (MBPolicyTrainer anchor_cache) ---

def _mopo_trainer(tmp_path: Path, fn: _DeterministicFn, *, cache: bool, mobile: bool = False
                  ) -> MBPolicyTrainer:
    from offlinerlkit.dynamics import EnsembleDynamics
    from offlinerlkit.dynamics.ensemble import GaussianEnsemble
    from offlinerlkit.policy.mobile import MOBILEPolicy
    from offlinerlkit.policy.mopo import MOPOPolicy

    torch.manual_seed(0)
    actor = TanhGaussianActor(AnchorDeltaEncoder(OBS_DIM, 0, (8,), 2), (16,), ACTION_DIM)
    members = 3 if mobile else 2
    critics = CriticEnsemble(AnchorDeltaEncoder(OBS_DIM, ACTION_DIM, (8,), 2, num_members=members),
                             (16,), num_members=members)
    model = GaussianEnsemble(OBS_DIM + ACTION_DIM, OBS_DIM + 1, (16, 16), num_members=3,
                             num_elites=2)
    dynamics = EnsembleDynamics(model, direction="forward", penalty_coef=1.0,
                                termination_fn=lambda o, a, n: torch.zeros(o.shape[0], 1, dtype=torch.bool))
    if mobile:
        policy = MOBILEPolicy(actor, critics, dynamics, num_samples=4,
                              actor_anchor_fn=fn, critic_anchor_fn=fn)
    else:
        policy = MOPOPolicy(actor, critics, actor_anchor_fn=fn, critic_anchor_fn=fn)
    return MBPolicyTrainer(policy, dynamics=dynamics, rollout_freq=2, rollout_batch_size=12,
                           rollout_length=2, model_retain_epochs=2, real_ratio=0.25,
                           buffer=_dataset(), logger=NoOpLogger(), run_dir=RunDir(tmp_path),
                           env=None, task=None, epochs=1, step_per_epoch=5, batch_size=8,
                           eval_episodes=0, progress=False, anchor_cache=cache)


@pytest.mark.parametrize("mobile", [False, True])
def test_model_rows_carry_their_anchors_and_updates_match(tmp_path: Path, mobile: bool) -> None:
    fn_cached, fn_live = _DeterministicFn(), _DeterministicFn()
    cached = _mopo_trainer(tmp_path / "a", fn_cached, cache=True, mobile=mobile)
    live = _mopo_trainer(tmp_path / "b", fn_live, cache=False, mobile=mobile)
    updates = {"cached": [], "live": []}
    for name, trainer in (("cached", cached), ("live", live)):
        learn = trainer.policy.learn

        def counted(batch: Batch, *, num_real: int = 0, _name: str = name, _learn=learn):
            updates[_name].append(batch.obs_anchor is not None)
            return _learn(batch, num_real=num_real)

        trainer.policy.learn = counted  # type: ignore[method-assign]
        torch.manual_seed(5)
        trainer.train()
    assert all(updates["cached"]) and not any(updates["live"])  # every batch carried anchors
    assert cached.model_buffer.has_anchors and not live.model_buffer.has_anchors
    for field in ("obs", "action", "reward", "next_obs", "done"):  # the same rollouts
        torch.testing.assert_close(cached.model_buffer.stored(field), live.model_buffer.stored(field))
    rows = cached.model_buffer.sample_all()
    torch.testing.assert_close(rows.obs_anchor, rows.obs + 0.3 * fn_cached.net(rows.obs))
    torch.testing.assert_close(rows.next_obs_anchor, rows.next_obs + 0.3 * fn_cached.net(rows.next_obs))
    for name in cached.policy.nets:
        assert_params_close(cached.policy.nets[name], live.policy.nets[name], rtol=1e-4, atol=1e-5)
    # the model buffer's anchors survive a checkpoint round trip
    restored = ReplayBuffer(cached.model_buffer.capacity, OBS_DIM, ACTION_DIM)
    restored.load_state_dict(cached.model_buffer.state_dict())
    torch.testing.assert_close(restored.sample_all().next_obs_anchor, rows.next_obs_anchor)


def test_anchors_cannot_be_added_to_rows_without_them() -> None:
    buffer = ReplayBuffer(10, OBS_DIM, ACTION_DIM)
    b = tiny_batch(batch_size=3)
    buffer.add_batch(b.obs, b.action, b.reward, b.next_obs, b.done)
    with pytest.raises(ValueError, match="whose rows have none"):
        buffer.add_batch(b.obs, b.action, b.reward, b.next_obs, b.done, obs_anchor=b.obs,
                         next_obs_anchor=b.next_obs)
    with pytest.raises(ValueError, match="both"):
        buffer.add_batch(b.obs, b.action, b.reward, b.next_obs, b.done, obs_anchor=b.obs)
