"""The workloads the benchmark scripts time: random data, networks and update callables.

Shared by `suite.py` (the whole speed table) and `bench_dynamics.py` (the dynamics ensemble in
more detail), so both measure the same thing. Paper default sizes throughout:

* policies (`build`): BC actor 256x2. CQL actor/critics 256x3, 10 repeated actions. IQL 256x2.
  MOPO: SAC on 12 dataset + 244 model rows, 256x2. MOBILE: 256x2, 2 critics, 10 next-state
  samples from the dynamics ensemble below. With COCOA: the anchor + delta networks of spec 6.4
  (CQL: tr 256x3, D=32, backbone 256x3; IQL/MOPO/MOBILE: tr 64x64, D=4, backbone 100x100) and a
  horizon-1 anchor rollout (`make_anchor_fn`).
* dynamics (`new_ensemble`): 7 members (5 elites) x [200]*4 with the default weight decays,
  forward (S+A -> S+1) or reverse (S+A -> S).
* anchors (`make_anchor_fn`): an untrained anchor seeker (100x100) rolled through the
  dynamics' elite mean for `horizon` steps.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from timing import median_time
from torch import Tensor

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.anchor import AnchorSeeker, rollout_anchor_fn
from offlinerlkit.dynamics import (
    DEFAULT_HIDDEN_DIMS,
    DEFAULT_WEIGHT_DECAYS,
    EnsembleDynamics,
    GaussianEnsemble,
)
from offlinerlkit.dynamics.fit import gaussian_nll_loss
from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.modules.build import (
    EncoderOptions,
    build_critics,
    build_encoder,
    build_gaussian_actor,
    build_tanh_actor,
)
from offlinerlkit.nets.mlp import MLP
from offlinerlkit.nets.optim import adam
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy.bc import BCPolicy
from offlinerlkit.policy.cql import CQLPolicy
from offlinerlkit.policy.iql import IQLPolicy
from offlinerlkit.policy.mobile import MOBILEPolicy
from offlinerlkit.policy.mopo import MOPOPolicy
from offlinerlkit.policy.td3bc import TD3BCActor, TD3BCPolicy
from offlinerlkit.types import Batch, EnvSpec

__all__ = ["ALGOS", "COCOA_DEFAULT", "COCOA_SIZES", "NUM_ELITES", "NUM_MEMBERS", "Transitions",
           "build", "dynamics_train_its", "make_anchor_fn", "make_batch", "new_ensemble",
           "random_obs_actions", "synthetic_transitions"]

#: The algorithms `build` knows, in table order.
ALGOS = ("bc", "cql", "iql", "td3bc", "mopo", "mobile")
#: COCOA network sizes per algorithm: (fg_hidden_dims, embedding_dim D, backbone hidden dims),
#: from the algorithm registry.
COCOA_SIZES: dict[str, tuple[tuple[int, ...], int, tuple[int, ...]]] = {
    a.name: tuple(a.cocoa_sizes) for a in ALGORITHMS.values()  # type: ignore[misc]
    if a.cocoa_sizes is not None}
#: COCOA sizes of the algorithms not in `COCOA_SIZES` (those without a COCOA variant).
COCOA_DEFAULT: tuple[tuple[int, ...], int, tuple[int, ...]] = ((64, 64), 4, (100, 100))
#: The paper's dynamics ensemble: members and elites.
NUM_MEMBERS, NUM_ELITES = 7, 5

#: A policy update: batch in, logged metrics out.
Update = Callable[[Batch], dict[str, float]]


class Transitions(NamedTuple):
    """Synthetic transitions: obs `[N, S]`, action `[N, A]`, next_obs `[N, S]`, reward `[N]`."""

    obs: Tensor
    action: Tensor
    next_obs: Tensor
    reward: Tensor


# --------------------------------------------------------------------------- data

def random_obs_actions(rows: int, spec: EnvSpec, device: torch.device,
                       generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Standard-normal states `[rows, S]` and uniform actions in [-1, 1] `[rows, A]`.

    Drawn on the CPU from `generator` (states first), then moved to `device`.
    """
    obs = torch.randn(rows, spec.obs_dim, generator=generator)
    action = torch.rand(rows, spec.action_dim, generator=generator) * 2 - 1
    return obs.to(device), action.to(device)


def make_batch(spec: EnvSpec, batch_size: int, device: torch.device, seed: int) -> Batch:
    """A random gradient batch: next_obs = obs + small noise, random rewards, no terminals."""
    g = torch.Generator().manual_seed(seed)
    obs, action = random_obs_actions(batch_size, spec, torch.device("cpu"), g)
    return Batch(obs=obs, action=action, reward=torch.randn(batch_size, 1, generator=g),
                 next_obs=obs + 0.1 * torch.randn(batch_size, spec.obs_dim, generator=g),
                 done=torch.zeros(batch_size, 1)).to(device)


def synthetic_transitions(rows: int, spec: EnvSpec, device: torch.device,
                          generator: torch.Generator) -> Transitions:
    """A smooth random system to train dynamics on: s' = s + tanh([s, a] @ M), r = sum(s').

    `M` is a fixed random `[S + A, S]` matrix (scale 0.1) drawn from `generator` after the
    states and actions; everything is drawn on the CPU, then moved to `device`.
    """
    obs, action = random_obs_actions(rows, spec, torch.device("cpu"), generator)
    mix = torch.randn(spec.obs_dim + spec.action_dim, spec.obs_dim, generator=generator) * 0.1
    next_obs = obs + torch.tanh(torch.cat([obs, action], -1) @ mix)
    reward = next_obs.sum(-1)
    return Transitions(*(t.to(device) for t in (obs, action, next_obs, reward)))


# --------------------------------------------------------------------------- dynamics

def new_ensemble(spec: EnvSpec, direction: str, device: torch.device, *,
                 hidden_dims: Sequence[int] = DEFAULT_HIDDEN_DIMS,
                 num_members: int = NUM_MEMBERS, num_elites: int = NUM_ELITES,
                 penalty_coef: float = 0.0) -> EnsembleDynamics:
    """A fresh dynamics ensemble, forward (S+A -> S+1) or reverse (S+A -> S).

    The default weight decays apply where `hidden_dims` has their depth (4 layers), none
    otherwise. `penalty_coef` is MOPO's uncertainty penalty of `EnsembleDynamics.step`.
    """
    out_dim = spec.obs_dim + 1 if direction == "forward" else spec.obs_dim
    decays = DEFAULT_WEIGHT_DECAYS if len(hidden_dims) == len(DEFAULT_WEIGHT_DECAYS) - 1 else None
    model = GaussianEnsemble(spec.obs_dim + spec.action_dim, out_dim, hidden_dims,
                             num_members=num_members, num_elites=num_elites,
                             weight_decays=decays)
    return EnsembleDynamics(model.to(device), direction=direction,  # type: ignore[arg-type]
                            penalty_coef=penalty_coef)


def dynamics_train_its(dynamics: EnsembleDynamics, x: Tensor, y: Tensor, *, steps: int,
                       batch_size: int, repeats: int, device: torch.device,
                       generator: torch.Generator) -> float:
    """Training steps/s of `dynamics.model` on `(x, y)` (`dynamics.training_pairs`).

    One step: the Gaussian NLL of a `[E, batch_size]` random minibatch (rows drawn per member
    from `generator`), backward, Adam (lr 1e-3, fused where available, as `fit_ensemble`).
    Median over `repeats` runs of `steps` steps, after one untimed run.
    """
    model = dynamics.model
    optimizer = adam(model.parameters(), 1e-3)
    idx = torch.randint(len(x), (model.num_members, steps * batch_size), generator=generator)
    idx = idx.to(device)

    def train_steps() -> None:
        for k in range(steps):
            i = idx[:, k * batch_size:(k + 1) * batch_size]  # [E, b]
            loss = gaussian_nll_loss(model, x[i], y[i], 0.01)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return steps / median_time(train_steps, device, repeats)


# --------------------------------------------------------------------------- policies

def make_anchor_fn(spec: EnvSpec, dynamics: EnsembleDynamics, device: torch.device,
                   horizon: int = 1) -> CountingAnchorFn:
    """A rollout anchor `Phi^H(s)` (spec 5.1) through a fresh frozen seeker, counting its calls."""
    seeker = AnchorSeeker(spec.obs_dim, spec.action_dim).to(device).requires_grad_(False)
    return CountingAnchorFn(rollout_anchor_fn(seeker, dynamics, horizon))


def build(algo: str, cocoa: bool, spec: EnvSpec, device: torch.device
          ) -> tuple[Any, Update, CountingAnchorFn | None]:
    """The policy of `algo` (one of `ALGOS`), its update callable, and the counting anchor fn.

    The anchor fn is None for plain networks (and for BC, which has no COCOA variant). MOBILE
    and every COCOA variant get a fresh forward `new_ensemble`.
    """
    dynamics = new_ensemble(spec, "forward", device) if (cocoa or algo == "mobile") else None
    anchor = make_anchor_fn(spec, dynamics, device) if cocoa and dynamics is not None else None
    tr, embed, cocoa_hidden = COCOA_SIZES.get(algo, COCOA_DEFAULT)
    enc = EncoderOptions(cocoa=cocoa, fg_hidden_dims=tr, embedding_dim=embed)
    fns = {"actor_anchor_fn": anchor, "critic_anchor_fn": anchor}
    if algo == "bc":
        actor = DeterministicActor(MLP(spec.obs_dim, (256, 256)), spec.action_dim)
        policy = BCPolicy(actor, actor_lr=1e-4, device=device)
        return policy, policy.learn, None
    if algo == "cql":
        hidden = cocoa_hidden if cocoa else (256, 256, 256)
        policy = CQLPolicy(build_tanh_actor(spec, hidden, enc), build_critics(spec, hidden, enc),
                           device=device, **fns)
        return policy, policy.learn, anchor
    if algo == "iql":
        hidden = cocoa_hidden if cocoa else (256, 256)
        actor = build_gaussian_actor(spec, hidden, enc)
        q = build_critics(spec, hidden, enc, init="orthogonal")
        v = build_critics(spec, hidden, enc, num_members=1, with_action=False, init="orthogonal")
        policy = IQLPolicy(actor, q, v, actor_lr=3e-4, critic_q_lr=3e-4, critic_v_lr=3e-4,
                           device=device, **fns)
        return policy, policy.learn, anchor
    if algo == "td3bc":
        hidden = cocoa_hidden if cocoa else (256, 256)
        actor = TD3BCActor(build_encoder(spec.obs_dim, 0, enc), hidden, spec.action_dim)
        policy = TD3BCPolicy(actor, build_critics(spec, hidden, enc), device=device, **fns)
        return policy, policy.learn, anchor
    if algo not in ALGOS or not ALGORITHMS[algo].model_based:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {ALGOS}")
    hidden = cocoa_hidden if cocoa else (256, 256)
    actor, critics = build_tanh_actor(spec, hidden, enc), build_critics(spec, hidden, enc)
    if algo == "mopo":
        policy = MOPOPolicy(actor, critics, device=device, **fns)
        return policy, lambda b: policy.learn(b, num_real=12), anchor
    assert dynamics is not None
    policy = MOBILEPolicy(actor, critics, dynamics, device=device, **fns)
    return policy, lambda b: policy.learn(b, num_real=12), anchor
