"""A grid of pipelines (tasks x algorithms x variants x seeds) on Ray Tune; needs `pip install -e ".[ray]"`.

    python run_example/sweep.py --tasks hopper-medium-v2 walker2d-medium-v2 --algos cql iql \
        --variants alone cocoa --seeds 0 1 2 3 --cpus_per_trial 1
    python run_example/sweep.py ... --address auto --gpus_per_trial 0.5      # on a Ray cluster

Each Tune trial runs `run_pipeline.py` for one grid point, so shared artifacts (one forward
dynamics and one anchor seeker per task, by default) are trained once and reused (trials that
need the same one wait for it; trials start seed by seed, each task before the next algorithm, so
those running at once mostly train different tasks' artifacts), finished policy runs are skipped and unfinished ones resumed from
their checkpoints. Running the same command again restores the Tune experiment
(`Tuner.restore`): finished trials are not run again, unfinished and errored ones are, and their
pipelines continue from the policy checkpoints. Results: `<log_dir>/<task>/...` as usual, Tune's
own files under `<log_dir>/ray_results/<name>/`. See docs/PIPELINE.md.

Flags that are not this script's (`--dataset_path`, `--device`, `--artifact_seeds`,
`--epoch`, `--dynamics.<flag>`, ...) are passed to every trial's `run_pipeline.py`; a flag
that only some algorithms have goes to those only.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from offlinerlkit.algorithms import algorithm
from offlinerlkit.pipeline.runner import ALGOS, VARIANTS
from offlinerlkit.utils.cli import opt, parse_config, run_main
from offlinerlkit.utils.extras import MissingExtraError, import_extra
from offlinerlkit.utils.run_dir import safe_name
from offlinerlkit.utils.tasks import parse_task

HERE = Path(__file__).resolve().parent
GRID_FILE = "cocoa_sweep.json"


@dataclass(frozen=True)
class SweepConfig:
    """Run a grid of pipelines on Ray Tune (local by default, a cluster with --address)."""

    tasks: tuple[str, ...] = opt(("hopper-medium-v2",), "tasks of the grid")
    algos: tuple[str, ...] = opt(("cql",), "algorithms of the grid (offlinerlkit.algorithms; "
                                 "those without a COCOA variant, e.g. bc, with --variants alone)")
    variants: tuple[str, ...] = opt(("alone", "cocoa"), "variants of the grid: alone cocoa")
    seeds: tuple[int, ...] = opt((0,), "policy seeds of the grid")
    log_dir: str = opt("log", "root folder of run directories (shared by all trials)")
    name: str = opt("cocoa_sweep", "Tune experiment name; the same name resumes it")
    storage_path: Optional[str] = opt(None, "Tune's storage folder; none: <log_dir>/ray_results")
    address: Optional[str] = opt(None, "Ray cluster to join (e.g. auto, ray://host:10001); "
                                 "none: a local Ray instance")
    num_cpus: Optional[int] = opt(None, "CPUs of the local Ray instance; none: all")
    cpus_per_trial: float = opt(1.0, "CPUs reserved per trial")
    gpus_per_trial: float = opt(0.0, "GPUs reserved per trial (fractions share a GPU)")
    max_concurrent_trials: Optional[int] = opt(None, "cap on trials running at once")
    max_failures: int = opt(0, "retries of a failing trial within one sweep run")
    verbose: bool = opt(False, "show the trials' console output and Tune's progress table")

    def __post_init__(self) -> None:
        for name, allowed in (("algos", ALGOS), ("variants", VARIANTS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad:
                raise ValueError(f"--{name}: unknown {bad}; choose from {list(allowed)}")
        for name in ("tasks", "algos", "variants", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"--{name} needs at least one value")
        if "cocoa" in self.variants:
            alone_only = [a for a in self.algos if not algorithm(a).has_cocoa]
            if alone_only:
                raise ValueError(f"--algos {alone_only} have no COCOA variant: sweep them "
                                 "separately with --variants alone")
        for task in self.tasks:  # before Ray starts: names, and Minari datasets in the store
            parse_task(task)
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError("--cpus_per_trial must be > 0 and --gpus_per_trial >= 0")


def grid_points(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The grid points in the order trials start: seed by seed, and within a seed, each task
    before the next algorithm or variant. Trials that run at once then mostly need different
    tasks' artifacts, instead of one waiting idle for the dynamics and seeker another trains.
    """
    return [{"task": task, "algo": algo, "variant": variant, "seed": seed}
            for seed in cfg.seeds for algo in cfg.algos for variant in cfg.variants
            for task in cfg.tasks]


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config with its grid point's keys at the top (Tune nests them under `point`)."""
    out = {k: v for k, v in config.items() if k != "point"}
    out.update(config.get("point") or {})
    return out


def trial_argv(point: dict[str, Any]) -> list[str]:
    """The `run_pipeline.py` command line of one grid point."""
    return ["--task", str(point["task"]), "--algo", str(point["algo"]),
            "--variant", str(point["variant"]), "--seed", str(point["seed"]),
            "--log_dir", str(point["log_dir"]), *point["argv"]]


def pipeline_trial(config: dict[str, Any]) -> None:
    """Tune trainable: one pipeline; reports the policy run, its score and what was reused."""
    import run_pipeline
    from ray import tune

    result = run_pipeline.run(trial_argv(flat_config(config)), strict=False)
    summary = run_pipeline.summary(result)
    metrics: dict[str, Any] = {"last_10_performance": summary.pop("last_10_performance")}
    for stage, outcome in summary.items():
        metrics[f"{stage}_run"] = outcome["run"] if outcome else ""
        metrics[f"{stage}_action"] = outcome["action"] if outcome else ""
    tune.report(metrics)


def _trial_name(trial: Any) -> str:
    c = flat_config(trial.config)
    return f"{c['algo']}_{c['variant']}_{safe_name(c['task'])}_seed{c['seed']}_{trial.trial_id}"


def _local_auth_token(storage: Path) -> None:
    """Keep the local Ray instance's auth token under the sweep's storage, not in ~/.ray."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    token = storage / ".ray_auth_token"
    if not token.is_file():
        token.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)


def _check_flags(cfg: SweepConfig, forwarded: list[str]) -> None:
    """Refuse, before Ray starts, flags no trial could use and flags the grid sets."""
    import run_pipeline

    pipeline_flags = run_pipeline._flags_of(run_pipeline.PipelineConfig)
    fixed = {"--task", "--algo", "--variant", "--seed", "--log_dir"}
    try:
        groups = run_pipeline.split_flags(forwarded)
        clash = [g[0] for g in groups if g[0] in fixed]
        bad = run_pipeline.unknown_flags([g for g in groups if g[0] not in pipeline_flags],
                                         cfg.algos)
    except run_pipeline.FlagError as err:
        raise SystemExit(f"sweep.py: error: {err}") from err
    if clash:
        raise SystemExit(f"sweep.py: error: {clash} are set by the grid; use --tasks, --algos, "
                         "--variants, --seeds and --log_dir")
    if bad:
        raise SystemExit(f"sweep.py: error: {bad} are options of no stage of {list(cfg.algos)}")


def parse_args(argv: Sequence[str]) -> tuple[SweepConfig, list[str]]:
    """Split `argv` into this script's options and the flags passed on to every trial."""
    import run_pipeline

    own_flags = {f"--{name}" for name in SweepConfig.__dataclass_fields__} | {"-h", "--help"}
    own: list[str] = []
    forwarded: list[str] = []
    for group in run_pipeline.split_flags(argv):
        (own if group[0] in own_flags else forwarded).extend(group)
    cfg = parse_config(SweepConfig, own)
    _check_flags(cfg, forwarded)
    return cfg, forwarded


def run_sweep(cfg: SweepConfig, forwarded: Sequence[str]) -> Any:
    """Start or resume the Tune experiment of `cfg`; returns Tune's `ResultGrid`."""
    try:
        ray, tune = import_extra("ray", "ray"), import_extra("ray.tune", "ray")
    except MissingExtraError as exc:
        raise SystemExit(f"sweep.py: error: {exc}") from exc

    log_dir = Path(cfg.log_dir).resolve()
    storage = Path(cfg.storage_path).resolve() if cfg.storage_path else log_dir / "ray_results"
    experiment = storage / cfg.name
    argv = list(forwarded)
    if "--progress" not in argv:
        argv += ["--progress", "False"]
    if "--threads" not in argv:
        argv += ["--threads", str(max(1, int(cfg.cpus_per_trial)))]
    grid = {"tasks": list(cfg.tasks), "algos": list(cfg.algos), "variants": list(cfg.variants),
            "seeds": list(cfg.seeds), "log_dir": str(log_dir), "argv": argv}

    saved = experiment / GRID_FILE
    if saved.is_file() and json.loads(saved.read_text()) != grid:
        raise SystemExit(
            f"sweep.py: error: the experiment {experiment} was started with another grid or "
            f"other flags ({saved.read_text().strip()}); give a new --name (finished policy runs "
            "are still skipped and artifacts reused)")
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cfg.address:
        ray.init(address=cfg.address, runtime_env=runtime_env, log_to_driver=cfg.verbose)
    else:
        _local_auth_token(storage)
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=cfg.verbose)
    try:
        trainable = tune.with_resources(pipeline_trial,
                                        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
        if tune.Tuner.can_restore(str(experiment)):
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                       resume_unfinished=True, resume_errored=True)
        else:
            param_space = {"point": tune.grid_search(grid_points(cfg)), "log_dir": str(log_dir),
                           "argv": argv}
            tuner = tune.Tuner(
                trainable, param_space=param_space,
                tune_config=tune.TuneConfig(max_concurrent_trials=cfg.max_concurrent_trials,
                                            trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name=cfg.name, storage_path=str(storage), verbose=1 if cfg.verbose else 0,
                    failure_config=tune.FailureConfig(max_failures=cfg.max_failures)))
            experiment.mkdir(parents=True, exist_ok=True)
            (experiment / GRID_FILE).write_text(json.dumps(grid, indent=2))
        return tuner.fit()
    finally:
        ray.shutdown()


def report(results: Any) -> list[dict[str, Any]]:
    """One row per trial: grid point, status (`finished`, `error`, `unfinished`), score, policy run."""
    rows = []
    for result in results:
        c, m = flat_config(result.config or {}), result.metrics or {}
        status = ("error" if result.error is not None
                  else "finished" if "policy_action" in m else "unfinished")
        rows.append({"task": c.get("task"), "algo": c.get("algo"), "variant": c.get("variant"),
                     "seed": c.get("seed"), "status": status,
                     "error": None if result.error is None else str(result.error),
                     "last_10_performance": m.get("last_10_performance"),
                     "policy_action": m.get("policy_action"), "policy_run": m.get("policy_run")})
    return sorted(rows, key=lambda r: (str(r["task"]), str(r["algo"]), str(r["variant"]),
                                       int(r["seed"] if r["seed"] is not None else -1)))


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns `report(results)`.

    From the command line the exit status is 1 when a trial failed or the sweep was
    interrupted (run the same command again to resume it).
    """
    cfg, forwarded = parse_args(sys.argv[1:] if argv is None else argv)
    rows = report(run_sweep(cfg, forwarded))
    for row in rows:
        print(json.dumps(row))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "unfinished", "error")}
    print(json.dumps({"sweep": asdict(cfg), "trials": len(rows), **counts}))
    if counts["unfinished"] or counts["error"]:
        print("run the same command again to resume the unfinished and failed trials",
              file=sys.stderr)
        if argv is None:
            sys.exit(1)
    return rows


if __name__ == "__main__":
    run_main(main)
