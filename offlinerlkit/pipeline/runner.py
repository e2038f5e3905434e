"""The stage runner: forward dynamics, the anchor seeker and a policy, in order, reusing artifacts.

One pipeline is one (task, algorithm, seed, variant). The caller (`run_example/run_pipeline.py`)
builds each stage's config object and passes the stage scripts' `main` functions, so this module
never imports `run_example`. The runner

1. finds, resumes (a stopped run with this configuration) or trains the forward dynamics, when the policy needs them (model-based algorithms
   always, e.g. MOPO and MOBILE; model-free ones only with COCOA, for the anchor rollouts);
2. likewise the anchor seeker, with COCOA;
3. fills `load_dynamics_path` / `load_anchor_seeker_path` of the policy config with those
   artifacts' `model/` folders (absolute paths, so the policy run's configuration does not
   depend on how `log_dir` was spelled or on the working directory), then skips the policy run when a finished one with this exact
   configuration exists, resumes an unfinished one from its newest checkpoint (`resume=<run>`),
   or starts a new one;
4. writes `record/pipeline.json` in the policy run: which dynamics and seeker runs it used,
   whether each was reused, and what was done to the policy run (with a history of attempts).

Reuse rules are in `offlinerlkit.pipeline.artifacts`. Each stage runs under a file lock keyed
by its configuration, so concurrent pipelines (sweep trials) needing the same artifact train it
once. Whether the dynamics and seeker are shared across policy seeds is the caller's choice:
it is the `seed` of their config objects (`artifact_seed_for`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.config import CommonConfig
from offlinerlkit.pipeline.artifacts import (
    ANCHOR_SEEKER,
    FORWARD_DYNAMICS,
    POLICY,
    ArtifactKind,
    config_digest,
    find_artifact,
    find_policy_run,
    match_fields,
    run_lock,
)
from offlinerlkit.utils.fileio import atomic_write

log = logging.getLogger(__name__)

__all__ = [
    "ALGOS",
    "PIPELINE_FILE",
    "VARIANTS",
    "ArtifactSeeds",
    "PipelinePlan",
    "PipelineResult",
    "PlannedWork",
    "StageOutcome",
    "StageSpec",
    "artifact_seed_for",
    "dataset_description",
    "needs_dynamics",
    "needs_seeker",
    "planned_work",
    "run_pipeline",
]

#: The algorithms the pipeline drives: every registered one (`offlinerlkit.algorithms`); those
#: without a COCOA variant (BC) run `alone` only.
ALGOS = tuple(ALGORITHMS)
#: `alone`: the plain algorithm; `cocoa`: with COCOA's anchor seeker and anchor + delta networks.
VARIANTS = ("alone", "cocoa")
#: File written in the policy run's `record/` folder.
PIPELINE_FILE = "pipeline.json"

ArtifactSeeds = Literal["shared", "per_seed"]
Action = Literal["trained", "reused", "resumed", "skipped"]


def needs_dynamics(algo: str, variant: str) -> bool:
    """Whether the policy stage needs forward dynamics (model-based, or COCOA's anchors)."""
    _check(algo, variant)
    return ALGORITHMS[algo].model_based or variant == "cocoa"


def needs_seeker(algo: str, variant: str) -> bool:
    """Whether the policy stage needs an anchor seeker (COCOA)."""
    _check(algo, variant)
    return variant == "cocoa"


def artifact_seed_for(policy_seed: int, *, artifact_seeds: ArtifactSeeds, shared_seed: int = 0
                      ) -> int:
    """The seed the dynamics and seeker of a policy seed are trained with.

    `shared` (the default of the driver): one dynamics and one seeker per task, trained with
    `shared_seed` and used by every policy seed, as the paper's README does. `per_seed`: each
    policy seed gets its own, trained with the policy's seed.
    """
    if artifact_seeds == "shared":
        return shared_seed
    if artifact_seeds == "per_seed":
        return policy_seed
    raise ValueError(f"artifact_seeds must be 'shared' or 'per_seed', got {artifact_seeds!r}")


def _check(algo: str, variant: str) -> None:
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {list(ALGOS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
    if variant == "cocoa" and not ALGORITHMS[algo].has_cocoa:
        raise ValueError(f"{algo} has no COCOA variant; run it with variant 'alone'")


def dataset_description(task: str, dataset_path: Optional[str]) -> str:
    """The `dataset_source` a run of `task` would record now (the data is found, not read)."""
    from offlinerlkit.datasets import find_dataset

    return find_dataset(task, dataset_path=dataset_path).description


@dataclass(frozen=True)
class StageSpec:
    """One stage: its script's config object and the function that runs it.

    Attributes:
        config: a frozen config dataclass (`DynamicsRunConfig`, `AnchorSeekerConfig`,
            `CQLConfig`, ...); it needs the fields `task`, `dataset_path` and `log_dir`, and
            policy configs also `epoch`, `resume`, `load_dynamics_path`,
            `load_anchor_seeker_path`.
        main: the script's `main(config) -> run directory`.
    """

    config: Any
    main: Callable[[Any], Path]


@dataclass(frozen=True)
class PipelinePlan:
    """What to run for one (task, algorithm, seed, variant).

    Attributes:
        algo: `cql`, `iql`, `mopo` or `mobile`.
        variant: `alone` or `cocoa`.
        policy: the policy stage (its `load_*_path` fields are filled in by the runner).
        dynamics: the forward-dynamics stage (required when `needs_dynamics`).
        anchor_seeker: the anchor-seeker stage (required when `needs_seeker`).
        artifact_seeds: recorded only (the seeds are already in the stage configs).
    """

    algo: str
    variant: str
    policy: StageSpec
    dynamics: Optional[StageSpec] = None
    anchor_seeker: Optional[StageSpec] = None
    artifact_seeds: str = "shared"

    def __post_init__(self) -> None:
        if needs_dynamics(self.algo, self.variant) and self.dynamics is None:
            raise ValueError(f"{self.algo} ({self.variant}) needs forward dynamics: give a "
                             "dynamics stage")
        if needs_seeker(self.algo, self.variant) and self.anchor_seeker is None:
            raise ValueError(f"{self.algo} with COCOA needs an anchor seeker: give its stage")
        tasks = {s.config.task for s in (self.policy, self.dynamics, self.anchor_seeker) if s}
        if len(tasks) != 1:
            raise ValueError(f"all stages must have the same task, got {sorted(tasks)}")


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage.

    Attributes:
        run: the run directory used.
        action: `trained` (new run), `reused` (an existing artifact), `resumed` (a stopped run
            continued: a policy from its checkpoint, dynamics or a seeker from their saved fit
            state and finished steps) or `skipped` (a finished policy run).
    """

    run: Path
    action: Action

    def to_dict(self) -> dict[str, str]:
        return {"run": str(self.run), "action": self.action}


@dataclass(frozen=True)
class PipelineResult:
    """The runs one pipeline used or made."""

    policy: StageOutcome
    dynamics: Optional[StageOutcome] = None
    anchor_seeker: Optional[StageOutcome] = None

    def to_dict(self) -> dict[str, Any]:
        return {name: (getattr(self, name).to_dict() if getattr(self, name) else None)
                for name in ("dynamics", "anchor_seeker", "policy")}


def _artifact(stage: StageSpec, kind: ArtifactKind, source: str) -> StageOutcome:
    cfg = stage.config
    fields = match_fields(cfg, kind)
    with run_lock(cfg.log_dir, f"{kind.name}-{config_digest(kind, fields, source)}"):
        found = find_artifact(cfg.log_dir, kind, cfg, dataset_source=source)
        if found is not None:
            log.info("%s: reusing %s", kind.name, found)
            return StageOutcome(found, "reused")
        stopped = find_artifact(cfg.log_dir, kind, cfg, dataset_source=source, finished=False)
        if stopped is not None:
            log.info("%s: resuming the stopped run %s", kind.name, stopped)
            return StageOutcome(Path(stage.main(dataclasses.replace(cfg, resume=str(stopped)))),
                                "resumed")
        log.info("%s: no finished run with this configuration; training one", kind.name)
        return StageOutcome(Path(stage.main(cfg)), "trained")


def _write_record(plan: PipelinePlan, result: PipelineResult, epochs: int) -> None:
    path = result.policy.run / "record" / PIPELINE_FILE
    history: list[Any] = []
    if path.is_file():
        try:
            history = list(json.loads(path.read_text()).get("history", []))
        except (OSError, json.JSONDecodeError, AttributeError):
            history = []
    history.append({"time": datetime.now().isoformat(timespec="seconds"), "epochs": epochs,
                    **{stage: (o.to_dict() if o else None) for stage, o in (
                        ("dynamics", result.dynamics), ("anchor_seeker", result.anchor_seeker),
                        ("policy", result.policy))}})
    cfg = plan.policy.config
    record = {"format": "cocoa-rl/pipeline", "format_version": 1,
              "task": cfg.task, "algo": plan.algo, "variant": plan.variant, "seed": cfg.seed,
              "artifact_seeds": plan.artifact_seeds, "epochs": epochs,
              **result.to_dict(), "history": history}
    atomic_write(path, lambda f: json.dump(record, f, indent=2), text=True)


def _policy_config(plan: PipelinePlan, dynamics: Optional[Path], seeker: Optional[Path]) -> Any:
    """The policy config with the artifacts' `model/` folders filled in (absolute paths)."""
    cfg = plan.policy.config
    if dynamics is not None:
        cfg = dataclasses.replace(cfg, load_dynamics_path=str((dynamics / "model").resolve()))
    if seeker is not None:
        cfg = dataclasses.replace(cfg, load_anchor_seeker_path=str((seeker / "model").resolve()))
    return cfg


def run_pipeline(plan: PipelinePlan, *,
                 describe_source: Callable[[str, Optional[str]], str] = dataset_description
                 ) -> PipelineResult:
    """Run (or reuse) every stage of `plan`; returns the runs used.

    Args:
        plan: the stages and their configs.
        describe_source: `(task, dataset_path) -> dataset_source` the data would be recorded
            with (default: where `find_dataset` finds it now); artifacts are reused only when
            their recorded source is the same.

    Returns:
        The dynamics, seeker and policy runs and what was done to each.
    """
    sources: dict[tuple[str, Optional[str]], str] = {}

    def source_of(cfg: CommonConfig) -> str:
        key = (cfg.task, cfg.dataset_path)
        if key not in sources:
            sources[key] = describe_source(*key)
        return sources[key]

    dynamics = seeker = None
    if needs_dynamics(plan.algo, plan.variant):
        assert plan.dynamics is not None
        dynamics = _artifact(plan.dynamics, FORWARD_DYNAMICS, source_of(plan.dynamics.config))
    if needs_seeker(plan.algo, plan.variant):
        assert plan.anchor_seeker is not None
        seeker = _artifact(plan.anchor_seeker, ANCHOR_SEEKER, source_of(plan.anchor_seeker.config))
    policy_cfg = _policy_config(plan, None if dynamics is None else dynamics.run,
                                None if seeker is None else seeker.run)

    source = source_of(policy_cfg)
    epochs = int(policy_cfg.epoch)
    fields = match_fields(policy_cfg, POLICY)
    with run_lock(policy_cfg.log_dir, f"policy-{config_digest(POLICY, fields, source)}"):
        state = find_policy_run(policy_cfg.log_dir, policy_cfg, epochs=epochs,
                                dataset_source=source)
        if state is not None and state.finished:
            log.info("policy: %s already finished %d epochs; skipped", state.run, epochs)
            outcome = StageOutcome(state.run, "skipped")
        elif state is not None:
            log.info("policy: resuming %s after epoch %d of %d", state.run, state.completed,
                     epochs)
            run = plan.policy.main(dataclasses.replace(policy_cfg, resume=str(state.run)))
            outcome = StageOutcome(Path(run), "resumed")
        else:
            outcome = StageOutcome(Path(plan.policy.main(policy_cfg)), "trained")
        result = PipelineResult(policy=outcome, dynamics=dynamics, anchor_seeker=seeker)
        _write_record(plan, result, epochs)
    return result


@dataclass(frozen=True)
class PlannedWork:
    """What `run_pipeline(plan)` would do now (`planned_work`); nothing is trained or locked.

    Attributes:
        dynamics: `reuse` (a finished artifact with this configuration exists), `resume` (a
            stopped one does), `train`, or None (not needed).
        anchor_seeker: the same for the anchor seeker.
        policy: `skip` (finished), `resume` (an unfinished run) or `train` (a new run: also
            whenever an artifact before it is still to be trained or resumed).
        completed_epochs: epochs done by the run to skip or resume (0 for `train`).
        policy_run: that run (None for `train`).
    """

    dynamics: Optional[str]
    anchor_seeker: Optional[str]
    policy: str
    completed_epochs: int = 0
    policy_run: Optional[Path] = None


def planned_work(plan: PipelinePlan, *,
                 describe_source: Callable[[str, Optional[str]], str] = dataset_description
                 ) -> PlannedWork:
    """Look up, as `run_pipeline` does, which stages of `plan` exist already.

    The lookups are `run_pipeline`'s own (`find_artifact`, `find_policy_run` with the same
    policy configuration), so a `skip` here is a skip there, provided nothing changes the log
    folder in between.
    """
    actions: dict[str, Optional[str]] = {"dynamics": None, "anchor_seeker": None}
    found: dict[str, Optional[Path]] = {"dynamics": None, "anchor_seeker": None}
    for name, stage, kind, needed in (
            ("dynamics", plan.dynamics, FORWARD_DYNAMICS, needs_dynamics(plan.algo, plan.variant)),
            ("anchor_seeker", plan.anchor_seeker, ANCHOR_SEEKER,
             needs_seeker(plan.algo, plan.variant))):
        if not needed or stage is None:
            continue
        cfg = stage.config
        source = describe_source(cfg.task, cfg.dataset_path)
        found[name] = find_artifact(cfg.log_dir, kind, cfg, dataset_source=source)
        if found[name] is not None:
            actions[name] = "reuse"
        elif find_artifact(cfg.log_dir, kind, cfg, dataset_source=source, finished=False):
            actions[name] = "resume"
        else:
            actions[name] = "train"
    policy_cfg = _policy_config(plan, found["dynamics"], found["anchor_seeker"])
    if {"train", "resume"} & set(actions.values()):
        return PlannedWork(actions["dynamics"], actions["anchor_seeker"], "train")
    state = find_policy_run(policy_cfg.log_dir, policy_cfg, epochs=int(policy_cfg.epoch),
                            dataset_source=describe_source(policy_cfg.task, policy_cfg.dataset_path))
    if state is None:
        return PlannedWork(actions["dynamics"], actions["anchor_seeker"], "train")
    return PlannedWork(actions["dynamics"], actions["anchor_seeker"],
                       "skip" if state.finished else "resume", state.completed, state.run)
