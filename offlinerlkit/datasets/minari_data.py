"""Minari datasets: episodes to transitions, and reading a local Minari dataset.

Minari is an optional extra (`pip install 'cocoa-rl[minari]'`); it is imported only inside
`read_minari_episodes`, and nothing here can download.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from offlinerlkit.datasets.errors import DatasetError
from offlinerlkit.utils.minari_task import MINARI_INSTALL, MINARI_PREFIX, minari_dataset_dir

__all__ = ["MINARI_PREFIX", "episodes_to_transitions", "minari_dataset_dir", "read_minari_episodes"]


def _field(episode: Any, name: str) -> Any:
    """`episode.name` or `episode[name]` (EpisodeData objects and plain mappings)."""
    if isinstance(episode, Mapping):
        if name not in episode:
            raise DatasetError(f"episode has no '{name}' field (it has {sorted(episode)})")
        return episode[name]
    if not hasattr(episode, name):
        raise DatasetError(f"episode of type {type(episode).__name__} has no '{name}' field")
    return getattr(episode, name)


def _per_step(name: str, value: Any, steps: int, index: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape[:1] != (steps,):
        raise DatasetError(
            f"episode {index}: '{name}' has shape {arr.shape}, expected {steps} entries (one per "
            "action)"
        )
    return arr


def episodes_to_transitions(episodes: Iterable[Any]) -> dict[str, np.ndarray]:
    """Concatenate Minari-style episodes into the transition dict.

    Each episode (a Minari `EpisodeData` or a mapping with the same fields) has `observations
    (T+1,S)`, `actions (T,A)`, `rewards (T,)`, `terminations (T,)` and `truncations (T,)`.
    Per episode: `obs = observations[:-1]`, `next_obs = observations[1:]`, `terminals =
    terminations`. Truncations are time limits, not terminals, so they are ignored; every step
    is kept (the true next observation is always stored).

    Args:
        episodes: the episodes, in order.

    Returns:
        `observations (N,S) f32`, `actions (N,A) f32`, `next_observations (N,S) f32`,
        `rewards (N,) f32`, `terminals (N,) bool`, N the total number of steps.

    Raises:
        DatasetError: no episodes, non-array (dict or tuple) observations, lengths that do not
            agree, or NaN/inf values.
    """
    obs, next_obs, actions, rewards, terminals = [], [], [], [], []
    for index, episode in enumerate(episodes):
        observations = _field(episode, "observations")
        if isinstance(observations, (Mapping, tuple)):
            raise DatasetError(
                f"episode {index}: observations are a {type(observations).__name__} space; only "
                "flat array observations are supported"
            )
        observations = np.asarray(observations)
        action = np.asarray(_field(episode, "actions"))
        steps = action.shape[0] if action.ndim else 0
        if observations.ndim == 1:
            observations = observations[:, None]
        if observations.ndim != 2 or observations.shape[0] != steps + 1:
            raise DatasetError(
                f"episode {index}: observations have shape {observations.shape}, expected "
                f"({steps + 1}, size): one more row than the {steps} actions"
            )
        if action.ndim == 1:
            action = action[:, None]
        obs.append(observations[:-1])
        next_obs.append(observations[1:])
        actions.append(action)
        rewards.append(_per_step("rewards", _field(episode, "rewards"), steps, index))
        terminals.append(_per_step("terminations", _field(episode, "terminations"), steps, index))
    if not obs:
        raise DatasetError("the Minari dataset has no episodes")
    if len({a.shape[1:] for a in actions}) != 1 or len({o.shape[1:] for o in obs}) != 1:
        raise DatasetError("episodes disagree in observation or action size")
    out = {
        "observations": np.concatenate(obs).astype(np.float32, copy=False),
        "actions": np.concatenate(actions).astype(np.float32, copy=False),
        "next_observations": np.concatenate(next_obs).astype(np.float32, copy=False),
        "rewards": np.concatenate(rewards).astype(np.float32, copy=False).reshape(-1),
        "terminals": np.concatenate(terminals).astype(bool).reshape(-1),
    }
    for key in ("observations", "actions", "next_observations", "rewards"):
        bad = ~np.isfinite(out[key])
        if bad.any():
            raise DatasetError(f"'{key}' has {int(bad.sum())} NaN or infinite value(s)")
    return out


def read_minari_episodes(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a local Minari dataset folder (the one holding `metadata.json`) as transitions.

    Opens the folder directly with `minari.MinariDataset`, which never downloads.

    Args:
        data_dir: `<store>/<dataset id>/data`.

    Returns:
        The transition dict of `episodes_to_transitions`.

    Raises:
        DatasetError: minari is not installed, or the folder cannot be read as a dataset.
    """
    try:
        from minari import MinariDataset
    except ImportError as exc:
        raise DatasetError(
            f"{data_dir}: reading a Minari dataset needs the minari package: {MINARI_INSTALL}"
        ) from exc
    source = str(data_dir)
    try:
        dataset = MinariDataset(source)
        episodes = dataset.iterate_episodes()
        return episodes_to_transitions(episodes)
    except DatasetError as exc:
        raise DatasetError(f"{source}: {exc}") from exc
    except Exception as exc:  # minari raises many types (ValueError, OSError, KeyError, ...)
        raise DatasetError(
            f"{source}: cannot be read as a Minari dataset ({type(exc).__name__}: {exc}); "
            "recreate it, or check that it was written by a compatible Minari version"
        ) from exc
