"""The test suite's tiny fixtures: networks, dynamics ensembles, policies, batches and checks.

Every test that needs a small model builds it here (no test module imports another). Everything
is small enough for a CPU test to run a few updates in milliseconds: hidden widths 8-16,
ensembles of 3 with 2 elites, batches of 8-16 rows. The builders draw initial weights from
torch's global generator and never seed it: a test seeds first when it needs fixed weights.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Optional, TypeVar

import torch
from torch import Tensor, nn

from offlinerlkit.dynamics import EnsembleDynamics, GaussianEnsemble
from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.encoder import AnchorDeltaEncoder, IdentityEncoder
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.sac import SACPolicy
from offlinerlkit.types import Batch

P = TypeVar("P", bound=SACPolicy)

OBS_DIM, ACTION_DIM = 5, 3
TAU = 0.005


@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run with `num_threads` intra-op threads, then restore the previous setting.

    The tiny networks gain nothing from a second thread, and on a shared 2-core machine an
    oversubscribed OpenMP pool made each update 30-50x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_tiny_encoder(obs_dim: int, extra_dim: int = 0, *, cocoa: bool, num_members: int = 1,
                      hidden: int = 8, embedding_dim: int = 2) -> nn.Module:
    """`IdentityEncoder` (plain) or a small `AnchorDeltaEncoder` (COCOA, f/g `in -> hidden -> hidden*D`)."""
    if not cocoa:
        return IdentityEncoder(obs_dim, extra_dim)
    return AnchorDeltaEncoder(obs_dim, extra_dim, (hidden,), embedding_dim, num_members=num_members)


def make_tiny_critics(obs_dim: int, action_dim: int, *, cocoa: bool, num_critics: int = 2,
                      hidden: int = 16) -> CriticEnsemble:
    """A `CriticEnsemble` of `num_critics` Q-functions (`action_dim=0`: value functions V(s))."""
    encoder = make_tiny_encoder(obs_dim, action_dim, cocoa=cocoa, num_members=num_critics)
    return CriticEnsemble(encoder, (hidden, hidden), num_members=num_critics)


def make_tiny_sac_parts(obs_dim: int = OBS_DIM, action_dim: int = ACTION_DIM, *, cocoa: bool,
                        num_critics: int = 2, hidden: int = 16
                        ) -> tuple[TanhGaussianActor, CriticEnsemble]:
    """A tanh-Gaussian actor and a critic ensemble, plain or with COCOA's anchor encoders."""
    actor = TanhGaussianActor(make_tiny_encoder(obs_dim, cocoa=cocoa), (hidden, hidden), action_dim)
    return actor, make_tiny_critics(obs_dim, action_dim, cocoa=cocoa, num_critics=num_critics,
                                    hidden=hidden)


def make_tiny_sac_policy(cls: type[P], *, cocoa: bool, **kw: Any) -> P:
    """A SAC-family policy (`SACPolicy`, `MOPOPolicy`, `CQLPolicy`, ...) on `make_tiny_sac_parts`,
    with `scaled_anchor_fn()` for the actor and the critics when `cocoa`; `kw` go to `cls`."""
    actor, critics = make_tiny_sac_parts(cocoa=cocoa)
    fn = scaled_anchor_fn() if cocoa else None
    return cls(actor, critics, actor_anchor_fn=fn, critic_anchor_fn=fn, **kw)


def make_tiny_dynamics(obs_dim: int = OBS_DIM, action_dim: int = ACTION_DIM, *,
                       direction: Literal["forward", "reverse"] = "forward",
                       hidden: Sequence[int] = (8,), num_members: int = 3, num_elites: int = 2,
                       elites: Optional[Sequence[int]] = None, eval_mode: bool = False,
                       device: torch.device | str = "cpu", **model_kw: Any) -> EnsembleDynamics:
    """A small `GaussianEnsemble` wrapped as forward (`S + 1` outputs) or reverse (`S`) dynamics.

    `elites` sets the elite members; `eval_mode` puts the ensemble in eval mode; `model_kw` go
    to `GaussianEnsemble` (e.g. `weight_decays`). The weights are drawn on the CPU and then moved
    to `device`, so every device sees the same numbers.
    """
    out_dim = obs_dim + int(direction == "forward")
    model = GaussianEnsemble(obs_dim + action_dim, out_dim, tuple(hidden), num_members=num_members,
                             num_elites=num_elites, **model_kw)
    if eval_mode:
        model.eval()
    if elites is not None:
        model.set_elites(list(elites))
    return EnsembleDynamics(model.to(device), direction=direction)


def scaled_anchor_fn(scale: float = 0.9) -> CountingAnchorFn:
    """A deterministic stand-in for the anchor seeker, `anchor(s) = scale * s`, with a call counter."""
    return CountingAnchorFn(lambda s: scale * s)


def tiny_batch(obs_dim: int = OBS_DIM, action_dim: int = ACTION_DIM, batch_size: int = 8, *,
               seed: int = 0, done_every: int = 4, device: torch.device | str = "cpu") -> Batch:
    """A fixed random batch (rewards around 1, every `done_every`-th row terminal).

    Drawn on the CPU and then moved to `device`, so every device sees the same numbers."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch_size, obs_dim, generator=g)
    action = torch.rand(batch_size, action_dim, generator=g) * 2 - 1
    next_obs = obs + 0.1 * torch.randn(batch_size, obs_dim, generator=g)
    reward = 1.0 + torch.randn(batch_size, 1, generator=g)
    done = (torch.arange(batch_size) % done_every == done_every - 1).float().unsqueeze(-1)
    return Batch(obs=obs, action=action, reward=reward, next_obs=next_obs, done=done).to(device)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter and buffer of `module`."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: Mapping[str, Tensor], module: nn.Module) -> dict[str, bool]:
    """Whether each parameter/buffer of `module` differs from `before` (any element)."""
    return {k: not torch.equal(before[k], v) for k, v in module.state_dict().items()}


def assert_all_changed(before: Mapping[str, Tensor], module: nn.Module, name: str) -> None:
    """Every parameter tensor of `module` moved (LayerNorm etc. included)."""
    params = dict(module.named_parameters())
    stale = [k for k, moved in changed(before, module).items() if k in params and not moved]
    assert not stale, f"{name}: parameters did not change: {stale}"


def assert_unchanged(before: Mapping[str, Tensor], module: nn.Module, name: str) -> None:
    moved = [k for k, c in changed(before, module).items() if c]
    assert not moved, f"{name}: changed unexpectedly: {moved}"


def assert_polyak(target_before: Mapping[str, Tensor], target: nn.Module, online: nn.Module,
                  tau: float = TAU) -> None:
    """`target_new == (1 - tau) * target_old + tau * online_new` for every parameter."""
    online_params = dict(online.named_parameters())
    for name, p in target.named_parameters():
        expected = (1 - tau) * target_before[name] + tau * online_params[name].detach()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7, msg=name)


def assert_finite_floats(metrics: Mapping[str, object], keys: set[str]) -> None:
    assert set(metrics) == keys, sorted(metrics)
    for k, v in metrics.items():
        assert type(v) is float, (k, type(v))
        assert v == v and abs(v) != float("inf"), (k, v)


def assert_params_close(a: nn.Module, b: nn.Module, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k].detach(), pb[k].detach(), rtol=rtol, atol=atol, msg=k)


def seeded(fn: Callable[[], object], seed: int) -> object:
    """Run `fn` right after seeding torch's global generator."""
    torch.manual_seed(seed)
    return fn()


def per_call_anchor(fn: Optional[Callable[[Tensor], Tensor]]) -> Callable[[Tensor], Optional[Tensor]]:
    """The original's behaviour for reference implementations: every network call anchors its own input."""
    return (lambda s: None) if fn is None else fn
