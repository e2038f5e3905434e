"""Minari datasets end to end: made by minari's own DataCollector, read back through the public
loader, trained by every script, evaluated in the recorded simulator, scored and tabulated."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("jax")  # minari's DataCollector needs minari[create]
gym = pytest.importorskip("gymnasium")

from minari import DataCollector  # noqa: E402

from offlinerlkit.anchor.seeker import SeekerFileError, load_seeker  # noqa: E402
from offlinerlkit.datasets import DatasetNotFoundError, find_dataset, load_dataset  # noqa: E402
from offlinerlkit.datasets.hdf5 import read_d4rl_hdf5  # noqa: E402
from offlinerlkit.dynamics.io import DynamicsFileError  # noqa: E402
from offlinerlkit.dynamics.termination_fns import (  # noqa: E402
    get_termination_fn,
    hopper_termination_fn,
    walker2d_termination_fn,
)
from offlinerlkit.envs import EnvUnavailableError, make_env  # noqa: E402
from offlinerlkit.pipeline import build_table, find_policy_runs  # noqa: E402
from offlinerlkit.pipeline.table import format_markdown  # noqa: E402
from offlinerlkit.utils.tasks import ROBOTS, TaskError, parse_task  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_dataset  # noqa: E402
import run_bc  # noqa: E402
import run_cql  # noqa: E402
import run_iql  # noqa: E402
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402
import run_pipeline  # noqa: E402
from script_helpers import TINY  # noqa: E402

HOPPER = "test/hopper/collected-v0"  # Hopper-v5, with its own reference returns
WALKER = "test/walker2d/collected-v0"  # Walker2d-v4, without reference returns
LOW_Z = "test/hopper/low-z-v0"  # Hopper-v5 with a keyword argument that changes termination
REF = (-10.0, 2000.0)
COMMON = dict(epoch=1, step_per_epoch=2, batch_size=16, eval_episodes=1, device="cpu",
              progress=False, seed=0)


def _collect(env_id: str, dataset_id: str, steps: int, **kwargs) -> None:
    env_kwargs = kwargs.pop("env_kwargs", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # -v4 is made on purpose
        env = DataCollector(gym.make(env_id, max_episode_steps=100, **env_kwargs))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # author / permalink notices
        env.create_dataset(dataset_id=dataset_id, algorithm_name="uniform random",
                           eval_env=gym.spec(env_id) if not env_kwargs else None, **kwargs)
    env.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        _collect("Hopper-v5", HOPPER, 600, ref_min_score=REF[0], ref_max_score=REF[1])
        _collect("Walker2d-v4", WALKER, 400)
        _collect("Hopper-v5", LOW_Z, 60, env_kwargs={"healthy_z_range": (0.5, float("inf"))})
    return root


@pytest.fixture(autouse=True)
def _use_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))


def _record(run: Path) -> dict:
    return json.loads((run / "record" / "hyper_param.json").read_text())


def _last_row(run: Path) -> dict[str, float]:
    lines = (run / "record" / "policy_training_progress.csv").read_text().splitlines()
    return {k: float(v) for k, v in zip(lines[0].split(","), lines[-1].split(",")) if v}


def test_task_info_and_env_are_the_recorded_ones() -> None:
    hopper, walker = parse_task(f"minari:{HOPPER}"), parse_task(f"minari:{WALKER}")
    assert (hopper.robot, hopper.gym_id, hopper.env_version, hopper.source) == (
        "hopper", "Hopper-v5", "v5", "minari")
    assert (hopper.obs_dim, hopper.action_dim, hopper.max_episode_steps) == (11, 3, 1000)
    assert (hopper.ref_min_score, hopper.ref_max_score, hopper.score_source) == (*REF, "minari")
    assert hopper.normalized_score(REF[1]) == pytest.approx(100.0)
    assert (walker.gym_id, walker.env_version, walker.score_source) == ("Walker2d-v4", "v4", "d4rl")
    assert (walker.ref_min_score, walker.ref_max_score) == (ROBOTS["walker2d"]["ref_min"],
                                                           ROBOTS["walker2d"]["ref_max"])
    for info, module in ((hopper, "hopper_v5"), (walker, "walker2d_v4")):
        env = make_env(info, seed=0)
        assert env.spec.id == info.gym_id and type(env.unwrapped).__module__.endswith(module)
        env.close()
    low_z = make_env(f"minari:{LOW_Z}", seed=0)  # the recorded keyword arguments and limit
    assert tuple(low_z.unwrapped._healthy_z_range) == (0.5, float("inf"))
    assert parse_task(f"minari:{LOW_Z}").max_episode_steps == low_z.spec.max_episode_steps == 100
    assert get_termination_fn(hopper) is hopper_termination_fn
    assert get_termination_fn(f"minari:{WALKER}") is walker2d_termination_fn
    with pytest.raises(TaskError, match="healthy_z_range"):
        get_termination_fn(f"minari:{LOW_Z}")


def test_public_loader_reads_what_minari_stored() -> None:
    source = find_dataset(f"minari:{HOPPER}")
    assert source.kind == "minari"
    data = load_dataset(f"minari:{HOPPER}")
    episodes = list(minari.load_dataset(HOPPER).iterate_episodes())
    assert len(data["rewards"]) == sum(len(ep.actions) for ep in episodes) == 600
    np.testing.assert_allclose(data["observations"][0], episodes[0].observations[0], rtol=1e-6)
    np.testing.assert_allclose(data["next_observations"][len(episodes[0].actions) - 1],
                               episodes[0].observations[-1], rtol=1e-6)
    assert data["terminals"].sum() == sum(int(ep.terminations.sum()) for ep in episodes)


TINY_SCRIPT = dict(COMMON, task=f"minari:{HOPPER}", hidden_dims=(16, 16))


@pytest.fixture(scope="module")
def trained(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every script trained on the Minari datasets: the pipeline with COCOA (forward dynamics,
    anchor seeker, IQL + COCOA), BC, CQL alone and with COCOA, MOPO, MOBILE, and IQL on -v4."""
    log = tmp_path_factory.mktemp("log")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        result = run_pipeline.run([
            "--task", f"minari:{HOPPER}", "--algo", "iql", "--variant", "cocoa", "--seed", "0",
            "--log_dir", str(log), "--device", "cpu", "--progress", "False", *TINY]).to_dict()
        dyn, seeker, cocoa = (Path(result[s]["run"]) for s in ("dynamics", "anchor_seeker", "policy"))
        tiny = dict(TINY_SCRIPT, log_dir=str(log))
        cocoa_models = dict(load_dynamics_path=str(dyn / "model"),
                            load_anchor_seeker_path=str(seeker / "model"), fg_hidden_dims=(8, 8),
                            embedding_dim=2)
        model_based = dict(tiny, load_dynamics_path=str(dyn / "model"), rollout_batch_size=32,
                           rollout_freq=2, dynamics_hidden_dims=(16, 16), num_ensemble=3,
                           num_elites=2, dynamics_weight_decay=(0.0, 0.0, 0.0))
        runs = [cocoa,
                run_bc.main(run_bc.BCConfig(**{k: v for k, v in tiny.items() if k != "hidden_dims"})),
                run_cql.main(run_cql.CQLConfig(**tiny, num_repeat_actions=2)),
                run_cql.main(run_cql.CQLConfig(**tiny, num_repeat_actions=2, **cocoa_models)),
                run_mopo.main(run_mopo.MOPOConfig(**model_based)),
                run_mopo.main(run_mopo.MOPOConfig(**model_based, **{
                    k: v for k, v in cocoa_models.items() if k != "load_dynamics_path"})),
                run_mobile.main(run_mobile.MOBILEConfig(**model_based))]
        walker = run_iql.main(run_iql.IQLConfig(**dict(tiny, task=f"minari:{WALKER}")))
    return {"log": log, "dynamics": dyn, "seeker": seeker, "runs": runs, "walker": walker}


def test_every_script_trains_evaluates_and_tabulates(trained: dict) -> None:
    dyn, seeker, runs = trained["dynamics"], trained["seeker"], trained["runs"]
    assert runs[0].parts[-3:-1] == ("minari-test-hopper-collected-v0", "iql_cocoa")
    assert runs[3].parent.name == "cql_cocoa" and runs[5].parent.name.startswith("mopo_cocoa")
    for run in (dyn, seeker, *runs):
        info = _record(run)["task_info"]
        assert (info["dataset_id"], info["dataset_version"], info["env_id"]) == (
            HOPPER, "v0", "Hopper-v5")
        assert info["minari_version"] == minari.__version__
    for run in runs:  # evaluated, and scored with the dataset's own reference returns
        row = _last_row(run)
        want = 100 * (row["eval/episode_reward"] - REF[0]) / (REF[1] - REF[0])
        assert row["eval/normalized_episode_reward"] == pytest.approx(want, rel=1e-4, abs=1e-3)
        assert _record(run)["task_info"]["score_source"] == "minari"

    # a -v4 dataset without reference returns: evaluated in Walker2d-v4 with D4RL's returns
    info = _record(trained["walker"])["task_info"]
    assert (info["env_id"], info["env_version"], info["score_source"]) == ("Walker2d-v4", "v4", "d4rl")
    row = _last_row(trained["walker"])
    lo, hi = ROBOTS["walker2d"]["ref_min"], ROBOTS["walker2d"]["ref_max"]
    assert row["eval/normalized_episode_reward"] == pytest.approx(
        100 * (row["eval/episode_reward"] - lo) / (hi - lo), rel=1e-4, abs=1e-3)

    table = build_table(find_policy_runs([trained["log"]]))
    text = format_markdown(table)
    assert f"minari:{HOPPER} [minari]" in table.rows and f"minari:{WALKER} [minari-d4rl]" in table.rows
    assert "its own reference returns" in text and "D4RL's reference returns" in text


def test_models_of_one_minari_dataset_are_refused_for_another(trained: dict, tmp_path: Path) -> None:
    other = dict(TINY_SCRIPT, task=f"minari:{LOW_Z}", log_dir=str(tmp_path))
    with pytest.raises(DynamicsFileError, match=HOPPER):
        run_iql.main(run_iql.IQLConfig(**other, load_dynamics_path=str(trained["dynamics"] / "model")))
    with pytest.raises(SeekerFileError, match=HOPPER):  # what build_anchor_setup calls
        load_seeker(trained["seeker"] / "model", task=f"minari:{LOW_Z}", obs_dim=11, action_dim=3)
    with pytest.raises(DynamicsFileError, match=HOPPER):  # nor for the D4RL task of the robot
        run_mopo.main(run_mopo.MOPOConfig(**dict(other, task="hopper-medium-v2"),
                                          load_dynamics_path=str(trained["dynamics"] / "model")))


def test_plotter_draws_minari_runs(trained: dict, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import plotter

    out = plotter.main(plotter.PlotConfig(roots=(str(trained["log"]),), tasks=(f"minari:{HOPPER}",),
                                          output=str(tmp_path / "curves.png"), dpi=50))
    assert out.stat().st_size > 1000


def test_sweep_checks_minari_tasks_before_ray(capsys: pytest.CaptureFixture[str]) -> None:
    import sweep

    cfg, _ = sweep.parse_args(["--tasks", f"minari:{HOPPER}", "--algos", "iql"])
    assert cfg.tasks == (f"minari:{HOPPER}",)
    with pytest.raises(SystemExit):
        sweep.parse_args(["--tasks", "minari:mujoco/hopper/medium-v0"])
    assert "minari download mujoco/hopper/medium-v0" in capsys.readouterr().err

    class Trial:
        config = {"algo": "iql", "variant": "alone", "task": f"minari:{HOPPER}", "seed": 0}
        trial_id = "abc"

    assert sweep._trial_name(Trial) == "iql_alone_minari-test-hopper-collected-v0_seed0_abc"


def test_one_trial_sweep_on_minari(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    # its own process: Ray keeps the first sweep's auth token for the rest of a process
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, str(repo / "run_example" / "sweep.py"), "--tasks", f"minari:{HOPPER}",
         "--algos", "iql", "--variants", "alone", "--seeds", "0", "--log_dir", str(log),
         "--num_cpus", "1", "--device", "cpu", *TINY], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = log.glob("minari-test-hopper-collected-v0/iql/seed_0_*")
    assert _record(run)["task_info"]["env_id"] == "Hopper-v5"
    assert (run / "model" / "policy.pth").is_file()


def test_user_mistakes_give_one_line_errors(store: Path) -> None:
    with pytest.raises(TaskError) as err:
        parse_task("minari:mujoco/hopper/medium-v0")
    message = str(err.value)
    assert "\n" not in message and "minari download mujoco/hopper/medium-v0" in message
    assert HOPPER in message and WALKER in message and str(store) in message
    with pytest.raises(DatasetNotFoundError, match="minari download"):
        find_dataset("minari:mujoco/hopper/medium-v0")
    # minari not installed: the extra is named
    code = ("import sys; sys.modules['minari'] = None\n"
            "from offlinerlkit.utils.tasks import parse_task, TaskError\n"
            "try:\n    parse_task('minari:" + HOPPER + "')\n"
            "except TaskError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env=dict(os.environ)).stdout
    assert "pip install 'cocoa-rl[minari]'" in out
    # a dataset recorded in an environment this gymnasium does not have
    meta_file = store / HOPPER / "data" / "metadata.json"
    newer = store / "test" / "hopper" / "newer-v0" / "data"
    newer.mkdir(parents=True)
    for f in (store / HOPPER / "data").iterdir():
        (newer / f.name).write_bytes(f.read_bytes())
    meta = json.loads(meta_file.read_text())
    spec = json.loads(meta["eval_env_spec"])
    spec.update(id="Hopper-v9", entry_point="gymnasium.envs.mujoco.hopper_v9:HopperEnv")
    meta.update(eval_env_spec=json.dumps(spec), dataset_id="test/hopper/newer-v0")
    (newer / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(EnvUnavailableError, match="Hopper-v9.*cannot be made here"):
        make_env("minari:test/hopper/newer-v0")
    with pytest.raises(TaskError, match=r"checked against \['Hopper-v4', 'Hopper-v5'\]"):
        get_termination_fn("minari:test/hopper/newer-v0")


def test_make_dataset_writes_a_minari_dataset(tmp_path: Path) -> None:
    import torch

    from offlinerlkit.replica import BehaviourPolicy

    torch.manual_seed(0)
    policy = BehaviourPolicy.build("hopper", "random", (16, 16)).save(tmp_path / "random.pt")
    result = make_dataset.main(make_dataset.MakeDatasetConfig(
        policy=str(policy), out_dir=str(tmp_path / "replica"), num_samples=200, seed=0,
        num_envs=2, max_episode_steps=15, progress=False, device="cpu", final_eval_episodes=1,
        format="minari"))
    dataset = minari.load_dataset("cocoa-replica/hopper/random-v0")  # found locally
    assert (dataset.env_spec.id, dataset.env_spec.max_episode_steps) == ("Hopper-v4", 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # -v4 is made on purpose
        eval_env = dataset.recover_environment(eval_env=True)
    assert (eval_env.spec.id, eval_env.spec.max_episode_steps) == ("Hopper-v4", 1000)
    assert dataset.total_steps == 200
    raw = read_d4rl_hdf5(result.levels["random"].path)
    data = load_dataset("minari:cocoa-replica/hopper/random-v0")
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_allclose(data[key], raw[key], rtol=1e-6, err_msg=key)
    info = parse_task("minari:cocoa-replica/hopper/random-v0")
    d4rl = parse_task("hopper-random-v2")
    assert (info.gym_id, info.ref_min_score, info.ref_max_score, info.score_source) == (
        "Hopper-v4", d4rl.ref_min_score, d4rl.ref_max_score, "minari")
