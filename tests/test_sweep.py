"""A two-trial Ray Tune sweep on a tiny dataset, run locally, then started again (restored)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from script_helpers import TINY, run_script_without
from sim_data import write_task_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import sweep  # noqa: E402

TASK = "hopper-medium-replay-v2"


def test_flags_are_checked_before_ray_starts() -> None:
    cfg, forwarded = sweep.parse_args(["--algos", "cql", "mopo", "--seeds", "0", "1",
                                       "--rollout_batch_size", "32", "--device", "cpu"])
    assert cfg.algos == ("cql", "mopo") and cfg.seeds == (0, 1)
    assert forwarded == ["--rollout_batch_size", "32", "--device", "cpu"]
    with pytest.raises(SystemExit, match="--nope"):
        sweep.parse_args(["--nope", "1"])
    with pytest.raises(SystemExit, match="set by the grid"):
        sweep.parse_args(["--task", TASK])
    with pytest.raises(SystemExit, match="options of no stage"):
        sweep.parse_args(["--algos", "cql", "--rollout_batch_size", "32"])


def test_trials_start_seed_by_seed_and_task_by_task() -> None:
    cfg, _ = sweep.parse_args(["--tasks", "hopper-medium-v2", "walker2d-medium-v2",
                               "--algos", "iql", "--variants", "alone", "cocoa", "--seeds", "0", "1"])
    order = [(p["seed"], p["variant"], p["task"][:6]) for p in sweep.grid_points(cfg)]
    assert order == [(s, v, t) for s in (0, 1) for v in ("alone", "cocoa")
                     for t in ("hopper", "walker")]
    nested = {"point": {"task": "hopper-medium-v2", "algo": "iql", "variant": "cocoa", "seed": 1},
              "log_dir": "log", "argv": ["--epoch", "2"]}
    assert sweep.trial_argv(sweep.flat_config(nested)) == [
        "--task", "hopper-medium-v2", "--algo", "iql", "--variant", "cocoa", "--seed", "1",
        "--log_dir", "log", "--epoch", "2"]

    class Trial:
        config, trial_id = nested, "abc"

    assert sweep._trial_name(Trial) == "iql_cocoa_hopper-medium-v2_seed1_abc"


def test_two_trial_sweep_runs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray.tune")
    # the sweep sets these in os.environ; restore them afterwards
    for name in ("RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    data = write_task_file(tmp_path / "d4rl", TASK, num_steps=600)
    log = tmp_path / "log"
    argv = ["--tasks", TASK, "--algos", "iql", "--variants", "cocoa", "--seeds", "0", "1",
            "--log_dir", str(log), "--num_cpus", "2", "--cpus_per_trial", "1",
            "--dataset_path", str(data), "--device", "cpu", *TINY]
    rows = sweep.main(argv)
    assert [(r["seed"], r["status"], r["policy_action"]) for r in rows] == [
        (0, "finished", "trained"), (1, "finished", "trained")]
    assert all(isinstance(r["last_10_performance"], float) for r in rows)
    # both trials used one forward dynamics and one seeker, each trained once
    records = [json.loads((Path(r["policy_run"]) / "record" / "pipeline.json").read_text())
               for r in rows]
    for stage in ("dynamics", "anchor_seeker"):
        assert len({rec[stage]["run"] for rec in records}) == 1
        assert sorted(rec[stage]["action"] for rec in records) == ["reused", "trained"]
    assert len(list(log.glob(f"{TASK}/dynamics/seed_*"))) == 1
    # Tune's files and the local auth token stay under the log folder
    assert (log / "ray_results" / "cocoa_sweep" / sweep.GRID_FILE).is_file()
    assert (log / "ray_results" / ".ray_auth_token").is_file()

    # started again: the experiment is restored, finished trials are not run again
    again = sweep.main(argv)
    assert [(r["status"], r["policy_run"]) for r in again] == [
        ("finished", r["policy_run"]) for r in rows]
    assert len(list(log.glob(f"{TASK}/iql_cocoa/seed_*"))) == 2
    history = [json.loads((Path(r["policy_run"]) / "record" / "pipeline.json").read_text())["history"]
               for r in rows]
    assert all(len(h) == 1 for h in history)
    # another grid under the same name is refused
    with pytest.raises(SystemExit, match="another grid"):
        sweep.main(argv[:7] + ["2"] + argv[8:])


def test_a_missing_ray_names_the_install_command(tmp_path: Path) -> None:
    proc = run_script_without("ray", Path(sweep.__file__), "--tasks", TASK, "--log_dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('sweep.py: error: ray is not installed; install it with '
                                   'pip install -e ".[ray]"')
