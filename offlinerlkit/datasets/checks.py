"""Values that make a dataset meaningless although every number is finite.

`dataset_anomalies` finds rewards of absurd magnitude (|r| > 1e6), actions outside the task's
action space `[-max_action, max_action]` (beyond a relative tolerance of 1e-3) and terminal or
timeout flags stored as numbers other than 0 and 1 (D4RL's reader would take 3.0 as True). The
loaders refuse such data with `DatasetAnomalyError`, naming the file, the first rows and the
counts; `accept=True` (the scripts' `--accept_dataset_anomalies`) trains on it anyway, with a
warning that the run records. NaN values are the readers' concern (they refuse them).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from offlinerlkit.datasets.errors import DatasetError

__all__ = ["ACTION_TOLERANCE", "REWARD_LIMIT", "DatasetAnomalyError", "check_dataset_values",
           "dataset_anomalies"]

logger = logging.getLogger(__name__)

#: Rewards beyond this magnitude are refused (D4RL MuJoCo rewards are below 20 per step).
REWARD_LIMIT = 1e6
#: Actions may exceed `max_action` by this fraction of it (float rounding of clipped actions).
ACTION_TOLERANCE = 1e-3
_SHOWN_ROWS = 5


class DatasetAnomalyError(DatasetError):
    """A dataset holds values that make training meaningless; `problems` lists them."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems)


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN_ROWS])
    return f"rows {shown}" + (f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else "")


def dataset_anomalies(data: Mapping[str, np.ndarray], *, max_action: float = 1.0,
                      reward_limit: float = REWARD_LIMIT,
                      action_tolerance: float = ACTION_TOLERANCE) -> list[str]:
    """Describe every anomaly of `data` (raw D4RL arrays or a transition dict); `[]` if none.

    Args:
        data: `rewards` `(N,)`, `actions` `(N, A)`, optionally `terminals`/`timeouts` `(N,)`.
        max_action: the action space is `[-max_action, max_action]` in every dimension.
        reward_limit: the largest accepted reward magnitude.
        action_tolerance: the relative slack allowed beyond `max_action`.
    """
    problems = []
    rewards = np.asarray(data["rewards"]).reshape(len(data["rewards"]), -1)[:, 0]
    big = np.abs(rewards) > reward_limit  # NaN is the readers' concern
    if big.any():
        problems.append(f"{int(big.sum())} reward(s) of magnitude above {reward_limit:g} "
                        f"({_rows(big)}; largest |r| = {float(np.nanmax(np.abs(rewards))):.4g})")
    actions = np.asarray(data["actions"])
    bound = max_action * (1.0 + action_tolerance)
    outside = np.abs(actions) > bound
    rows = outside.reshape(len(actions), -1).any(axis=1)
    if rows.any():
        problems.append(f"{int(outside.sum())} action value(s) in {int(rows.sum())} row(s) outside "
                        f"the action space [-{max_action:g}, {max_action:g}] ({_rows(rows)}; "
                        f"largest |a| = {float(np.nanmax(np.abs(actions))):.4g})")
    for key in ("terminals", "timeouts"):
        if key not in data:
            continue
        flags = np.asarray(data[key]).reshape(-1)
        if flags.dtype == bool:
            continue
        odd = ~np.isin(flags, (0, 1))
        if odd.any():
            values = ", ".join(f"{v:g}" for v in np.unique(flags[odd])[:_SHOWN_ROWS])
            problems.append(f"{int(odd.sum())} {key} flag(s) neither 0 nor 1 ({_rows(odd)}; "
                            f"values {values})")
    return problems


def check_dataset_values(data: Mapping[str, np.ndarray], *, source: str, accept: bool = False,
                         max_action: float = 1.0) -> list[str]:
    """Refuse a dataset with anomalies (`dataset_anomalies`), or accept them with a warning.

    Args:
        data: as for `dataset_anomalies`.
        source: the file (or a description) named in the message.
        accept: train on the data anyway; each anomaly is logged as a warning.
        max_action: the task's action bound.

    Returns:
        The anomalies accepted (`[]` for clean data).

    Raises:
        DatasetAnomalyError: anomalies were found and `accept` is False.
    """
    problems = dataset_anomalies(data, max_action=max_action)
    if problems and not accept:
        raise DatasetAnomalyError(
            f"{source}: {'; '.join(problems)}. Training on such values gives meaningless "
            "results: fix or regenerate the data, or pass --accept_dataset_anomalies to train "
            "on it anyway (the run records it)", problems)
    for problem in problems:
        logger.warning("%s: accepted dataset anomaly: %s", source, problem)
    return problems
