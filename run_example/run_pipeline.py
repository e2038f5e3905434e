"""One COCOA experiment end to end: forward dynamics, anchor seeker, policy (reusing what exists).

    python run_example/run_pipeline.py --task hopper-medium-v2 --algo cql --seed 0 --variant cocoa
    python run_example/run_pipeline.py --task hopper-medium-v2 --algo mopo --seed 1 --variant alone \
        --epoch 3000

Stages (COCOA spec 1.2): `run_dynamics.py` (forward), `run_anchor_seeker.py`, then the
algorithm's script (its registry entry, `offlinerlkit.algorithms`) with `--load_dynamics_path` /
`--load_anchor_seeker_path` set to those runs. A finished dynamics or seeker run with the same
configuration and data is reused; a finished policy run is skipped and an unfinished one resumed
from its checkpoint. The policy run's `record/pipeline.json` names the artifacts it used. See
docs/PIPELINE.md.

Options of this script: see `--help`. Every other flag goes to a stage script, spelled as that
script spells it:

* `--dynamics.<flag>`, `--seeker.<flag>`, `--policy.<flag>`: to that stage only;
* un-prefixed dynamics-ensemble flags (`--dynamics_hidden_dims`, `--num_ensemble`,
  `--num_elites`, `--dynamics_max_epochs`, ... except `--holdout_ratio`): to both the forward
  dynamics and the seeker's reverse dynamics;
* any other un-prefixed flag (`--epoch`, `--step_per_epoch`, `--hidden_dims`, ...): to the policy.

`--task`, `--seed`, `--dataset_path`, `--device`, `--threads`, `--log_dir` and `--progress` are
this script's and apply to every stage (dynamics and seeker get the artifact seed).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

import run_anchor_seeker
import run_dynamics

from offlinerlkit.algorithms import algorithm
from offlinerlkit.config import DynamicsOptions
from offlinerlkit.pipeline import (
    PipelinePlan,
    PipelineResult,
    StageSpec,
    artifact_seed_for,
    load_policy_run,
    needs_dynamics,
    needs_seeker,
    run_pipeline,
)
from offlinerlkit.pipeline.runner import ALGOS
from offlinerlkit.presets import ANCHOR_SEEKER_ALL
from offlinerlkit.utils.cli import build_parser, opt, parse_config, run_main


def policy_script(name: str) -> tuple[Any, type]:
    """`(main, config class)` of an algorithm's script, found through its registry entry."""
    entry = algorithm(name)
    module = importlib.import_module(entry.script)
    return module.main, getattr(module, entry.config)


#: The policy scripts of the algorithms the pipeline drives: algorithm -> (main, config class).
POLICY_SCRIPTS: dict[str, tuple[Any, type]] = {a: policy_script(a) for a in ALGOS}
STAGE_CONFIGS: dict[str, type] = {"dynamics": run_dynamics.DynamicsRunConfig,
                                  "seeker": run_anchor_seeker.AnchorSeekerConfig}
STAGE_SCRIPTS = {"dynamics": "run_dynamics.py", "seeker": "run_anchor_seeker.py",
                 **{a: f"{algorithm(a).script}.py" for a in POLICY_SCRIPTS}}
#: Un-prefixed flags that go to both dynamics ensembles (forward, and the seeker's reverse).
SHARED_MODEL_FLAGS = frozenset(f.name for f in dataclasses.fields(DynamicsOptions)) - {"holdout_ratio"}
PREFIXES = ("dynamics", "seeker", "policy")
_FLAG = re.compile(r"^--?[A-Za-z_][\w.-]*(=.*)?$")


@dataclass(frozen=True)
class PipelineConfig:
    """Run forward dynamics, the anchor seeker and a policy in order (docs/PIPELINE.md)."""

    task: str = opt("hopper-medium-v2", "D4RL task, e.g. hopper-medium-replay-v2")
    algo: Literal[ALGOS] = opt("cql", "policy algorithm")  # type: ignore[valid-type]
    seed: int = opt(0, "policy seed")
    variant: Literal["alone", "cocoa"] = opt("cocoa", "the algorithm alone, or with COCOA")
    artifact_seeds: Literal["shared", "per_seed"] = opt(
        "shared", "shared: one dynamics and one seeker per task (seed --artifact_seed) for every "
        "policy seed, as the paper's README; per_seed: trained with each policy seed")
    artifact_seed: int = opt(0, "seed of the shared dynamics and seeker")
    dataset_path: Optional[str] = opt(None, "explicit D4RL-format HDF5 file (or its folder)")
    log_dir: str = opt("log", "root folder of run directories (artifacts are looked up here)")
    device: str = opt("auto", "torch device for every stage")
    threads: Optional[int] = opt(None, "torch CPU threads for every stage")
    progress: bool = opt(True, "show progress bars")


class FlagError(ValueError):
    """A forwarded flag that no stage script has."""


def split_flags(argv: Sequence[str]) -> list[list[str]]:
    """`["--a", "1", "2", "--b=x"]` -> `[["--a", "1", "2"], ["--b", "x"]]` (values stay with flags)."""
    groups: list[list[str]] = []
    for token in argv:
        if _FLAG.match(token):
            name, eq, value = token.partition("=")
            groups.append([name] + ([value] if eq else []))
        elif groups:
            groups[-1].append(token)
        else:
            raise FlagError(f"unexpected argument {token!r}: values follow a --flag")
    return groups


def _flags_of(config_cls: type) -> set[str]:
    names = set()
    for f in dataclasses.fields(config_cls):
        names.add(f"--{f.name}")
        names.update(f.metadata.get("aliases", ()))
    return names


def route_flags(groups: Sequence[list[str]], algo: str, *, strict: bool = True
                ) -> dict[str, list[str]]:
    """Send each forwarded flag group to its stages (`dynamics`, `seeker`, `policy`).

    With `strict`, a flag the target stage does not have is an error; otherwise it is dropped
    (a sweep passes one flag set to every algorithm, e.g. `--rollout_batch_size` to CQL).
    """
    targets = {"dynamics": STAGE_CONFIGS["dynamics"], "seeker": STAGE_CONFIGS["seeker"],
               "policy": POLICY_SCRIPTS[algo][1]}
    own = _flags_of(PipelineConfig)
    out: dict[str, list[str]] = {k: [] for k in targets}
    for group in groups:
        flag, values = group[0], group[1:]
        prefix, dot, name = flag.lstrip("-").partition(".")
        if dot:
            if prefix not in PREFIXES:
                raise FlagError(f"{flag}: the prefix must be one of {', '.join(PREFIXES)}")
            stages, flag = [prefix], f"--{name}"
            if flag in own:
                raise FlagError(f"--{prefix}.{name}: --{name} is set for every stage by this "
                                "script; give it without a prefix")
        elif flag.lstrip("-") in SHARED_MODEL_FLAGS:
            stages = ["dynamics", "seeker"]
        else:
            stages = ["policy"]
        for stage in stages:
            if flag in _flags_of(targets[stage]):
                out[stage] += [flag, *values]
            elif strict:
                script = STAGE_SCRIPTS[algo if stage == "policy" else stage]
                raise FlagError(f"{group[0]} is not an option of the {stage} stage ({script}); "
                                f"see python run_example/{script} --help")
    return out


def unknown_flags(groups: Sequence[list[str]], algos: Sequence[str]) -> list[str]:
    """Flags that no stage of any of `algos` accepts (for checking a sweep's flags up front)."""
    bad = []
    for group in groups:
        routed = [route_flags([group], algo, strict=False) for algo in algos]
        if not any(any(r.values()) for r in routed):
            bad.append(group[0])
    return bad


def build_plan(cfg: PipelineConfig, forwarded: Sequence[str] = (), *, strict: bool = True
               ) -> PipelinePlan:
    """The stage configs for `cfg`, with the forwarded flags parsed by each stage's own CLI."""
    routed = route_flags(split_flags(forwarded), cfg.algo, strict=strict)
    artifact_seed = artifact_seed_for(cfg.seed, artifact_seeds=cfg.artifact_seeds,
                                      shared_seed=cfg.artifact_seed)

    def common(seed: int) -> list[str]:
        argv = ["--task", cfg.task, "--seed", str(seed), "--log_dir", cfg.log_dir,
                "--device", cfg.device, "--progress", str(cfg.progress)]
        if cfg.dataset_path is not None:
            argv += ["--dataset_path", cfg.dataset_path]
        if cfg.threads is not None:
            argv += ["--threads", str(cfg.threads)]
        return argv

    main, policy_cls = POLICY_SCRIPTS[cfg.algo]
    policy: Any = parse_config(policy_cls, common(cfg.seed) + routed["policy"])
    dynamics = seeker = None
    if needs_dynamics(cfg.algo, cfg.variant):
        dyn_cfg: Any = parse_config(
            STAGE_CONFIGS["dynamics"],
            common(artifact_seed) + routed["dynamics"] + ["--direction", "forward"])
        dynamics = StageSpec(dyn_cfg, run_dynamics.main)
    if needs_seeker(cfg.algo, cfg.variant):
        seeker_cfg: Any = parse_config(STAGE_CONFIGS["seeker"],
                                       common(artifact_seed) + routed["seeker"])
        # the presets' values made explicit, so seekers made by the README command are reused
        seeker_cfg = dataclasses.replace(seeker_cfg, **{
            k: ANCHOR_SEEKER_ALL.values[k] for k in ("scale_coef", "noise_coef")
            if getattr(seeker_cfg, k) is None})
        seeker = StageSpec(seeker_cfg, run_anchor_seeker.main)
    return PipelinePlan(algo=cfg.algo, variant=cfg.variant, policy=StageSpec(policy, main),
                        dynamics=dynamics, anchor_seeker=seeker,
                        artifact_seeds=cfg.artifact_seeds)


def parse_args(argv: Sequence[str]) -> tuple[PipelineConfig, list[str]]:
    """Split `argv` into this script's options and the flags forwarded to the stages."""
    own_flags = _flags_of(PipelineConfig) | {"-h", "--help"}
    own: list[str] = []
    forwarded: list[str] = []
    for group in split_flags(argv):
        (own if group[0] in own_flags else forwarded).extend(group)
    if "-h" in own or "--help" in own:
        parser = build_parser(PipelineConfig)
        parser.prog = "run_pipeline.py"
        parser.epilog = ("Other flags go to the stage scripts: --dynamics.<flag>, --seeker.<flag>, "
                         "--policy.<flag> for one stage; un-prefixed dynamics-ensemble flags to "
                         "both dynamics ensembles; any other un-prefixed flag to the policy script.")
        parser.print_help()
        sys.exit(0)
    return parse_config(PipelineConfig, own), forwarded


def run(argv: Sequence[str], *, strict: bool = True) -> PipelineResult:
    """Parse `argv` as the command line does and run the pipeline (used by sweep.py)."""
    cfg, forwarded = parse_args(argv)
    return run_pipeline(build_plan(cfg, forwarded, strict=strict))


def summary(result: PipelineResult) -> dict[str, Any]:
    """What was used and done, plus the policy run's final last-10 score."""
    out = result.to_dict()
    run_ = load_policy_run(result.policy.run)
    out["last_10_performance"] = None if run_ is None else run_.last_10
    return out


def main(argv: Optional[Sequence[str]] = None) -> PipelineResult:
    """Command-line entry point; returns what `run_pipeline` returns."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run(sys.argv[1:] if argv is None else argv)
    except FlagError as err:
        sys.exit(f"run_pipeline.py: error: {err}")
    print(json.dumps(summary(result), indent=2))
    return result


if __name__ == "__main__":
    run_main(main)
