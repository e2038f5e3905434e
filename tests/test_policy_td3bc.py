"""TD3+BC: one update by hand, the policy delay, Polyak targets, anchors, state normalisation,
and the script end to end (alone, with COCOA, resumed)."""
from __future__ import annotations

import copy
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from device_helpers import close_kw
from sim_data import write_task_file
from torch import Tensor

from offlinerlkit.algorithms import algorithm
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.encoder import AnchorDeltaEncoder, IdentityEncoder
from offlinerlkit.pipeline.runner import needs_dynamics
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.td3bc import StateNormalizer, TD3BCActor, TD3BCPolicy
from offlinerlkit.policy_trainer.mf import MFPolicyTrainer
from offlinerlkit.types import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_td3bc  # noqa: E402

S, A, B = 3, 2, 8
LR, TAU, GAMMA, ALPHA = 0.05, 0.1, 0.9, 2.5


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(seed: int = 1, device: torch.device | str = "cpu") -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(B, S, generator=g), action=torch.rand(B, A, generator=g) * 2 - 1,
                 reward=torch.randn(B, 1, generator=g), next_obs=torch.randn(B, S, generator=g),
                 done=(torch.rand(B, 1, generator=g) < 0.2).float()).to(device)


def _policy(*, cocoa: bool = False, policy_freq: int = 2, normalizer: bool = True,
            anchor_fn: Optional[CountingAnchorFn] = None,
            device: torch.device | str = "cpu") -> TD3BCPolicy:
    torch.manual_seed(0)

    def enc(extra: int, members: int) -> torch.nn.Module:
        return (AnchorDeltaEncoder(S, extra, (8,), 2, num_members=members) if cocoa
                else IdentityEncoder(S, extra))

    actor = TD3BCActor(enc(0, 1), (16,), A)
    critics = CriticEnsemble(enc(A, 2), (16,), num_members=2)
    norm = StateNormalizer(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 1.5]))
    fn = anchor_fn if cocoa else None
    return TD3BCPolicy(actor, critics, actor_lr=LR, critic_lr=LR, optimizer=torch.optim.SGD,
                       normalizer=norm if normalizer else None, actor_anchor_fn=fn,
                       critic_anchor_fn=fn, alpha=ALPHA, gamma=GAMMA, tau=TAU,
                       policy_freq=policy_freq, device=device)


def _params(module: torch.nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _sgd(module: torch.nn.Module, loss: Tensor) -> None:
    grads = torch.autograd.grad(loss, list(module.parameters()))
    with torch.no_grad():
        for p, g in zip(module.parameters(), grads):
            p.sub_(LR * g)


def test_two_updates_equal_a_hand_computation(device: torch.device) -> None:
    policy = _policy(device=device)
    actor, critics = copy.deepcopy(policy.actor), copy.deepcopy(policy.critics)
    actor_t, critics_t = copy.deepcopy(actor), copy.deepcopy(critics)
    mean = torch.tensor([0.5, -1.0, 2.0], device=device)
    std = torch.tensor([2.0, 0.5, 1.5], device=device)
    batches = [_batch(1, device), _batch(2, device)]
    torch.manual_seed(123)
    metrics = [policy.learn(b) for b in batches]

    torch.manual_seed(123)
    for step, b in enumerate(batches, start=1):
        s, s2 = (b.obs - mean) / std, (b.next_obs - mean) / std
        with torch.no_grad():
            noise = (torch.randn(B, A, device=device) * 0.2).clamp(-0.5, 0.5)  # as randn_like
            a2 = (actor_t(s2) + noise).clamp(-1.0, 1.0)
            y = b.reward + GAMMA * (1 - b.done) * torch.minimum(critics_t(s2, a2)[0],
                                                               critics_t(s2, a2)[1])
        q = critics(s, b.action)
        q_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
        assert metrics[step - 1]["loss/critic1"] == pytest.approx(((q[0] - y) ** 2).mean().item())
        _sgd(critics, q_loss)
        if step == 2:
            pi = actor(s)
            q1 = critics(s, pi)[0]
            lmbda = ALPHA / q1.abs().mean().detach()
            actor_loss = -lmbda * q1.mean() + ((pi - b.action) ** 2).mean()
            assert metrics[1]["loss/actor"] == pytest.approx(actor_loss.item(), rel=1e-5)
            _sgd(actor, actor_loss)
            with torch.no_grad():
                for tgt, src in ((actor_t, actor), (critics_t, critics)):
                    for t, p in zip(tgt.parameters(), src.parameters()):
                        t.copy_((1 - TAU) * t + TAU * p)
    assert "loss/actor" not in metrics[0]
    for mine, theirs in ((policy.actor, actor), (policy.critics, critics),
                         (policy.actor_target, actor_t), (policy.critics_target, critics_t)):
        for p, q in zip(mine.parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q, **close_kw(device, rtol=1e-5, atol=1e-6))


@pytest.mark.parametrize("policy_freq", [1, 2, 3])
def test_actor_and_targets_move_only_every_policy_freq_updates(policy_freq: int,
                                                              device: torch.device) -> None:
    policy = _policy(policy_freq=policy_freq, device=device)
    for step in range(1, 7):
        actor, actor_t, critics_t = (_params(policy.actor), _params(policy.actor_target),
                                     _params(policy.critics_target))
        critics = _params(policy.critics)
        metrics = policy.learn(_batch(step, device))
        moved = step % policy_freq == 0
        assert ("loss/actor" in metrics) == moved
        assert any(not torch.equal(a, b) for a, b in zip(actor, policy.actor.parameters())) == moved
        assert any(not torch.equal(a, b)
                   for a, b in zip(actor_t, policy.actor_target.parameters())) == moved
        if moved:  # Polyak averaging of both targets, towards the updated online networks
            for old, new, online in ((actor_t, policy.actor_target, policy.actor),
                                     (critics_t, policy.critics_target, policy.critics)):
                for o, n, p in zip(old, new.parameters(), online.parameters()):
                    torch.testing.assert_close(n, (1 - TAU) * o + TAU * p)
        else:
            assert all(torch.equal(a, b) for a, b in zip(critics_t,
                                                         policy.critics_target.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(critics, policy.critics.parameters()))


def test_cocoa_variant_uses_anchors_once_per_update(device: torch.device) -> None:
    fn = CountingAnchorFn(lambda s: 0.8 * s + 0.1)
    policy = _policy(cocoa=True, anchor_fn=fn, device=device)
    for step in range(1, 5):
        metrics = policy.learn(_batch(step, device))
        assert all(np.isfinite(v) for v in metrics.values())
    assert fn.calls == 4 and fn.rows == 4 * 2 * B  # s and s' stacked, once per update
    fn.reset()
    obs = torch.randn(5, S).to(device)
    action = policy.act_tensor(obs)
    assert action.shape == (5, A) and fn.calls == 1
    # the anchors matter: another anchor function gives other actions
    other = copy.deepcopy(policy)
    other.anchors.actor_fn = other.anchors.critic_fn = lambda s: 0.0 * s
    assert not torch.allclose(other.act_tensor(obs), action)


def test_states_are_normalised_for_acting_and_the_stats_are_saved() -> None:
    with_norm, plain = _policy(), _policy(normalizer=False)
    obs = torch.randn(4, S)
    expected = plain.act_tensor((obs - with_norm.normalizer.mean) / with_norm.normalizer.std)
    torch.testing.assert_close(with_norm.act_tensor(obs), expected)
    assert "normalizer" in with_norm.state_dict()["nets"]
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(500, S))
    fitted = StateNormalizer.fit(data, eps=1e-3)
    torch.testing.assert_close(fitted.std, torch.as_tensor(data.std(0) + 1e-3, dtype=torch.float32))


def test_registry_entry() -> None:
    entry = algorithm("td3bc")
    assert entry.has_cocoa and not entry.cocoa_in_paper and not entry.model_based
    assert not needs_dynamics("td3bc", "alone") and needs_dynamics("td3bc", "cocoa")
    assert set(entry.metrics) <= set(_policy().learn(_batch()))


# --------------------------------------------------------------------------- the script

TASK = "hopper-medium-v2"
COMMON = dict(task=TASK, epoch=2, step_per_epoch=3, batch_size=16, eval_episodes=1, device="cpu",
              progress=False, seed=0, hidden_dims=(16, 16), checkpoint_freq=1)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_file(tmp_path_factory.mktemp("d4rl"), TASK, num_steps=600)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")}
                for r in csv.DictReader(fh)]


@pytest.mark.parametrize("cocoa", [False, True], ids=["alone", "cocoa"])
def test_script_end_to_end(tmp_path: Path, data_file: Path, cocoa: bool) -> None:
    extra = dict(anchor_mode="closest_delta", fg_hidden_dims=(8,), embedding_dim=2) if cocoa else {}
    run = run_td3bc.main(run_td3bc.TD3BCConfig(**COMMON, dataset_path=str(data_file),
                                               log_dir=str(tmp_path), **extra))
    rows = _rows(run)
    assert len(rows) == 2
    assert {"loss/actor", "loss/critic1", "loss/critic2", "eval/normalized_episode_reward"} <= set(
        rows[-1])
    record = json.loads((run / "record" / "hyper_param.json").read_text())
    assert record["cocoa"]["cocoa"] is cocoa
    assert run.parent.name.startswith("td3bc_cocoa" if cocoa else "td3bc")
    saved = torch.load(run / "model" / "policy.pth")
    assert {"actor", "critics", "normalizer"} <= set(saved)


def test_script_resume_equals_an_uninterrupted_run(tmp_path: Path, data_file: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dict(COMMON, dataset_path=str(data_file))
    straight = run_td3bc.main(run_td3bc.TD3BCConfig(**cfg, log_dir=str(tmp_path / "s")))
    save = MFPolicyTrainer.save

    def killed_after_saving(self: MFPolicyTrainer) -> None:
        save(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(MFPolicyTrainer, "save", killed_after_saving)
        with pytest.raises(KeyboardInterrupt):
            run_td3bc.main(run_td3bc.TD3BCConfig(**cfg, log_dir=str(tmp_path / "r")))
    first = next((tmp_path / "r").glob(f"{TASK}/*/seed_*"))
    assert not (first / "model" / "policy.pth").exists()
    resumed = run_td3bc.main(run_td3bc.TD3BCConfig(**cfg, resume=str(first),
                                                   log_dir=str(tmp_path / "r")))
    assert _rows(resumed) == _rows(straight)
    a, b = torch.load(straight / "model" / "policy.pth"), torch.load(resumed / "model" / "policy.pth")
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
