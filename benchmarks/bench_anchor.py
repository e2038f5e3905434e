"""Throughput of COCOA's stage B and of anchor computation.

* reverse rollouts: `divergent_reverse_rollouts` from `--starts` states, `--length` steps, through
  a 7-member, 5-elite reverse ensemble (4x200), in transitions per second;
* seeker pretraining: seconds per epoch of behaviour cloning on `--rows` imagined transitions
  (batch 256, the 100x100 LayerNorm seeker), and the projected time of the README's 1.5M rows
  x 50 epochs (the early stop usually ends sooner);
* anchors: `rollout_anchor_fn` (horizon 1 and 5) on 256 and 50,000 states.

Usage:
    python benchmarks/bench_anchor.py --threads 2
"""
from __future__ import annotations

import argparse
import time

import torch
from timing import median_time

from offlinerlkit.anchor import AnchorSeeker, divergent_reverse_rollouts, pretrain_seeker
from offlinerlkit.anchor.anchor_fn import rollout_anchor_fn
from offlinerlkit.dynamics import EnsembleDynamics, GaussianEnsemble
from offlinerlkit.utils.experiment import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--obs_dim", type=int, default=17)
    parser.add_argument("--action_dim", type=int, default=6)
    parser.add_argument("--starts", type=int, default=20000)
    parser.add_argument("--length", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--seeker_epochs", type=int, default=2)
    cfg = parser.parse_args()
    configure_threads(cfg.threads)  # also keeps freed large blocks (utils.memory)
    device = torch.device(cfg.device)
    g = torch.Generator().manual_seed(0)
    s, a = cfg.obs_dim, cfg.action_dim
    print(f"device={device} threads={torch.get_num_threads()} obs/action={s}/{a}")

    def ensemble(out: int) -> GaussianEnsemble:
        return GaussianEnsemble(s + a, out, num_members=7, num_elites=5).to(device)

    reverse = EnsembleDynamics(ensemble(s), direction="reverse")
    forward = EnsembleDynamics(ensemble(s + 1), direction="forward")
    starts = torch.randn(cfg.starts, s, generator=g).to(device)
    actions = (torch.rand(cfg.starts, a, generator=g) * 2 - 1).to(device)
    t0 = time.perf_counter()
    data = divergent_reverse_rollouts(reverse, starts, actions, rollout_length=cfg.length,
                                      scale_coef=0.8, noise_coef=0.1, progress=False)
    dt = time.perf_counter() - t0
    n = len(data["observations"])
    print(f"reverse rollouts      {n / dt:>12,.0f} transitions/s  ({n:,} in {dt:.1f} s)")

    seeker = AnchorSeeker(s, a).to(device)
    obs = torch.randn(cfg.rows, s, generator=g).to(device)
    act = (torch.rand(cfg.rows, a, generator=g) * 2 - 1).to(device)
    stamps: list[float] = []
    t0 = time.perf_counter()
    pretrain_seeker(seeker, obs, act, epochs=cfg.seeker_epochs, progress=False,
                    on_epoch=lambda e, m: stamps.append(time.perf_counter()))
    per_epoch = (stamps[-1] - t0) / len(stamps)
    readme_minutes = per_epoch * (1.5e6 / cfg.rows) * 50 / 60
    print(f"seeker pretraining    {per_epoch:>12.2f} s/epoch on {cfg.rows:,} rows "
          f"(1.5M rows x 50 epochs: {readme_minutes:.0f} min)")

    seeker.requires_grad_(False)
    for horizon in (1, 5):
        fn = rollout_anchor_fn(seeker, forward, horizon)
        for rows in (256, 50000):
            x = torch.randn(rows, s, generator=g).to(device)
            sec = median_time(lambda fn=fn, x=x: fn(x), device, repeats=5)
            print(f"anchors H={horizon} B={rows:<6} {rows / sec:>12,.0f} states/s  ({1000 * sec:.2f} ms)")


if __name__ == "__main__":
    main()
