"""Learning check: short training runs of every algorithm on one dataset, against a random policy.

    python run_example/learning_check.py --task replica:hopper-expert-v2 --dataset_path data/replica --steps 3000

Each algorithm trains for `--steps` gradient steps (in epochs of `--step_per_epoch`), evaluated
in the simulator after every epoch; model-based ones (MOPO, MOBILE) first train their forward dynamics (capped at
`--dynamics_epochs`). The table gives the final normalised score, the best one and the wall time,
beside the score of a uniformly random policy. This is a smoke-level check that learning happens
on real data in the real simulator, not a reproduction of the paper's budgets.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import time
from pathlib import Path

import numpy as np

from offlinerlkit.algorithms import ALGORITHMS, algorithm
from offlinerlkit.envs import make_env
from offlinerlkit.policy_trainer.evaluate import evaluate_policy
from offlinerlkit.utils.cli import run_main
from offlinerlkit.utils.tasks import parse_task


def random_policy_score(task: str, episodes: int, seed: int) -> float:
    env = make_env(task, seed=seed)
    rng = np.random.default_rng(seed)
    result = evaluate_policy(lambda obs: rng.uniform(-1, 1, env.action_space.shape).astype(np.float32),
                             env, num_episodes=episodes, task=parse_task(task))
    return float(result.to_metrics()["eval/normalized_episode_reward"])


def scores(run: Path) -> tuple[float, float]:
    with open(run / "record" / "policy_training_progress.csv") as fh:
        values = [float(r["eval/normalized_episode_reward"]) for r in csv.DictReader(fh)]
    return values[-1], max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="replica:hopper-expert-v2")
    parser.add_argument("--dataset_path", default="data/replica")
    parser.add_argument("--algos", nargs="*", choices=list(ALGORITHMS),
                        default=list(ALGORITHMS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--step_per_epoch", type=int, default=500)
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument("--dynamics_epochs", type=int, default=30)
    parser.add_argument("--rollout_batch_size", type=int, default=5000)
    parser.add_argument("--log_dir", default="log/learning_check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    cli = parser.parse_args()
    common = dict(task=cli.task, dataset_path=cli.dataset_path, seed=cli.seed, log_dir=cli.log_dir,
                  epoch=max(cli.steps // cli.step_per_epoch, 1), step_per_epoch=cli.step_per_epoch,
                  eval_episodes=cli.eval_episodes, threads=cli.threads, device="cpu",
                  checkpoint_freq=1000)
    rows = [("random policy", random_policy_score(cli.task, 10, cli.seed), float("nan"), 0.0)]
    for algo in cli.algos:
        start = time.time()
        entry = algorithm(algo)
        module = importlib.import_module(entry.script)
        cfg_cls = getattr(module, entry.config)
        if entry.model_based:  # the first call trains the forward dynamics and stops
            mb = dict(common, dynamics_max_epochs=cli.dynamics_epochs,
                      rollout_batch_size=cli.rollout_batch_size)
            dynamics = module.main(cfg_cls(**mb))
            run = module.main(cfg_cls(**mb, load_dynamics_path=str(dynamics / "model")))
        else:
            run = module.main(cfg_cls(**common))
        final, best = scores(run)
        rows.append((algo, final, best, time.time() - start))
        print(f"{algo}: final {final:.1f}, best {best:.1f} ({time.time() - start:.0f} s)", flush=True)
    print(f"\n{cli.task}, {cli.steps} gradient steps, {cli.eval_episodes} evaluation episodes")
    print(f"| {'algorithm':<14} | final score | best score | wall time |\n|---|---|---|---|")
    for name, final, best, seconds in rows:
        print(f"| {name:<14} | {final:11.1f} | {best:10.1f} | {seconds:7.0f} s |")


if __name__ == "__main__":
    run_main(main)
