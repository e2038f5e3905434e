"""Per-task hyper-parameters, with where each value comes from.

Scripts apply these when the user did not give the flag (the config field is None); the values
used are recorded in `hyper_param.json`. Only values that are published are listed; every other
task uses the algorithm's default, which is not task-tuned.

Sources:
* `cocoa-repo`: the "suggested hypers" in the docstring of the original COCOA `run_mopo.py`
  (and `run_anchor_seeker.py`), COCOA spec 9.7.
* `mopo-paper-via-d3rlpy`: the MOPO paper's values for the random tasks, as d3rlpy lists them.
* `mobile-paper`: the MOBILE paper's per-task values (shared/spec/DATA.md).
* `cocoa-readme`: the commands of the original COCOA README.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from offlinerlkit.utils.tasks import REPLICA_PREFIX

#: Version of this table; bump it whenever a value changes, so result tables can say which
#: presets a run used.
PRESETS_VERSION = 1


@dataclass(frozen=True)
class Preset:
    """Hyper-parameter values for one algorithm on one task, and their source.

    Attributes:
        values: field name -> value.
        source: where the values are published (see the module docstring).
        task_tuned: whether the values were chosen for this task (False: one setting used for
            every task, e.g. CQL's, IQL's and the anchor seeker's).
    """

    values: Mapping[str, Any]
    source: str
    task_tuned: bool = True


def _table(source: str, rows: Mapping[str, tuple[Any, ...]], keys: tuple[str, ...]
           ) -> dict[str, Preset]:
    return {task: Preset(dict(zip(keys, row)), source) for task, row in rows.items()}


_MOPO_KEYS = ("rollout_length", "penalty_coef")
_MOBILE_KEYS = ("rollout_length", "penalty_coef")

MOPO: dict[str, Preset] = {
    **_table("cocoa-repo", {
        "halfcheetah-medium": (5, 0.5), "hopper-medium": (5, 5.0), "walker2d-medium": (5, 0.5),
        "halfcheetah-medium-replay": (5, 0.5), "hopper-medium-replay": (5, 2.5),
        "walker2d-medium-replay": (1, 2.5), "halfcheetah-medium-expert": (5, 2.5),
        "hopper-medium-expert": (5, 5.0), "walker2d-medium-expert": (1, 2.5),
    }, _MOPO_KEYS),
    **_table("mopo-paper-via-d3rlpy", {
        "halfcheetah-random": (5, 0.5), "hopper-random": (5, 1.0), "walker2d-random": (1, 1.0),
    }, _MOPO_KEYS),
}

MOBILE: dict[str, Preset] = _table("mobile-paper", {
    "halfcheetah-random": (5, 0.5), "hopper-random": (5, 5.0), "walker2d-random": (5, 2.0),
    "halfcheetah-medium": (5, 0.5), "walker2d-medium": (5, 0.5),
    "halfcheetah-medium-replay": (5, 0.1), "hopper-medium-replay": (5, 0.1),
    "walker2d-medium-replay": (1, 0.5), "halfcheetah-medium-expert": (5, 2.0),
    "hopper-medium-expert": (5, 1.5), "walker2d-medium-expert": (1, 1.5),
}, _MOBILE_KEYS)
MOBILE["hopper-medium"] = Preset({"rollout_length": 5, "penalty_coef": 1.5, "auto_alpha": False},
                                 "mobile-paper")

#: The same values for every D4RL MuJoCo task (not task-tuned; they equal the scripts' defaults).
CQL_ALL = Preset({"cql_weight": 5.0, "temperature": 1.0}, "cocoa-repo (all D4RL-Gym tasks)",
                 task_tuned=False)
IQL_ALL = Preset({"expectile": 0.7, "temperature": 3.0}, "cocoa-repo (all D4RL-Gym tasks)",
                 task_tuned=False)
ANCHOR_SEEKER_ALL = Preset({"rollout_length": 5, "scale_coef": 0.8, "noise_coef": 0.1},
                           "cocoa-readme (all tasks)", task_tuned=False)
#: COCOA's anchor horizon H of the README command, used for every task (not task-tuned; the
#: paper's per-task horizons, if any, are not published).
ANCHOR_HORIZON_ALL = Preset({"actor_horizon_len": 1, "critic_horizon_len": 1},
                            "cocoa-readme (all tasks)", task_tuned=False)

def task_key(task: str) -> str:
    """`hopper-medium-replay-v2` -> `hopper-medium-replay` (presets hold for every version).

    A locally made replica (`replica:hopper-medium-v2`) gets its D4RL task's values.
    """
    name = task.strip().lower()
    name = name[len(REPLICA_PREFIX):] if name.startswith(REPLICA_PREFIX) else name
    head, _, version = name.rpartition("-")
    return head if version.startswith("v") and version[1:].isdigit() else name


def preset_for(table: Mapping[str, Preset], task: str) -> Optional[Preset]:
    """The published preset of `task` in an algorithm's `table` (its registry entry's
    `presets`, `offlinerlkit.algorithms`), or None when the defaults apply."""
    return table.get(task_key(task))


def resolve(table: Mapping[str, Preset], task: str, given: Mapping[str, Any], defaults: Mapping[str, Any]
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """Fill the fields left as None in `given`: the task's preset in `table` first, then `defaults`.

    Returns the resolved values and, per field, where its value came from (`flag`, the preset's
    source, or `default (not task-tuned)`), for the run record.
    """
    preset = preset_for(table, task)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, default in defaults.items():
        if given.get(name) is not None:
            values[name], origin[name] = given[name], "flag"
        elif preset is not None and name in preset.values:
            values[name], origin[name] = preset.values[name], f"preset:{preset.source}"
        else:
            values[name], origin[name] = default, "default (not task-tuned)"
    return values, origin
