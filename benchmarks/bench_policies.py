"""Gradient steps per second of each algorithm's `learn()`, alone and with COCOA.

Paper default sizes at halfcheetah's observation/action sizes (17/6), batch 256, random data:

* BC: actor 256x2. CQL: actor/critics 256x3, 10 repeated actions. IQL: 256x2.
* MOPO: SAC on 12 dataset + 244 model rows, 256x2. MOBILE: 256x2, 2 critics, 10 next-state
  samples from a 7-member, 5-elite dynamics ensemble (4x200).
* With `--cocoa`: the anchor + delta networks of spec 6.4 (CQL: tr 256x3, D=32, backbone
  256x3; IQL/MOPO/MOBILE: tr 64x64, D=4, backbone 100x100) and a horizon-1 anchor rollout
  through an anchor seeker (100x100) and the dynamics' elite mean. The table also reports
  the anchor computations per update (each one a seeker + dynamics pass over a state batch).

Usage:
    python benchmarks/bench_policies.py --threads 2
    python benchmarks/bench_policies.py --algos cql iql --cocoa both --device cuda
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from timing import median_time

from offlinerlkit.anchor import AnchorSeeker, rollout_anchor_fn
from offlinerlkit.dynamics import EnsembleDynamics, GaussianEnsemble
from offlinerlkit.modules.actor import DeterministicActor
from offlinerlkit.modules.build import (
    EncoderOptions,
    build_critics,
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
from offlinerlkit.types import Batch, EnvSpec
from offlinerlkit.utils.experiment import configure_threads

ALGOS = ("bc", "cql", "iql", "mopo", "mobile")
COCOA_SIZES = {"cql": ((256, 256, 256), 32, (256, 256, 256))}  # tr_hidden_dims, D, backbone
COCOA_DEFAULT = ((64, 64), 4, (100, 100))


def make_batch(spec: EnvSpec, batch_size: int, device: torch.device, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch_size, spec.obs_dim, generator=g)
    return Batch(obs=obs, action=torch.rand(batch_size, spec.action_dim, generator=g) * 2 - 1,
                 reward=torch.randn(batch_size, 1, generator=g),
                 next_obs=obs + 0.1 * torch.randn(batch_size, spec.obs_dim, generator=g),
                 done=torch.zeros(batch_size, 1)).to(device)


def make_dynamics(spec: EnvSpec, device: torch.device) -> EnsembleDynamics:
    model = GaussianEnsemble(spec.obs_dim + spec.action_dim, spec.obs_dim + 1, num_members=7,
                             num_elites=5).to(device)
    return EnsembleDynamics(model, direction="forward")


def make_anchor_fn(spec: EnvSpec, dynamics: EnsembleDynamics, device: torch.device) -> CountingAnchorFn:
    """A horizon-1 rollout anchor `dynamics_mean(s, seeker(s))` (spec 5.1), counting its calls."""
    seeker = AnchorSeeker(spec.obs_dim, spec.action_dim).to(device).requires_grad_(False)
    return CountingAnchorFn(rollout_anchor_fn(seeker, dynamics, 1))


def build(algo: str, cocoa: bool, spec: EnvSpec, device: torch.device
          ) -> tuple[Any, Callable[[Batch], dict[str, float]], CountingAnchorFn | None]:
    """The policy, its update callable, and the counting anchor fn (None for plain runs)."""
    dynamics = make_dynamics(spec, device) if (cocoa or algo == "mobile") else None
    anchor = make_anchor_fn(spec, dynamics, device) if cocoa and dynamics is not None else None
    tr, embed, cocoa_hidden = COCOA_SIZES.get(algo, COCOA_DEFAULT)
    enc = EncoderOptions(cocoa=cocoa, tr_hidden_dims=tr, embedding_dim=embed)
    fns = {"actor_anchor_fn": anchor, "critic_anchor_fn": anchor}
    if algo == "bc":
        actor = DeterministicActor(MLP(spec.obs_dim, (256, 256)), spec.action_dim)
        policy = BCPolicy(actor, adam(actor.parameters(), lr=1e-4), device=device)
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
        policy = IQLPolicy(actor, q, v, adam(actor.parameters(), lr=3e-4),
                           adam(q.parameters(), lr=3e-4),
                           adam(v.parameters(), lr=3e-4), device=device, **fns)
        return policy, policy.learn, anchor
    hidden = cocoa_hidden if cocoa else (256, 256)
    actor, critics = build_tanh_actor(spec, hidden, enc), build_critics(spec, hidden, enc)
    if algo == "mopo":
        policy = MOPOPolicy(actor, critics, device=device, **fns)
        return policy, lambda b: policy.learn(b, num_real=12), anchor
    assert dynamics is not None
    policy = MOBILEPolicy(actor, critics, dynamics, device=device, **fns)
    return policy, lambda b: policy.learn(b, num_real=12), anchor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="*", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--cocoa", choices=("off", "on", "both"), default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--obs_dim", type=int, default=17)
    parser.add_argument("--action_dim", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="timed updates per algorithm (median)")
    parser.add_argument("--seed", type=int, default=0)
    cfg = parser.parse_args()
    configure_threads(cfg.threads)  # also keeps freed large blocks (utils.memory)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    spec = EnvSpec(cfg.obs_dim, cfg.action_dim)
    batch = make_batch(spec, cfg.batch_size, device, cfg.seed)
    variants = {"off": [False], "on": [True], "both": [False, True]}[cfg.cocoa]
    print(f"device={device} threads={torch.get_num_threads()} batch={cfg.batch_size} "
          f"obs/action={cfg.obs_dim}/{cfg.action_dim} torch={torch.__version__}")
    print(f"{'algorithm':<16}{'steps/s':>10}{'ms/step':>10}{'anchor calls/update':>22}")
    for algo in cfg.algos:
        for cocoa in variants:
            if algo == "bc" and cocoa:
                continue
            _, step, anchor = build(algo, cocoa, spec, device)
            seconds = median_time(lambda step=step: step(batch), device, cfg.steps, warmup=2)
            calls = "-"
            if anchor is not None:
                anchor.reset()
                step(batch)
                calls = f"{anchor.calls} ({anchor.rows} rows)"
            name = f"{algo}{'+cocoa' if cocoa else ''}"
            print(f"{name:<16}{1 / seconds:>10.2f}{1000 * seconds:>10.1f}{calls:>22}", flush=True)


if __name__ == "__main__":
    main()
