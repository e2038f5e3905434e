"""Reading finished (or running) policy runs back from their run folders.

A policy run is a run directory with `record/hyper_param.json` (no `stage` key: dynamics and
seeker runs have one) whose configuration trains a policy offline on a task (`task` and `epoch`
fields; the replica maker's online SAC run counts `train_steps` instead and is not one), and
`record/policy_training_progress.csv`. What is read:

* algorithm and variant: from `record/pipeline.json` when the pipeline made the run, else from
  the config's algorithm-specific fields (`cql_weight` -> CQL, `expectile` -> IQL,
  `uncertainty_mode` -> MOPO, `num_q_ensemble` -> MOBILE) or the folder name (`bc`, ...), and
  from the `cocoa` record (`alone`; `cocoa` for seeker anchors; `closest_delta` for the ablation);
* the task (`config.task`) and its paper key (`hopper-medium`: version and `replica:` dropped);
* the data source (`dataset_source`), classified by `data_kind`;
* the learning curve: `timestep` (gradient steps) and `eval/normalized_episode_reward` per
  epoch, and the final `eval/last_10_performance` (the paper's reported number).

A resumed run appends to its CSV from its last checkpoint, so an epoch may appear twice; the last
row of each timestep is kept.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from offlinerlkit.algorithms import ALGORITHMS
from offlinerlkit.pipeline.artifacts import IN_MEMORY_SOURCE, read_record
from offlinerlkit.presets import task_key
from offlinerlkit.utils.minari_task import is_minari_task
from offlinerlkit.utils.run_record import HYPER_PARAM_FILE
from offlinerlkit.utils.tasks import REPLICA_PREFIX

log = logging.getLogger(__name__)

__all__ = [
    "LAST_10_KEY",
    "SCORE_KEY",
    "PolicyRun",
    "data_kind",
    "find_policy_runs",
    "load_policy_run",
    "one_run_per_seed",
    "paper_task_key",
    "read_progress",
]

SCORE_KEY = "eval/normalized_episode_reward"
LAST_10_KEY = "eval/last_10_performance"
PROGRESS_FILE = "policy_training_progress.csv"

_FOLDER_ALGO = re.compile(r"^(?P<algo>[a-z0-9]+?)(?:_cocoa)?(?:_|$)")


def data_kind(source: Optional[str], task: str = "", score_source: Optional[str] = None) -> str:
    """Classify a run's data: `d4rl`, `replica`, `minari`, `minari-d4rl`, `memory` or `unknown`.

    Args:
        source: the recorded `dataset_source` line. D4RL-format files (found through
            `--dataset_path`, `$D4RL_DATASET_DIR`, `~/.d4rl/datasets` or the d4rl package)
            are `d4rl`; locally made replica files say `replica` in their source line.
        task: the configured task; a `replica:` task is `replica` whatever the line says.
        score_source: the recorded `task_info.score_source`; a Minari dataset scored with
            D4RL's reference returns (it has none of its own) is `minari-d4rl`.
    """
    if task.strip().lower().startswith(REPLICA_PREFIX):
        return "replica"
    if not source:
        return "unknown"
    text = source.lower()
    if source == IN_MEMORY_SOURCE:
        return "memory"
    if "replica" in text:
        return "replica"
    if text.startswith("minari"):
        return "minari-d4rl" if score_source == "d4rl" else "minari"
    return "d4rl"


def paper_task_key(task: str) -> str:
    """`hopper-medium-replay-v2` or `replica:hopper-medium-replay-v2` -> `hopper-medium-replay`.

    A Minari task keeps its whole name, id and version (`minari:mujoco/hopper/medium-v0`): its
    data is not the paper's.
    """
    name = task.strip()
    if is_minari_task(name):
        return name
    if name.lower().startswith(REPLICA_PREFIX):
        name = name[len(REPLICA_PREFIX):]
    return task_key(name)


def read_progress(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a progress CSV as float arrays, one row per timestep, sorted by timestep.

    Empty cells become NaN; when a timestep occurs more than once (a resumed run), the last row
    wins.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_step: dict[float, dict[str, str]] = {}
    for row in rows:
        step = _to_float(row.get("timestep"))
        if not math.isnan(step):
            by_step[step] = row
    steps = sorted(by_step)
    keys = list(rows[0].keys()) if rows else ["timestep"]
    return {k: np.array([_to_float(by_step[s].get(k)) for s in steps], dtype=np.float64)
            for k in keys}


def _to_float(text: Optional[str]) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class PolicyRun:
    """One policy run as a result.

    Attributes:
        path: the run directory.
        task: the task as configured (`hopper-medium-v2`, `replica:hopper-medium-v2`).
        task_key: the paper's row name (`hopper-medium`).
        algo: `cql`, `iql`, `mopo`, `mobile` (or another script's name, e.g. `bc`).
        variant: `alone`, `cocoa` or `closest_delta`.
        seed: the run's seed.
        dataset_source: the recorded source line.
        data_kind: `d4rl`, `replica`, `minari`, `minari-d4rl`, `memory` or `unknown`.
        epochs: evaluated epochs in the progress file.
        target_epochs: epochs the run was configured for.
        finished: `model/policy.pth` exists (training reached its last epoch).
        timesteps: gradient steps at each evaluation.
        scores: normalised score at each evaluation.
        last_10: the final `eval/last_10_performance` (NaN if never evaluated).
        mtime: modification time of the progress file (newest run wins among duplicates).
    """

    path: Path
    task: str
    task_key: str
    algo: str
    variant: str
    seed: int
    dataset_source: str
    data_kind: str
    epochs: int
    target_epochs: int
    finished: bool
    timesteps: np.ndarray
    scores: np.ndarray
    last_10: float
    mtime: float


def _algo_of(run: Path, config: dict, pipeline: dict) -> Optional[str]:
    if pipeline.get("algo"):
        return str(pipeline["algo"])
    for entry in ALGORITHMS.values():
        if entry.signature is not None and entry.signature in config:
            return entry.name
    match = _FOLDER_ALGO.match(run.parent.name)
    return match.group("algo") if match else None


def _variant_of(record: dict) -> str:
    cocoa = record.get("cocoa")
    if not isinstance(cocoa, dict) or not cocoa.get("cocoa"):
        return "alone"
    return "cocoa" if cocoa.get("anchor_mode", "rollout") == "rollout" else "closest_delta"


def load_policy_run(run: str | Path) -> Optional[PolicyRun]:
    """Read one run directory; None when it is not an offline policy run with a progress file."""
    run = Path(run)
    record = read_record(run)
    progress = run / "record" / PROGRESS_FILE
    if record is None or "stage" in record or not progress.is_file():
        return None
    config = record["config"]
    if not (config.get("task") and "epoch" in config):
        return None  # not an offline policy run (e.g. the replica maker's online SAC run)
    pipeline: dict = {}
    pipeline_file = run / "record" / "pipeline.json"
    if pipeline_file.is_file():
        try:
            pipeline = json.loads(pipeline_file.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("%s is not valid JSON; ignored", pipeline_file)
    algo = _algo_of(run, config, pipeline)
    if algo is None:
        log.warning("%s: cannot tell the algorithm; skipped", run)
        return None
    columns = read_progress(progress)
    steps = columns.get("timestep", np.zeros(0))
    scores = columns.get(SCORE_KEY, np.full(len(steps), np.nan))
    evaluated = ~np.isnan(scores)
    last_10 = columns.get(LAST_10_KEY, np.full(len(steps), np.nan))
    finite = last_10[~np.isnan(last_10)]
    return PolicyRun(
        path=run, task=str(config.get("task", "")), task_key=paper_task_key(str(config.get("task", ""))),
        algo=algo, variant=str(pipeline.get("variant") or _variant_of(record)),
        seed=int(config.get("seed", 0)), dataset_source=str(record.get("dataset_source", "")),
        data_kind=data_kind(record.get("dataset_source"), str(config.get("task", "")),
                            (record.get("task_info") or {}).get("score_source")),
        epochs=int(evaluated.sum()), target_epochs=int(config.get("epoch", 0)),
        finished=(run / "model" / "policy.pth").is_file(),
        timesteps=steps[evaluated], scores=scores[evaluated],
        last_10=float(finite[-1]) if finite.size else math.nan, mtime=progress.stat().st_mtime)


def find_policy_runs(roots: Iterable[str | Path]) -> list[PolicyRun]:
    """Every policy run below the given folders (log roots, task folders or run folders)."""
    runs: list[PolicyRun] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        for record in sorted(root.rglob(HYPER_PARAM_FILE.name)):
            run = record.parent.parent
            if record.parent.name != HYPER_PARAM_FILE.parent.name or run.resolve() in seen:
                continue
            seen.add(run.resolve())
            loaded = load_policy_run(run)
            if loaded is not None:
                runs.append(loaded)
    return runs


def one_run_per_seed(runs: Sequence[PolicyRun]) -> list[PolicyRun]:
    """Keep one run per (task, algo, variant, data kind, seed).

    Preference: finished runs, then more evaluated epochs, then the newest progress file.
    """
    best: dict[tuple[str, str, str, str, int], PolicyRun] = {}
    for run in runs:
        key = (run.task_key, run.algo, run.variant, run.data_kind, run.seed)
        rank = (run.finished, run.epochs, run.mtime)
        if key not in best or rank > (best[key].finished, best[key].epochs, best[key].mtime):
            best[key] = run
    return list(best.values())
