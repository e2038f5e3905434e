"""Finding finished stage outputs (artifacts) in a log folder by their configuration.

An artifact is a run directory written by one of the stage scripts. The pipeline reuses one
instead of training again when its `record/hyper_param.json` says it was made with the same
stage configuration from the same data:

* the record's `stage` marker matches (`forward dynamics`, `anchor seeker`; policy runs have none);
* every configuration field that can change the artifact is equal (`match_fields`): all fields
  of the requested config except bookkeeping ones (`IGNORED_FIELDS`: device, threads, log
  folder, progress bars, W&B, checkpoint cadence, ...). Forward dynamics compare only the task,
  the seed and the `DynamicsOptions` fields, so dynamics trained by `run_dynamics.py`,
  `run_mopo.py` or `run_mobile.py` are interchangeable;
* the record's `dataset_source` equals the source the data would be read from now (`dataset_path`
  itself is not compared; data given in memory is never matched, as it cannot be checked);
* its final file exists in `model/` (a stopped run has none and is not reused).

Values are compared after a JSON round trip (tuples become lists), exactly as the record stores
them; a record's former field names are read as today's (`utils.fields.upgrade_saved`: e.g.
`tr_hidden_dims` is `fg_hidden_dims`), so renaming a field does not retrain anything. When several artifacts match, the newest run directory wins.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from offlinerlkit.config import CommonConfig, DynamicsOptions
from offlinerlkit.utils.fields import upgrade_saved
from offlinerlkit.utils.run_dir import safe_name
from offlinerlkit.utils.run_record import read_hyper_params

log = logging.getLogger(__name__)

__all__ = [
    "ANCHOR_SEEKER",
    "FORWARD_DYNAMICS",
    "IGNORED_FIELDS",
    "IN_MEMORY_SOURCE",
    "POLICY",
    "ArtifactKind",
    "PolicyRunState",
    "completed_epochs",
    "config_digest",
    "find_artifact",
    "find_policy_run",
    "match_fields",
    "read_record",
    "run_lock",
]

#: `dataset_source` of runs given their data in memory (tests); never matched.
IN_MEMORY_SOURCE = "given in memory"

#: Config fields that do not change what a run produces (or are compared another way:
#: `dataset_path` through `dataset_source`, a policy's `epoch` through its checkpoints).
IGNORED_FIELDS = frozenset({
    "device", "threads", "log_dir", "progress", "track", "wandb_project_name", "wandb_entity",
    "wandb_tags", "exp_name", "algo_name", "resume", "dataset_path", "checkpoint_freq",
    "keep_checkpoints", "rollout_chunk",
})

#: Options added after runs were first recorded, with the value that reproduces those runs: a
#: record without the field is compared as if it held this value, so upgrading the code does
#: not make the pipeline retrain everything.
ADDED_FIELD_DEFAULTS: Mapping[str, Any] = {
    "tf32": False, "bf16": False, "compile": False, "cuda_graphs": False, "anchor_cache": True,
    "accept_dataset_anomalies": False,
}

_POLICY_CHECKPOINT = re.compile(r"^policy_(\d{6,})\.pt$")


@dataclass(frozen=True)
class ArtifactKind:
    """What one kind of stage output looks like on disk.

    Attributes:
        name: `dynamics`, `anchor_seeker` or `policy` (used in records and lock names).
        stage: the record's `stage` value (None: a policy run, which has no `stage` key).
        model_file: the file in `model/` that exists once the run finished.
        fields: when set, only these config fields (plus task and seed) are compared;
            otherwise every requested field outside `IGNORED_FIELDS` and `extra_ignored`.
        extra_ignored: further fields that do not change this kind of artifact.
    """

    name: str
    stage: Optional[str]
    model_file: str
    fields: Optional[frozenset[str]] = None
    extra_ignored: frozenset[str] = frozenset()


#: Forward dynamics: `run_dynamics.py` (forward) or MOPO/MOBILE without `--load_dynamics_path`.
FORWARD_DYNAMICS = ArtifactKind(
    "dynamics", "forward dynamics", "dynamics.pth",
    fields=frozenset(f.name for f in dataclasses.fields(DynamicsOptions)) | {"task", "seed"})
#: The anchor seeker (`run_anchor_seeker.py`); the forward dynamics path it ignores is not compared.
ANCHOR_SEEKER = ArtifactKind("anchor_seeker", "anchor seeker", "anchor_seeker_pretrain.pth",
                             extra_ignored=frozenset({"load_dynamics_path"}))
#: A policy run (`run_{cql,iql,mopo,mobile}.py` with a policy to train).
POLICY = ArtifactKind("policy", None, "policy.pth", extra_ignored=frozenset({"epoch"}))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def match_fields(config: CommonConfig, kind: ArtifactKind) -> dict[str, Any]:
    """The fields of `config` (a config dataclass) that must be equal for `kind` to be reused.

    Returns:
        Field name -> value as JSON stores it (tuples as lists).
    """
    values = dataclasses.asdict(config)
    if kind.fields is not None:
        keep = {k: v for k, v in values.items() if k in kind.fields}
    else:
        skip = IGNORED_FIELDS | kind.extra_ignored
        keep = {k: v for k, v in values.items() if k not in skip}
    return _jsonable(keep)


def config_digest(kind: ArtifactKind, fields: Mapping[str, Any], dataset_source: str) -> str:
    """A short, stable hash of what identifies an artifact (for lock file names)."""
    text = json.dumps({"kind": kind.name, "fields": fields, "source": dataset_source},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(run: Path) -> Optional[dict[str, Any]]:
    """`record/hyper_param.json` of a run directory in this project's layout, else None.

    A missing file, a damaged one (logged) or the original code's flat layout give None.
    """
    try:
        data = read_hyper_params(run)
    except ValueError as err:
        log.warning("%s; run ignored", err)
        return None
    return data if data is not None and isinstance(data.get("config"), dict) else None


def _candidate_runs(log_dir: Path, task: str) -> list[Path]:
    """Run directories under `<log_dir>/<task>/*/`, newest first (by folder name, then mtime)."""
    task_dir = Path(log_dir) / safe_name(task)
    if not task_dir.is_dir():
        return []
    runs = [p for p in task_dir.glob("*/seed_*") if (p / "record").is_dir()]
    return sorted(runs, key=lambda p: (p.name.split("_", 2)[-1], p.stat().st_mtime), reverse=True)


def _matches(record: Mapping[str, Any], kind: ArtifactKind, fields: Mapping[str, Any],
             dataset_source: str, config_cls: type) -> bool:
    """Whether a run's record holds `fields` (its former field names read as today's)."""
    if record.get("stage") != kind.stage:
        return False
    source = record.get("dataset_source")
    if source != dataset_source or source == IN_MEMORY_SOURCE:
        return False
    saved = {**{k: v for k, v in ADDED_FIELD_DEFAULTS.items() if k in fields},
             **upgrade_saved(config_cls, record["config"])}
    if kind.stage is None:
        # policy runs: the same script, i.e. the same set of compared fields
        saved_keys = set(saved) - IGNORED_FIELDS - kind.extra_ignored
        if saved_keys != set(fields):
            return False
    return all(name in saved and saved[name] == value for name, value in fields.items())


def find_artifact(log_dir: str | Path, kind: ArtifactKind, config: CommonConfig, *,
                  dataset_source: str, finished: bool = True) -> Optional[Path]:
    """The newest finished run of `kind` made with `config`'s stage configuration, or None;
    with `finished=False`, the newest stopped one (no model file yet: to resume).

    Args:
        log_dir: the log root searched (`<log_dir>/<task>/<algo folder>/seed_*`).
        kind: `FORWARD_DYNAMICS` or `ANCHOR_SEEKER` (policy runs: `find_policy_run`).
        config: the config the stage would be run with.
        dataset_source: the `dataset_source` description the data would have now.
    """
    fields = match_fields(config, kind)
    for run in _candidate_runs(Path(log_dir), config.task):
        if (run / "model" / kind.model_file).is_file() != finished:
            continue
        record = read_record(run)
        if record is not None and _matches(record, kind, fields, dataset_source, type(config)):
            return run
    return None


def completed_epochs(run: str | Path) -> int:
    """Epochs a policy run has completed, from its newest checkpoint's name (0 if none)."""
    folder = Path(run) / "checkpoint"
    if not folder.is_dir():
        return 0
    epochs = [int(m.group(1)) for p in folder.iterdir() if (m := _POLICY_CHECKPOINT.match(p.name))]
    return max(epochs, default=0)


@dataclass(frozen=True)
class PolicyRunState:
    """An existing policy run with the requested configuration.

    Attributes:
        run: the run directory.
        completed: epochs completed (its newest checkpoint).
        finished: it reached the requested epochs and wrote `model/policy.pth`.
    """

    run: Path
    completed: int
    finished: bool


def find_policy_run(log_dir: str | Path, config: CommonConfig, *, epochs: int,
                    dataset_source: str) -> Optional[PolicyRunState]:
    """The policy run to skip or resume for `config`, or None to start a new one.

    Candidates have the same configuration except `epoch` (and bookkeeping fields). A run that
    completed more epochs than asked is a different experiment and is left alone. Among the
    rest, a finished run wins, then the one with most epochs completed, then the newest.

    Args:
        log_dir: the log root searched.
        config: the policy config the pipeline would run (artifact paths filled in).
        epochs: the requested number of epochs.
        dataset_source: the `dataset_source` description the data would have now.
    """
    fields = match_fields(config, POLICY)
    best: Optional[PolicyRunState] = None
    for run in _candidate_runs(Path(log_dir), config.task):
        record = read_record(run)
        if record is None or not _matches(record, POLICY, fields, dataset_source, type(config)):
            continue
        done = completed_epochs(run)
        if done > epochs:
            continue
        state = PolicyRunState(run, done, done == epochs
                               and (run / "model" / POLICY.model_file).is_file())
        if best is None or (state.finished, state.completed) > (best.finished, best.completed):
            best = state
    return best


@contextlib.contextmanager
def run_lock(log_dir: str | Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock on `<log_dir>/.pipeline_locks/<name>.lock` (POSIX `flock`).

    Pipelines that need the same artifact (sweep trials of one task) wait for each other, so
    it is trained once and then reused. Works between processes on one machine (and on
    shared filesystems whose `flock` works across hosts); where `fcntl` is missing, no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        log.warning("no fcntl here: concurrent pipelines may train the same artifact twice")
        yield
        return
    folder = Path(log_dir) / ".pipeline_locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
