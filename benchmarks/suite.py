"""The project's whole speed table in one command (CUDA when present, else CPU; `--device cpu` forces it).

Sections (all by default; pick some with `--only`), at the paper's default sizes, batch 256 and
halfcheetah's observation/action sizes (17/6; `--obs_dim`, `--action_dim`):

* `matmul`: the machine's measured float32 matrix-multiply rate (median of square
  `--matmul_size` matmuls), and the bfloat16 rate for information. The float32 rate is the
  yardstick of the policy table's "% of fp32 matmul" column (so `--only policies` measures it
  too, without printing it).
* `policies`: gradient steps/s (median over `--steps` updates after `--warmup`) of BC, CQL, IQL,
  MOPO and MOBILE, alone and with COCOA (`workloads.build`), the COCOA/alone time ratio,
  the anchor computations of one update, the FLOPs of one update as counted by
  `torch.utils.flop_counter.FlopCounterMode` (matmuls only: elementwise work is not counted),
  the achieved GFLOP/s and its fraction of the float32 matmul rate, and each COCOA variant as
  trained (row anchors precomputed: `--anchor_cache`).
* `dynamics`: training steps of the forward (S+A -> S+1) and reverse (S+A -> S) ensembles,
  7 members x [200]*4, 256 rows per member per step, Adam.
* `rollout`: model-rollout transitions/s from `--rollout_starts` start states, one rollout step
  (`MBPolicyTrainer.rollout`: the MOPO actor's sample plus `EnsembleDynamics.step`), with a plain
  actor and with a COCOA actor (its anchors computed on the states).
* `reverse`: `divergent_reverse_rollouts` transitions/s (COCOA stage B).
* `seeker`: anchor-seeker pretraining seconds per epoch on `--seeker_rows` rows, projected to
  the paper's 1.5M rows x 50 epochs.
* `anchors`: `rollout_anchor_fn` states/s and ms per call (an untrained 100x100 seeker through
  the forward ensemble's elite mean) for each horizon in `--anchor_horizons` (1 and 5) on each
  batch in `--anchor_states` (256 and 50,000 states).
* `memory`: the peak memory of loading `--buffer_rows` random transitions into the replay buffer
  the way the training scripts do (a numpy transition dict, then `ReplayBuffer.from_transitions`),
  measured in a fresh subprocess; on CUDA also `torch.cuda.max_memory_allocated`.

Usage:
    python benchmarks/suite.py                                  # CPU, 2 threads, everything
    python benchmarks/suite.py --markdown speed.md              # also write a Markdown file
    python benchmarks/suite.py --only policies --algos cql iql --steps 5
    python benchmarks/suite.py --device cuda --only matmul policies rollout memory
    python benchmarks/suite.py --only anchors reverse seeker --seeker_rows 20000

The workloads (random data, networks, update callables) are built by `workloads.py`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timing import median_time, sync
from torch.utils.flop_counter import FlopCounterMode
from workloads import (
    ALGOS,
    NUM_MEMBERS,
    build,
    dynamics_train_its,
    make_anchor_fn,
    make_batch,
    new_ensemble,
    random_obs_actions,
    synthetic_transitions,
)

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.anchor import AnchorSeeker, divergent_reverse_rollouts, pretrain_seeker
from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.dynamics import DEFAULT_HIDDEN_DIMS, EnsembleDynamics
from offlinerlkit.envs import make_env
from offlinerlkit.policy.anchors import CountingAnchorFn
from offlinerlkit.policy_trainer.mb import MBPolicyTrainer
from offlinerlkit.types import Batch, EnvSpec
from offlinerlkit.utils.device import configure_threads, resolve_device
from offlinerlkit.utils.logger import NoOpLogger
from offlinerlkit.utils.memory import keep_freed_memory
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.speed import apply_speed_options, step_context
from offlinerlkit.utils.tasks import parse_task

SECTIONS = ("matmul", "policies", "dynamics", "rollout", "reverse", "seeker", "anchors",
            "memory", "online")

#: Each section's table title (printed and written as a Markdown heading).
TITLES = {
    "matmul": "Matrix-multiply rate",
    "policies": "Policy gradient steps",
    "dynamics": "Dynamics training",
    "rollout": "Model rollouts",
    "reverse": "Reverse rollouts",
    "seeker": "Seeker pretraining",
    "anchors": "Anchor computation",
    "memory": "Replay-buffer memory",
    "online": "Online SAC (behaviour policies of the replica datasets)",
}

PAPER_SEEKER_ROWS, PAPER_SEEKER_EPOCHS = 1_500_000, 50
MOPO_PENALTY = 1.0  # any nonzero value: the rollout then pays for MOPO's uncertainty penalty


# --------------------------------------------------------------------------- tables

def fmt(value: object) -> str:
    """A table cell: `-` for None, thousands separators, about three significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


@dataclass
class Table:
    """One section of the report: a label column followed by numeric columns, plus notes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([fmt(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]

        def line(cells: Sequence[str]) -> str:
            first = f"{cells[0]:<{widths[0]}}"
            return "  ".join([first, *(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:]))])

        out = [f"== {self.title} ==", line(self.columns), *(line(r) for r in self.rows)]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |",
               "|" + "|".join(["---", *("---:" for _ in self.columns[1:])]) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out += ["", *(f"* {n}" for n in self.notes)]
        return "\n".join(out)


# --------------------------------------------------------------------------- machine

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, else `platform`'s guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def header(cfg: SuiteOptions, device: torch.device) -> str:
    """One line: device, threads, torch version, CPU (and GPU) model, sizes."""
    gpu = f" gpu={torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"device={device}{gpu} threads={torch.get_num_threads()} torch={torch.__version__} "
            f"cpu={cpu_model()!r} batch={cfg.batch_size} obs/action={cfg.obs_dim}/{cfg.action_dim}")


def matmul_gflops(size: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """The best GFLOP/s of a square `size`^3 matmul (2 size^3 FLOPs) over at least 10 calls.

    The best, not the median: it is the yardstick the updates are compared with, and single
    calls vary by 10-20 % on a 2-core CPU (clock, other processes).
    """
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=g, device=device).to(dtype)
    b = torch.randn(size, size, generator=g, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(max(repeats, 10)):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def matmul_table(cfg: SuiteOptions, device: torch.device) -> tuple[Table, float]:
    """The float32 (and bfloat16) matmul rates; returns the table and the float32 GFLOP/s."""
    table = Table(TITLES["matmul"], ["dtype", "size", "GFLOP/s", "ms/matmul"])
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        rates[name] = matmul_gflops(cfg.matmul_size, dtype, device, cfg.repeats)
        table.add(name, cfg.matmul_size, rates[name], 2e-6 * cfg.matmul_size**3 / rates[name])
    table.notes.append(f"best of {max(cfg.repeats, 10)} calls; float32 is the yardstick of the "
                       "policy table; bfloat16 is information only")
    return table, rates["float32"]


# --------------------------------------------------------------------------- policies

def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of `fn()` as torch's `FlopCounterMode` counts them.

    It counts matmul-like ops (mm, addmm, bmm, baddbmm, convolutions, attention) from their
    shapes, forward and backward; elementwise ops, reductions and optimizer arithmetic count 0.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class UpdateStats:
    """One algorithm variant's update: median seconds, counted FLOPs and anchor work."""

    seconds: float
    flops: int
    anchor_calls: int | None  # None: no anchors (a plain network)
    anchor_rows: int | None


def measure_update(algo: str, cocoa: bool, spec: EnvSpec, batch: Batch, device: torch.device,
                   steps: int, warmup: int, speed: Any = None, *,
                   precomputed_anchors: bool = False) -> UpdateStats:
    """Time `steps` updates after `warmup`, then count FLOPs and anchor calls of one more.

    `speed`: the opt-in speed options (`utils.speed`: tf32, bf16, compile, cuda_graphs) or None.
    `precomputed_anchors`: the batch carries the anchors of its states, as the model-free
    trainer's batches do (`MFPolicyTrainer(anchor_cache=True)`: dataset anchors computed once).
    """
    policy, step, anchor = build(algo, cocoa, spec, device)
    speed = speed or SuiteOptions()
    apply_speed_options(policy, speed, device)
    if precomputed_anchors:
        batch = dataclasses.replace(batch, obs_anchor=policy.anchors.precompute(batch.obs),
                                    next_obs_anchor=policy.anchors.precompute(batch.next_obs))

    def update() -> object:
        with step_context(speed, device):
            return step(batch)

    seconds = median_time(update, device, steps, warmup=warmup)
    if anchor is not None:
        anchor.reset()
    flops = count_flops(update)
    return UpdateStats(seconds, flops, anchor.calls if anchor else None,
                       anchor.rows if anchor else None)


def policies_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device,
                   fp32_gflops: float | None) -> Table:
    """Steps/s, FLOPs and anchor work of every requested algorithm, alone and with COCOA."""
    table = Table(f"{TITLES['policies']} (batch {cfg.batch_size})",
                  ["algorithm", "steps/s", "ms/step", "COCOA/alone time", "anchor calls/update",
                   "anchor rows/update", "GFLOP/update", "GFLOP/s", "% of fp32 matmul"])
    batch = make_batch(spec, cfg.batch_size, device, cfg.seed)
    for algo in cfg.algos:
        alone: UpdateStats | None = None
        has_cocoa = ALGORITHMS[algo].has_cocoa
        variants = [(False, False)] + ([(True, False), (True, True)] if has_cocoa else [])
        for cocoa, precomputed in variants:
            stats = measure_update(algo, cocoa, spec, batch, device, cfg.steps, cfg.warmup, cfg,
                                   precomputed_anchors=precomputed)
            alone = stats if not cocoa else alone
            name = f"{algo}+cocoa" if cocoa else algo
            name += " (row anchors precomputed)" if precomputed else ""
            achieved = stats.flops / stats.seconds / 1e9
            table.add(name, 1 / stats.seconds, 1e3 * stats.seconds,
                      stats.seconds / alone.seconds if cocoa and alone else None,
                      stats.anchor_calls, stats.anchor_rows, stats.flops / 1e9, achieved,
                      100 * achieved / fp32_gflops if fp32_gflops else None)
            print(f"  {name}: {1 / stats.seconds:.3g} steps/s", file=sys.stderr, flush=True)
    table.notes += [
        f"median of {cfg.steps} updates after {cfg.warmup} warm-up updates; random data",
        "speed options: " + (", ".join(f"--{k}" for k in ("tf32", "bf16", "compile", "cuda_graphs")
                                       if getattr(cfg, k)) or "none (the default, exact float32)"),
        "GFLOP counted by torch FlopCounterMode over one update (matmuls only)",
        "COCOA/alone time: seconds per update with COCOA over seconds without (same algorithm)",
        "row anchors precomputed: how every COCOA algorithm trains by default (--anchor_cache): "
        "the anchors of the dataset's states are computed once before training and those of "
        "model-rollout states once when the rollout stores them, so updates make no anchor call "
        "for s and s' (MOBILE still anchors its freshly sampled next states)",
        "compare with other programs only in the same run on the same machine (no reference "
        "figures from elsewhere are printed)",
    ]
    return table


# --------------------------------------------------------------------------- dynamics

def dynamics_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device) -> Table:
    """Forward and reverse ensemble training throughput."""
    table = Table(TITLES["dynamics"], ["model", "it/s", "samples/s (all members)",
                                       "rows/member/s"])
    s, a = spec.obs_dim, spec.action_dim
    for direction, out in (("forward", s + 1), ("reverse", s)):
        gen = torch.Generator().manual_seed(cfg.seed)
        dynamics = new_ensemble(spec, direction, device)
        x, y = dynamics.training_pairs(*synthetic_transitions(cfg.dyn_rows, spec, device, gen))
        its = dynamics_train_its(dynamics, x, y, steps=cfg.dyn_steps, batch_size=cfg.batch_size,
                                 repeats=cfg.repeats, device=device, generator=gen)
        table.add(f"{direction} ({s + a} -> {out})", its, its * NUM_MEMBERS * cfg.batch_size,
                  its * cfg.batch_size)
    table.notes += [
        f"{NUM_MEMBERS} members x {list(DEFAULT_HIDDEN_DIMS)}, {cfg.batch_size} rows per member "
        f"per step, Adam; median of {cfg.repeats} runs of {cfg.dyn_steps} steps",
    ]
    return table


# --------------------------------------------------------------------------- rollouts

def rollout_trainer(policy: Any, dynamics: EnsembleDynamics, spec: EnvSpec, starts: int,
                    device: torch.device, run_dir: RunDir, batch_size: int, seed: int
                    ) -> MBPolicyTrainer:
    """A MOPO trainer whose `rollout()` rolls `starts` random dataset states out for one step.

    `batch_size` (the gradient batch) is required by the trainer but unused by `rollout()`.
    """
    data = make_batch(spec, starts, device, seed)
    buffer = ReplayBuffer(starts, spec.obs_dim, spec.action_dim, device=device)
    buffer.add_batch(data.obs, data.action, data.reward, data.next_obs, data.done)
    trainer = MBPolicyTrainer(policy, dynamics=dynamics, rollout_freq=1, rollout_batch_size=starts,
                              rollout_length=1, model_retain_epochs=1, buffer=buffer,
                              logger=NoOpLogger(), run_dir=run_dir, env=None, task=None, epochs=1,
                              step_per_epoch=1, batch_size=batch_size, eval_episodes=0,
                              progress=False)
    trainer.precompute_anchors()  # as training does first: the dataset states' anchors
    return trainer


def rollout_seconds(cocoa: bool, cfg: SuiteOptions, spec: EnvSpec, device: torch.device
                    ) -> tuple[float, CountingAnchorFn | None]:
    """Median seconds of one rollout step from `cfg.rollout_starts` states, and the anchor fn
    (its counts are those of one rollout)."""
    policy, _, anchor = build("mopo", cocoa, spec, device)
    dynamics = new_ensemble(spec, "forward", device, penalty_coef=MOPO_PENALTY)
    with tempfile.TemporaryDirectory() as tmp:  # the trainer writes nothing during rollouts
        trainer = rollout_trainer(policy, dynamics, spec, cfg.rollout_starts, device,
                                  RunDir(Path(tmp)), cfg.batch_size, cfg.seed)
        seconds = median_time(trainer.rollout, device, cfg.repeats)
        if anchor is not None:
            anchor.reset()
            trainer.rollout()
    return seconds, anchor


def rollout_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device) -> Table:
    """Model-rollout throughput with a plain and a COCOA MOPO actor."""
    table = Table(f"{TITLES['rollout']} ({cfg.rollout_starts:,} starts, one step)",
                  ["actor", "transitions/s", "s/rollout step", "COCOA/alone time",
                   "anchor calls/step", "anchor rows/step"])
    alone = None
    for cocoa in (False, True):
        seconds, anchor = rollout_seconds(cocoa, cfg, spec, device)
        alone = seconds if not cocoa else alone
        table.add("mopo+cocoa" if cocoa else "mopo", cfg.rollout_starts / seconds, seconds,
                  seconds / alone if cocoa and alone else None,
                  anchor.calls if anchor else None, anchor.rows if anchor else None)
    table.notes.append(f"MBPolicyTrainer.rollout: buffer sample, actor sample (+ anchors), "
                       f"EnsembleDynamics.step (random elite, MOPO penalty), model-buffer write; "
                       f"median of {cfg.repeats}")
    return table


def reverse_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device) -> Table:
    """`divergent_reverse_rollouts` throughput through the paper's reverse ensemble."""
    table = Table(TITLES["reverse"], ["stage", "transitions/s", "starts", "length", "s/run"])
    g = torch.Generator().manual_seed(cfg.seed)
    reverse = new_ensemble(spec, "reverse", device)
    starts, actions = random_obs_actions(cfg.reverse_starts, spec, device, g)
    counts: list[int] = []

    def run() -> None:
        data = divergent_reverse_rollouts(reverse, starts, actions,
                                          rollout_length=cfg.reverse_length, scale_coef=0.8,
                                          noise_coef=0.1, progress=False)
        counts.append(len(data["observations"]))

    seconds = median_time(run, device, cfg.repeats)
    table.add("divergent_reverse_rollouts", counts[-1] / seconds, cfg.reverse_starts,
              cfg.reverse_length, seconds)
    table.notes.append(f"7 members x [200]*4 reverse ensemble; median of {cfg.repeats} runs")
    return table


def seeker_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device) -> Table:
    """Seconds per seeker-pretraining epoch and the projection to the paper's data and epochs."""
    table = Table(TITLES["seeker"], ["stage", "s/epoch", "rows", "epochs timed",
                                     f"projected min ({PAPER_SEEKER_ROWS / 1e6:g}M rows x "
                                     f"{PAPER_SEEKER_EPOCHS} epochs)"])
    g = torch.Generator().manual_seed(cfg.seed)
    seeker = AnchorSeeker(spec.obs_dim, spec.action_dim).to(device)
    obs, act = random_obs_actions(cfg.seeker_rows, spec, device, g)
    stamps: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    pretrain_seeker(seeker, obs, act, epochs=cfg.seeker_epochs, progress=False, on_epoch=on_epoch)
    per_epoch = (stamps[-1] - start) / len(stamps)
    minutes = per_epoch * PAPER_SEEKER_ROWS / cfg.seeker_rows * PAPER_SEEKER_EPOCHS / 60
    table.add("pretrain_seeker (batch 256)", per_epoch, cfg.seeker_rows, len(stamps), minutes)
    table.notes.append("projection scales linearly with rows; the early stop usually ends sooner")
    return table


def anchors_table(cfg: SuiteOptions, spec: EnvSpec, device: torch.device) -> Table:
    """`rollout_anchor_fn` throughput per horizon and state-batch size."""
    table = Table(TITLES["anchors"], ["anchor fn", "states", "states/s", "ms/call"])
    g = torch.Generator().manual_seed(cfg.seed)
    forward = new_ensemble(spec, "forward", device)
    for horizon in cfg.anchor_horizons:
        anchor = make_anchor_fn(spec, forward, device, horizon)
        for rows in cfg.anchor_states:
            states = torch.randn(rows, spec.obs_dim, generator=g).to(device)
            seconds = median_time(lambda a=anchor, x=states: a(x), device, cfg.repeats)
            table.add(f"rollout_anchor_fn H={horizon}", rows, rows / seconds, 1e3 * seconds)
    table.notes.append(f"untrained 100x100 seeker through the {NUM_MEMBERS} x "
                       f"{list(DEFAULT_HIDDEN_DIMS)} forward ensemble's elite mean, H steps; "
                       f"median of {cfg.repeats} calls")
    return table


# --------------------------------------------------------------------------- memory

def _proc_status_bytes(key: str) -> int | None:
    """A `kB` field of /proc/self/status (Linux) in bytes, None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_bytes() -> int:
    """The process's resident set size now (Linux), else its peak so far."""
    rss = _proc_status_bytes("VmRSS")
    return rss if rss is not None else _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    Linux: `VmHWM`, which starts afresh at exec and is reset by `_reset_peak_rss`. (`ru_maxrss`
    is not used there: after fork + exec it still holds the parent's RSS at the fork.)
    Elsewhere: `ru_maxrss` (KiB, bytes on macOS).
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _reset_peak_rss() -> None:
    """Reset Linux's peak-RSS mark to the current RSS (`clear_refs` 5) where allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def random_transitions(rows: int, obs_dim: int, action_dim: int, seed: int
                       ) -> dict[str, np.ndarray]:
    """A D4RL-style transition dict (float32 arrays, bool terminals) without float64 temporaries."""
    rng = np.random.default_rng(seed)
    actions = rng.random((rows, action_dim), dtype=np.float32)
    actions *= 2
    actions -= 1
    return {"observations": rng.standard_normal((rows, obs_dim), dtype=np.float32),
            "actions": actions,
            "next_observations": rng.standard_normal((rows, obs_dim), dtype=np.float32),
            "rewards": rng.standard_normal(rows, dtype=np.float32),
            "terminals": rng.random(rows, dtype=np.float32) < 1e-3}


def memory_child(rows: int, obs_dim: int, action_dim: int, device: torch.device) -> dict[str, int]:
    """In a fresh process: RSS growth while making a dataset and loading it into the buffer."""
    if device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()  # so the peak below is that of the loading, not of the imports
    before = _rss_bytes()
    dataset = random_transitions(rows, obs_dim, action_dim, seed=0)
    buffer = ReplayBuffer.from_transitions(dataset, device=device)  # as open_policy_run
    sync(device)
    result = {"rows": len(buffer), "rss_before": before, "peak_rss": _peak_rss_bytes(),
              "dataset_bytes": sum(int(v.nbytes) for v in dataset.values()),
              "buffer_bytes": buffer.capacity * (2 * obs_dim + action_dim + 2) * 4}
    if device.type == "cuda":
        result["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(device))
    return result


def memory_table(cfg: SuiteOptions, device: torch.device) -> Table:
    """Runs `memory_child` in a subprocess (so nothing else inflates the peak) and tabulates it."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory_child",
           "--buffer_rows", str(cfg.buffer_rows), "--obs_dim", str(cfg.obs_dim),
           "--action_dim", str(cfg.action_dim), "--device", str(device),
           "--threads", str(cfg.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed ({proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    n, mb = r["rows"], 1e6
    growth = r["peak_rss"] - r["rss_before"]
    table = Table(f"{TITLES['memory']} ({n:,} transitions, obs {cfg.obs_dim} / action "
                  f"{cfg.action_dim})", ["what", "MB", "bytes/transition"])
    table.add("peak RSS growth: dataset + buffer (measured)", growth / mb, growth / n)
    table.add("dataset arrays (numpy, exact)", r["dataset_bytes"] / mb, r["dataset_bytes"] / n)
    table.add("replay buffer tensors (exact)", r["buffer_bytes"] / mb, r["buffer_bytes"] / n)
    table.add("process peak RSS while loading (incl. torch)", r["peak_rss"] / mb, None)
    if "cuda_max_allocated" in r:
        table.add("cuda max_memory_allocated", r["cuda_max_allocated"] / mb,
                  r["cuda_max_allocated"] / n)
    table.notes.append("fresh subprocess; RSS growth = peak RSS (VmHWM, else ru_maxrss) after "
                       "loading - RSS before making the dataset; the scripts keep the numpy dict "
                       "alive next to the buffer")
    return table


def online_table(cfg: SuiteOptions, device: torch.device) -> Table:
    """Online SAC as make_dataset.py runs it: simulator step, actor sample, buffer write and
    one update (batch, 256x2 networks) per environment step."""
    from offlinerlkit.policy_trainer.online import OnlineSACTrainer
    from offlinerlkit.replica import SACTrainOptions, build_online_sac

    options = SACTrainOptions()
    task = parse_task(f"{cfg.online_robot}-random-v2")
    spec = EnvSpec(task.obs_dim, task.action_dim)
    warm = max(cfg.batch_size, 256)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    sac = build_online_sac(options, spec, generator=generator, device=device)
    total = warm + cfg.online_steps
    trainer = OnlineSACTrainer(
        sac, make_env(task, seed=cfg.seed), eval_env=make_env(task, seed=cfg.seed + 1),
        buffer=ReplayBuffer(total, spec.obs_dim, spec.action_dim, device=device),
        total_steps=warm, start_steps=warm, update_after=warm, batch_size=cfg.batch_size,
        eval_every=total, eval_episodes=1, record_transitions=True, task=task,
        rng=np.random.default_rng(cfg.seed), generator=generator)
    trainer.train()  # warm-up: random actions, one update at its last step
    trainer.total_steps = total  # then the timed steps, each with an update
    sync(device)
    start = time.perf_counter()
    trainer.train()
    sync(device)
    seconds = time.perf_counter() - start
    rate = cfg.online_steps / seconds
    table = Table(TITLES["online"], ["robot", "env steps/s", "hours per 1M steps", "timed steps"])
    table.add(cfg.online_robot, rate, 1e6 / rate / 3600, cfg.online_steps)
    table.notes.append(f"OnlineSACTrainer.train after {warm} warm-up steps: per step one "
                       f"simulator step, actor sample, transition record and SAC update (batch "
                       f"{cfg.batch_size}, {list(options.hidden_dims)} networks); one "
                       "evaluation episode at the end")
    return table


# --------------------------------------------------------------------------- main

@dataclass(frozen=True)
class SuiteOptions:
    """What the suite measures and at which sizes (the command line, parsed by `parse_args`)."""

    device: str = "auto"
    threads: int = 2
    only: tuple[str, ...] = SECTIONS
    algos: tuple[str, ...] = ALGOS
    markdown: Path | None = None
    batch_size: int = 256
    obs_dim: int = 17
    action_dim: int = 6
    steps: int = 10
    warmup: int = 2
    repeats: int = 3
    matmul_size: int = 2048
    dyn_rows: int = 50_000
    dyn_steps: int = 20
    rollout_starts: int = 50_000
    reverse_starts: int = 20_000
    reverse_length: int = 5
    seeker_rows: int = 100_000
    seeker_epochs: int = 2
    anchor_horizons: tuple[int, ...] = (1, 5)
    anchor_states: tuple[int, ...] = (256, 50_000)
    buffer_rows: int = 2_000_000
    online_robot: str = "hopper"
    online_steps: int = 2_000
    seed: int = 0
    tf32: bool = False
    bf16: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    memory_child: bool = False


def parse_args(argv: Sequence[str] | None = None) -> SuiteOptions:
    # the defaults live in SuiteOptions only: an option not given stays out of the namespace
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--device",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, help="torch intra-op CPU threads")
    parser.add_argument("--only", nargs="+", choices=SECTIONS)
    parser.add_argument("--algos", nargs="+", choices=ALGOS)
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--obs_dim", type=int)
    parser.add_argument("--action_dim", type=int)
    parser.add_argument("--steps", type=int, help="timed policy updates (median)")
    parser.add_argument("--warmup", type=int, help="untimed policy updates first")
    parser.add_argument("--repeats", type=int,
                        help="timed repeats of matmuls, dynamics steps, rollouts")
    parser.add_argument("--matmul_size", type=int)
    parser.add_argument("--dyn_rows", type=int, help="dynamics training rows")
    parser.add_argument("--dyn_steps", type=int, help="dynamics steps per repeat")
    parser.add_argument("--rollout_starts", type=int)
    parser.add_argument("--reverse_starts", type=int)
    parser.add_argument("--reverse_length", type=int)
    parser.add_argument("--seeker_rows", type=int)
    parser.add_argument("--seeker_epochs", type=int)
    parser.add_argument("--anchor_horizons", type=int, nargs="+",
                        help="rollout_anchor_fn horizons H of the anchors section")
    parser.add_argument("--anchor_states", type=int, nargs="+",
                        help="state-batch sizes of the anchors section")
    parser.add_argument("--buffer_rows", type=int)
    parser.add_argument("--online_robot", choices=("hopper", "walker2d",
                                                                      "halfcheetah"))
    parser.add_argument("--online_steps", type=int,
                        help="timed online SAC environment steps")
    parser.add_argument("--seed", type=int)
    for flag, text in (("tf32", "TF32 matmuls (CUDA)"), ("bf16", "bf16 autocast around each update"),
                       ("compile", "torch.compile the networks"),
                       ("cuda_graphs", "compile mode reduce-overhead (CUDA graphs)")):
        parser.add_argument(f"--{flag}", action="store_true",
                            help=f"policies section: {text}; off by default (changes numerics)")
    parser.add_argument("--memory_child", action="store_true", help=argparse.SUPPRESS)
    parsed = vars(parser.parse_args(argv))
    return SuiteOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in parsed.items()})


def run_sections(cfg: SuiteOptions, device: torch.device,
                 emit: Callable[[Table], None]) -> None:
    """Measures the selected sections in order, handing each table to `emit` when done."""
    spec = EnvSpec(cfg.obs_dim, cfg.action_dim)
    fp32: float | None = None
    if "matmul" in cfg.only or "policies" in cfg.only:
        table, fp32 = matmul_table(cfg, device)
        if "matmul" in cfg.only:
            emit(table)
    builders: dict[str, Callable[[], Table]] = {
        "policies": lambda: policies_table(cfg, spec, device, fp32),
        "dynamics": lambda: dynamics_table(cfg, spec, device),
        "rollout": lambda: rollout_table(cfg, spec, device),
        "reverse": lambda: reverse_table(cfg, spec, device),
        "seeker": lambda: seeker_table(cfg, spec, device),
        "anchors": lambda: anchors_table(cfg, spec, device),
        "memory": lambda: memory_table(cfg, device),
        "online": lambda: online_table(cfg, device),
    }
    for name in SECTIONS[1:]:
        if name in cfg.only:
            torch.manual_seed(cfg.seed)
            emit(builders[name]())


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    keep_freed_memory()
    configure_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.memory_child:
        print(json.dumps(memory_child(cfg.buffer_rows, cfg.obs_dim, cfg.action_dim, device)))
        return
    head = header(cfg, device)
    print(head, flush=True)
    tables: list[Table] = []

    def emit(table: Table) -> None:
        tables.append(table)
        print("\n" + table.text(), flush=True)

    run_sections(cfg, device, emit)
    if cfg.markdown is not None:
        cfg.markdown.parent.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(t.markdown() for t in tables)
        cfg.markdown.write_text(f"# Speed table\n\n`{head}`\n\n{body}\n")
        print(f"\nwrote {cfg.markdown}")


if __name__ == "__main__":
    main()
