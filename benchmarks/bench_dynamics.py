"""Throughput of the dynamics ensemble: training steps, one training epoch, and inference.

Prints a table with medians over repeats:

* train step: one Adam step on a `[E, batch, in]` minibatch (256 rows per member by default),
  as it/s and rows per member per second; spec SPEED.md's reference is 55.6 it/s for
  7 x [200]*4 at halfcheetah sizes on the 2-core CPU.
* fit epoch: `fit_ensemble` epochs on a synthetic dataset (`--rows`), training rows per second
  (holdout validation, shuffling and keep-best bookkeeping included).
* step / predict_mean / sample_next_obs for `--batch` rows (50,000 by default).

Usage:
    python benchmarks/bench_dynamics.py --device cpu --threads 2
    python benchmarks/bench_dynamics.py --device cuda

The ensemble, the synthetic data and the training step are those of `workloads.py`, the same
as the dynamics section of `suite.py`.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from timing import median_time, sync
from workloads import dynamics_train_its, new_ensemble, synthetic_transitions

from offlinerlkit.dynamics import EnsembleDynamics, fit_ensemble
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.device import configure_threads
from offlinerlkit.utils.memory import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--obs_dim", type=int, default=17)
    parser.add_argument("--action_dim", type=int, default=6)
    parser.add_argument("--hidden_dims", type=int, nargs="+", default=[200, 200, 200, 200])
    parser.add_argument("--num_members", type=int, default=7)
    parser.add_argument("--num_elites", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256, help="training rows per member")
    parser.add_argument("--rows", type=int, default=50_000, help="synthetic dataset size for fit epochs")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per step()/predict_mean call")
    parser.add_argument("--train_steps", type=int, default=50, help="timed training steps per repeat")
    parser.add_argument("--fit_epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    cfg = parser.parse_args()

    keep_freed_memory()
    configure_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    spec = EnvSpec(cfg.obs_dim, cfg.action_dim)

    def new_dynamics() -> EnsembleDynamics:
        return new_ensemble(spec, "forward", device, hidden_dims=cfg.hidden_dims,
                            num_members=cfg.num_members, num_elites=cfg.num_elites)

    obs, action, next_obs, reward = synthetic_transitions(cfg.rows, spec, device, gen)
    rows: list[tuple[str, str, str]] = []

    # --- raw training steps ---
    dynamics = new_dynamics()
    x, y = dynamics.training_pairs(obs, action, next_obs, reward)
    its = dynamics_train_its(dynamics, x, y, steps=cfg.train_steps, batch_size=cfg.batch_size,
                             repeats=cfg.repeats, device=device, generator=gen)
    rows.append(("train step", f"{its:,.1f} it/s", f"{its * cfg.batch_size:,.0f} rows/member/s"))

    # --- fit_ensemble epochs ---
    dynamics = new_dynamics()
    stamps: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    result = fit_ensemble(dynamics, x, y, max_epochs=cfg.fit_epochs, progress=False, on_epoch=on_epoch,
                          generator=torch.Generator().manual_seed(cfg.seed))
    epoch_times = [b - a for a, b in zip([start, *stamps[:-1]], stamps)]
    train_rows = cfg.rows - len(result.holdout_indices)
    epoch_time = statistics.median(epoch_times)
    rows.append(("fit epoch", f"{epoch_time:.2f} s/epoch",
                 f"{train_rows / epoch_time:,.0f} rows/s ({train_rows:,} rows, E={cfg.num_members})"))

    # --- inference at --batch rows ---
    dynamics = new_dynamics()
    b_obs, b_action = obs[: cfg.batch], action[: cfg.batch]
    infer_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("step random_elite", lambda: dynamics.step(b_obs, b_action, generator=infer_gen), cfg.batch),
        ("step elite_mean", lambda: dynamics.step(b_obs, b_action, sampling="elite_mean"), cfg.batch),
        ("predict_mean", lambda: dynamics.predict_mean(b_obs, b_action), cfg.batch),
    ]
    mopo = EnsembleDynamics(dynamics.model, direction="forward", penalty_coef=2.5)
    cases.append(("step MOPO aleatoric", lambda: mopo.step(b_obs, b_action, generator=infer_gen), cfg.batch))
    cases.append(("sample_next_obs (x10)", lambda: dynamics.sample_next_obs(
        obs[:256], action[:256], 10, generator=infer_gen), 256))
    for name, fn, n in cases:
        t = median_time(fn, device, cfg.repeats)
        rows.append((name, f"{t * 1e3:,.1f} ms/call", f"{n / t:,.0f} rows/s (B={n:,})"))

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"device={device} threads={threads} torch={torch.__version__} E={cfg.num_members} "
          f"K={cfg.num_elites} hidden={cfg.hidden_dims} obs_dim={cfg.obs_dim} action_dim={cfg.action_dim}")
    width = max(len(r[0]) for r in rows)
    for name, a, b in rows:
        print(f"{name:<{width}}  {a:>16}  {b}")


if __name__ == "__main__":
    main()
