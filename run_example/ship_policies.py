"""Copy the behaviour policies of a finished make_dataset.py run into the package, with provenance.

    python run_example/ship_policies.py --run ~/.cocoa/replica/logs/replica-hopper/online_sac/seed_0_<time>

For maintainers: the shipped policies (`offlinerlkit/replica/policies/<robot>/`) are what
`make_dataset.py --policies shipped` samples from. Each `.pt` file is plain weights
(`torch.load(weights_only=True)`); its `info` and the robot's `provenance.json` hold the command,
seed, SAC steps, code commit, simulator versions, SAC options and the deterministic evaluation
(raw and D4RL-normalised return, episodes) that make_dataset.py recorded. Nothing is re-trained.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import make_dataset

from offlinerlkit.datasets.replica import POLICY_LEVELS, replica_policy_path
from offlinerlkit.replica import BehaviourPolicy
from offlinerlkit.replica.from_policies import SHIPPED_ROOT
from offlinerlkit.utils.cli import config_from_dict, opt, run_main
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.run_record import read_hyper_params
from offlinerlkit.utils.tasks import normalized_score


@dataclass(frozen=True)
class ShipConfig:
    """Ship the behaviour policies of one make_dataset.py run."""

    run: str = opt(help="the SAC run folder of make_dataset.py (it prints it when it starts)")
    code_commit: Optional[str] = opt(None, "the commit the run used, when its record lacks it")
    dest: str = opt(str(SHIPPED_ROOT), "the folder that gets policies/<robot>/")
    overwrite: bool = opt(False, "replace policies already shipped for this robot")


def command_line(cfg: make_dataset.MakeDatasetConfig) -> str:
    """The make_dataset.py command of `cfg`: the options that differ from the defaults."""
    default = make_dataset.MakeDatasetConfig(robot=cfg.robot, task=cfg.task)
    parts = ["python run_example/make_dataset.py"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("robot", "task") and value is not None or value != getattr(default, f.name):
            text = " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
            parts.append(f"--{f.name} {text}")
    return " ".join(parts)


def main(cfg: ShipConfig) -> Path:
    """Copy the policies; returns the robot's shipped folder."""
    record = read_hyper_params(cfg.run, required=True) or {}
    run_cfg = config_from_dict(make_dataset.MakeDatasetConfig, record["config"])
    robot = run_cfg.resolved_robot
    assert robot is not None
    commit = record.get("code_commit") or cfg.code_commit
    if not commit:
        raise ValueError(f"{cfg.run} does not record its code commit: give --code_commit")
    source = Path(record.get("out_dir") or run_cfg.out_dir or "").expanduser()
    options = run_cfg.train_options()
    common: dict[str, Any] = {
        "command": command_line(run_cfg), "code_commit": str(commit),
        "versions": record.get("versions", {}), "train_steps": run_cfg.train_steps,
        "seed": run_cfg.seed, "sac_options": options.as_metadata(),
        "run_folder": Path(cfg.run).name,
        "protocol": "D4RL (shared/spec/DATA.md) in gymnasium -v4: expert = SAC after "
                    "train_steps, medium = the snapshot closest to 1/3 of the expert's return, "
                    "random = the untrained actor",
    }
    dest = Path(cfg.dest) / "policies" / robot
    if dest.exists() and any(dest.iterdir()) and not cfg.overwrite:
        raise FileExistsError(f"{dest} already holds shipped policies; pass --overwrite")
    levels: dict[str, dict[str, Any]] = {}
    for level in POLICY_LEVELS:
        policy = BehaviourPolicy.load(replica_policy_path(source, robot, level))
        ret = float(policy.info["eval_return"])
        policy.info.update(
            eval_return_normalized=normalized_score(robot, ret),
            eval_episodes=int(policy.info.get("eval_episodes", run_cfg.final_eval_episodes)),
            train_step=int(policy.info.get("train_step", 0)), seed=run_cfg.seed,
            command=common["command"], code_commit=common["code_commit"],
            sac_options=json.dumps(common["sac_options"]),
            **{f"version_{k}": str(v) for k, v in common["versions"].items()})
        policy.save(replica_policy_path(Path(cfg.dest), robot, level), overwrite=True)
        levels[level] = {k: policy.info[k] for k in ("eval_return", "eval_return_normalized",
                                                      "eval_episodes", "train_step", "seed")}
    text = json.dumps({"robot": robot, **common, "levels": levels}, indent=2) + "\n"
    atomic_write(dest / "provenance.json", lambda f: f.write(text), text=True)
    print(text)
    return dest


if __name__ == "__main__":
    run_main(main, ShipConfig)
