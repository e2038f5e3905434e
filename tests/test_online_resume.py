"""Online SAC resumes exactly: simulator state, checkpoints, log rewinding, make_dataset --resume."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.envs import make_env
from offlinerlkit.modules.build import build_critics, build_tanh_actor
from offlinerlkit.policy.sac import SACHyperparams, SACPolicy
from offlinerlkit.policy_trainer.online import ONLINE_CHECKPOINT_PREFIX, OnlineSACTrainer
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.checkpoint import list_checkpoints
from offlinerlkit.utils.logger import Logger
from offlinerlkit.utils.run_dir import RunDir
from offlinerlkit.utils.tasks import parse_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import make_dataset  # noqa: E402

TASK = parse_task("hopper-random-v2")
SPEC = EnvSpec(TASK.obs_dim, TASK.action_dim)
TOTAL = 700


class Killed(Exception):
    """Stands for a kill: raised from inside the loop after some environment steps."""


def _trainer(checkpoint_dir: Path | None, *, logger: Logger | None = None) -> OnlineSACTrainer:
    torch.manual_seed(0)
    generator = torch.Generator()
    generator.manual_seed(0)
    sac = SACPolicy(build_tanh_actor(SPEC, (32, 32)), build_critics(SPEC, (32, 32), num_members=2),
                    hp=SACHyperparams(actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4, gamma=0.99,
                                      tau=0.005, auto_alpha=True),
                    generator=generator, device="cpu")
    return OnlineSACTrainer(
        sac, make_env(TASK, seed=0), eval_env=make_env(TASK, seed=1),
        buffer=ReplayBuffer(TOTAL, SPEC.obs_dim, SPEC.action_dim), total_steps=TOTAL,
        start_steps=100, update_after=50, batch_size=32, eval_every=100, eval_episodes=1,
        task=TASK, rng=np.random.default_rng(0), generator=generator, logger=logger,
        checkpoint_dir=checkpoint_dir, checkpoint_every=200)


def _kill_after(trainer: OnlineSACTrainer, steps: int) -> None:
    step, calls = trainer.env.step, [0]

    def counted(action: np.ndarray):
        calls[0] += 1
        if calls[0] > steps:
            raise Killed
        return step(action)

    trainer.env.step = counted  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def uninterrupted():
    return _trainer(None).train()


@pytest.mark.parametrize("kill_at", [250, 530])  # mid-episode, after the checkpoints of 200/400
def test_killed_and_resumed_run_equals_an_uninterrupted_one(uninterrupted, tmp_path: Path,
                                                            kill_at: int) -> None:
    first = _trainer(tmp_path)
    _kill_after(first, kill_at)
    with pytest.raises(Killed):
        first.train()
    saved = list_checkpoints(tmp_path, prefix=ONLINE_CHECKPOINT_PREFIX)
    assert [p.name for p in saved] == [f"online_sac_{kill_at // 200 * 200:06d}.pt"]

    second = _trainer(tmp_path)
    assert second.resume() and second.step == kill_at // 200 * 200
    resumed = second.train()
    assert [s.step for s in resumed.snapshots] == [s.step for s in uninterrupted.snapshots]
    assert [s.eval_return for s in resumed.snapshots] == [
        s.eval_return for s in uninterrupted.snapshots]
    assert resumed.episodes == uninterrupted.episodes
    assert resumed.num_updates == uninterrupted.num_updates
    for key, value in uninterrupted.snapshots[-1].actor_state.items():
        assert torch.equal(value, resumed.snapshots[-1].actor_state[key]), key
    a, b = uninterrupted.transitions.to_dict(), resumed.transitions.to_dict()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_without_checkpoint_says_so(tmp_path: Path) -> None:
    assert _trainer(tmp_path).resume() is False
    assert _trainer(None).resume() is False


def test_sim_state_round_trip_continues_the_same_trajectory() -> None:
    env = make_env(TASK, seed=3)
    env.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (40, SPEC.action_dim)).astype(np.float32)
    for a in actions[:15]:
        env.step(a)
    state = env.get_sim_state()
    expected = [env.step(a) for a in actions[15:]]
    other = make_env(TASK, seed=99)
    other.set_sim_state(state)
    for (obs, rew, term, trunc, _), a in zip(expected, actions[15:]):
        obs2, rew2, term2, trunc2, _ = other.step(a)
        np.testing.assert_array_equal(obs, obs2)
        assert (rew, term, trunc) == (rew2, term2, trunc2)
    with pytest.raises(ValueError, match="simulator state"):
        make_env("walker2d-random-v2", seed=0).set_sim_state(state)


def test_resume_rewinds_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, task="replica-hopper", algo="online_sac", seed=0)
    first = _trainer(run.checkpoint, logger=Logger(run, backends=("csv",)))
    _kill_after(first, 350)  # evaluations at 100, 200 (checkpoint), 300 logged
    with pytest.raises(Killed):
        first.train()
    first.logger.close()
    second = _trainer(run.checkpoint, logger=Logger(run, backends=("csv",)))
    assert second.resume()
    second.train()
    second.logger.close()
    with open(run.record / "policy_training_progress.csv", encoding="utf-8") as f:
        steps = [int(row["timestep"]) for row in csv.DictReader(f)]
    assert steps == list(range(100, TOTAL + 1, 100))


TINY = dict(train_steps=600, num_samples=60, start_steps=150, update_after=50, eval_every=150,
            eval_episodes=1, final_eval_episodes=1, checkpoint_every=300, num_envs=2,
            max_episode_steps=40, threads=1, progress=False, device="cpu",
            levels=("medium", "expert"), hidden_dims=(32, 32))


def test_make_dataset_resume_takes_the_saved_options(tmp_path: Path) -> None:
    out = tmp_path / "made"
    make_dataset.main(make_dataset.MakeDatasetConfig(robot="hopper", out_dir=str(out), **TINY))
    (run,) = (out / "logs").glob("replica-hopper/online_sac/seed_0_*")
    assert [p.name for p in (run / "checkpoint").iterdir()] == ["online_sac_000600.pt"]
    # --resume alone: the saved run (finished) is read back, its outputs rewritten identically
    before = (out / "policies" / "hopper" / "expert.pt").read_bytes()
    again = make_dataset.main(make_dataset.MakeDatasetConfig(resume=str(run), progress=False))
    assert again.levels["expert"].num_rows == TINY["num_samples"]
    after = torch.load(out / "policies" / "hopper" / "expert.pt", weights_only=True)
    first = torch.load(__import__("io").BytesIO(before), weights_only=True)
    for key, value in first["actor"].items():
        assert torch.equal(value, after["actor"][key]), key
    with pytest.raises(ValueError, match="--train_steps 900"):
        make_dataset.main(make_dataset.MakeDatasetConfig(resume=str(run), train_steps=900))
    with pytest.raises(FileNotFoundError):
        make_dataset.main(make_dataset.MakeDatasetConfig(resume=str(tmp_path / "nowhere")))


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    import os

    from offlinerlkit.utils.fileio import atomic_write

    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "f.txt", lambda f: f.write("x"), text=True)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
