"""Policy evaluation in the simulator (COCOA spec 8.3) and its D4RL-normalised metrics."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from offlinerlkit.utils.tasks import MAX_EPISODE_STEPS, TaskInfo, parse_task

if TYPE_CHECKING:
    import gymnasium

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Per-episode outcome of `evaluate_policy`, with the task's D4RL reference returns.

    Normalised scores follow D4RL: `100 * (R - ref_min) / (ref_max - ref_min)`; the score of an
    evaluation is that of the mean return. Standard deviations are population ones (numpy's
    default, `ddof=0`).

    Attributes:
        returns: undiscounted return of each episode, float64 `(num_episodes,)` (read-only).
        lengths: number of steps of each episode, int64 `(num_episodes,)` (read-only).
        ref_min_score, ref_max_score: D4RL's reference returns, or `None` when no task was given.
    """

    returns: np.ndarray
    lengths: np.ndarray
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    def __post_init__(self) -> None:
        returns = np.array(self.returns, dtype=np.float64).reshape(-1)
        lengths = np.array(self.lengths, dtype=np.int64).reshape(-1)
        if returns.shape != lengths.shape or returns.size == 0:
            raise ValueError(
                f"returns and lengths must be non-empty and of one length, got "
                f"{returns.shape} and {lengths.shape}"
            )
        if (self.ref_min_score is None) != (self.ref_max_score is None):
            raise ValueError("give both reference scores or neither")
        returns.setflags(write=False)
        lengths.setflags(write=False)
        object.__setattr__(self, "returns", returns)
        object.__setattr__(self, "lengths", lengths)

    @property
    def num_episodes(self) -> int:
        return int(self.returns.size)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))

    @property
    def std_length(self) -> float:
        return float(np.std(self.lengths))

    @property
    def normalized_score(self) -> float | None:
        """D4RL normalised score (percent) of the mean return; `None` without reference scores."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        span = self.ref_max_score - self.ref_min_score
        return 100.0 * (self.mean_return - self.ref_min_score) / span

    @property
    def normalized_score_std(self) -> float | None:
        """`100 * std(returns) / (ref_max - ref_min)`; `None` without reference scores."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return 100.0 * self.std_return / (self.ref_max_score - self.ref_min_score)

    def to_metrics(self) -> dict[str, float]:
        """Logger metrics as Python floats (`eval/normalized_*` only with reference scores)."""
        metrics: dict[str, float] = {}
        score, score_std = self.normalized_score, self.normalized_score_std
        if score is not None and score_std is not None:
            metrics["eval/normalized_episode_reward"] = score
            metrics["eval/normalized_episode_reward_std"] = score_std
        metrics["eval/episode_reward"] = self.mean_return
        metrics["eval/episode_reward_std"] = self.std_return
        metrics["eval/episode_length"] = self.mean_length
        metrics["eval/episode_length_std"] = self.std_length
        return metrics


def evaluate_policy(
    policy_fn: Callable[[np.ndarray], np.ndarray],
    env: gymnasium.Env,
    *,
    num_episodes: int,
    task: str | TaskInfo | None = None,
    max_episode_steps: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Run `num_episodes` episodes of a policy, one after the other, on one environment.

    This is the evaluation protocol of COCOA spec 8.3: the caller seeds `env` once (e.g.
    `make_env(task, seed=seed)`) and every episode continues its random stream, so the same seed
    gives the same result. An episode ends when the environment says terminated or truncated, or
    after `max_episode_steps` steps.

    Args:
        policy_fn: maps one float32 observation `(obs_dim,)` to an action `(action_dim,)`
            (deterministic actions in the paper's protocol).
        env: a gymnasium environment with Box observation and action spaces.
        num_episodes: number of episodes (10 in the paper).
        task: task name or `TaskInfo` giving the reference returns (D4RL's, or a Minari
            dataset's own); without it the result has no normalised score.
        max_episode_steps: step limit per episode, on top of the environment's own (None: the
            task's `max_episode_steps`, e.g. a Minari dataset's recorded limit; else 1000).
        progress: show a tqdm progress bar over episodes.

    Returns:
        The per-episode returns and lengths, with the task's reference scores.

    Raises:
        ValueError: `num_episodes` or `max_episode_steps` is not positive, or `policy_fn` returned
            an action whose shape is not the action space's.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be positive, got {num_episodes}")
    info = parse_task(task) if isinstance(task, str) else task
    if max_episode_steps is None:
        max_episode_steps = info.max_episode_steps if info is not None else MAX_EPISODE_STEPS
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
    action_shape = tuple(env.action_space.shape)

    episodes: Iterable[int] = range(num_episodes)
    if progress:
        from tqdm import tqdm

        episodes = tqdm(episodes, desc="eval", unit="episode", leave=False)

    returns = np.zeros(num_episodes, dtype=np.float64)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    for episode in episodes:
        obs, _ = env.reset()
        episode_return, length, done = 0.0, 0, False
        while not done:
            action = np.asarray(policy_fn(np.asarray(obs, dtype=np.float32)))
            if action.shape != action_shape:
                raise ValueError(
                    f"policy_fn returned an action of shape {action.shape}, but the action space "
                    f"has shape {action_shape}; return one action per observation"
                )
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            length += 1
            done = terminated or truncated or length >= max_episode_steps
        returns[episode], lengths[episode] = episode_return, length
        logger.debug("eval episode %d: return %.3f, length %d", episode, episode_return, length)

    return EvalResult(
        returns=returns,
        lengths=lengths,
        ref_min_score=None if info is None else info.ref_min_score,
        ref_max_score=None if info is None else info.ref_max_score,
    )
