"""Where one gradient update's time goes: torch.profiler over updates of one algorithm.

    python benchmarks/profile_update.py --algo iql                  # IQL alone, 2 threads
    python benchmarks/profile_update.py --algo mopo --cocoa --precomputed --threads 1

Prints the update's wall time, the share of it spent inside torch operators (the rest is Python,
the optimiser's bookkeeping and dispatch between kernels), the number of operator calls, and the
operators with the most self time, grouped into matmuls, element-wise work, optimiser steps and
other. Same workloads as `suite.py` (paper sizes, batch 256, halfcheetah's 17/6 sizes, random
data). Run it on a quiet machine: other processes change the shares.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence

import torch
from torch.profiler import ProfilerActivity, profile
from workloads import ALGOS, build, make_batch

from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.device import configure_threads
from offlinerlkit.utils.memory import keep_freed_memory

#: Operator-name fragments of each group (first match wins).
GROUPS = (
    ("matmul", ("mm", "matmul", "linear", "addmm", "baddbmm", "bmm")),
    ("optimiser", ("_fused_adam", "adam", "_foreach")),
    ("element-wise / normalisation", ("relu", "threshold", "silu", "tanh", "exp", "log", "mul",
                                      "add", "sub", "div", "pow", "sum", "mean", "layer_norm",
                                      "clamp", "neg", "sigmoid", "where", "max", "min", "std")),
)


def group_of(name: str) -> str:
    low = name.lower()
    for group, parts in GROUPS:
        if any(p in low for p in parts):
            return group
    return "other (copies, indexing, allocation, ...)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, default="iql")
    parser.add_argument("--cocoa", action="store_true", help="the COCOA variant")
    parser.add_argument("--precomputed", action="store_true",
                        help="with --cocoa: the batch carries its states' anchors, as trained")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="profiled updates")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    keep_freed_memory()
    configure_threads(cfg.threads)
    device = torch.device("cpu")
    spec = EnvSpec(17, 6)
    torch.manual_seed(0)
    policy, step, _ = build(cfg.algo, cfg.cocoa, spec, device)
    batch = make_batch(spec, cfg.batch_size, device, 0)
    if cfg.cocoa and cfg.precomputed:
        batch = dataclasses.replace(batch, obs_anchor=policy.anchors.precompute(batch.obs),
                                    next_obs_anchor=policy.anchors.precompute(batch.next_obs))
    for _ in range(cfg.warmup):
        step(batch)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step(batch)
    wall = (time.perf_counter() - start) / cfg.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(cfg.steps):
            step(batch)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    op_us = sum(e.self_cpu_time_total for e in events) / cfg.steps
    calls = sum(e.count for e in events) / cfg.steps
    name = cfg.algo + ("+cocoa" if cfg.cocoa else "") + (" (anchors precomputed)"
                                                          if cfg.cocoa and cfg.precomputed else "")
    print(f"{name}: {wall * 1e3:.2f} ms per update unprofiled, {cfg.threads} thread(s), batch "
          f"{cfg.batch_size}")
    print(f"  operators: {op_us / 1e3:.2f} ms self time per update in {calls:.0f} calls "
          f"(profiler overhead included; the rest of the profiled step is Python and dispatch)")
    shares: dict[str, float] = {}
    for e in events:
        shares[group_of(e.key)] = shares.get(group_of(e.key), 0.0) + e.self_cpu_time_total
    for group, us in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<40} {100 * us / sum(shares.values()):5.1f} % of operator time")
    print(f"  top {cfg.top} operators by self time (ms per update, calls per update):")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:cfg.top]:
        print(f"    {e.key:<45} {e.self_cpu_time_total / cfg.steps / 1e3:7.3f}  "
              f"{e.count / cfg.steps:6.1f}")


if __name__ == "__main__":
    main()
