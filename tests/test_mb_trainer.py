"""The model-based trainer's rollout statistics and the refused `--rollout_length 0`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from policy_helpers import ACTION_DIM, OBS_DIM, make_tiny_dynamics, make_tiny_sac_parts

from offlinerlkit.buffer.replay_buffer import ReplayBuffer
from offlinerlkit.policy.mopo import MOPOPolicy
from offlinerlkit.policy_trainer.mb import MBPolicyTrainer
from offlinerlkit.utils.cli import parse_config
from offlinerlkit.utils.logger import NoOpLogger
from offlinerlkit.utils.run_dir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402


def _trainer(tmp_path: Path, rollout_batch_size: int) -> MBPolicyTrainer:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n = 30
    obs = torch.randn(n, OBS_DIM, generator=g)
    buffer = ReplayBuffer.from_transitions({
        "observations": obs.numpy(), "actions": (torch.rand(n, ACTION_DIM, generator=g) * 2 - 1).numpy(),
        "next_observations": obs.numpy(), "rewards": torch.randn(n, generator=g).numpy(),
        "terminals": torch.zeros(n).numpy()})
    dynamics = make_tiny_dynamics()
    policy = MOPOPolicy(*make_tiny_sac_parts(cocoa=False))
    return MBPolicyTrainer(policy, dynamics=dynamics,
                           rollout_batch_size=rollout_batch_size, rollout_length=2,
                           buffer=buffer, logger=NoOpLogger(), run_dir=RunDir(tmp_path), env=None,
                           task=None, epochs=1, step_per_epoch=1, batch_size=8, eval_episodes=0,
                           progress=False)


def test_rollout_reward_std_is_the_unbiased_std(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, rollout_batch_size=5)
    info = trainer.rollout()
    rewards = trainer.model_buffer.stored("reward").reshape(-1)
    assert info["rollout_info/num_transitions"] == rewards.numel() == 10
    assert info["rollout_info/reward_mean"] == pytest.approx(rewards.mean().item(), rel=1e-6)
    n = rewards.numel()
    population = rewards.std(unbiased=False).item()
    assert info["rollout_info/reward_std"] == pytest.approx(population * (n / (n - 1)) ** 0.5, rel=1e-5)


@pytest.mark.parametrize("config", [run_mopo.MOPOConfig, run_mobile.MOBILEConfig],
                         ids=["mopo", "mobile"])
def test_rollout_length_zero_is_refused_with_the_fix(config: type,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(config, ["--rollout_length", "0"])
    err = capsys.readouterr().err
    assert "--rollout_length must be at least 1" in err and "--rollout_augmentation False" in err
    assert parse_config(config, ["--rollout_length", "1"]).rollout_length == 1
