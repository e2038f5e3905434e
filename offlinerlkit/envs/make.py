"""`make_env`: a seeded gymnasium MuJoCo environment for a task (`-v4` for D4RL, the recorded one
for Minari).

Why `-v4`: D4RL recorded its data with gym's mujoco-py `-v2` environments, and gymnasium's `-v4`
ones use the same models and rewards on the maintained `mujoco` bindings. `-v5` changes Walker2d's
foot friction and stops paying the alive bonus on the step that falls, so it must not be used to
score D4RL data (see `shared/spec/DATA.md`, Simulators).

A Minari task (`minari:<id>`) is evaluated in the environment its dataset records
(`TaskInfo.env_spec`: id, version, keyword arguments and time limit), never one guessed from the
robot: Minari's MuJoCo datasets are recorded in `-v5`.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from offlinerlkit.utils.tasks import TaskError, TaskInfo, parse_task

if TYPE_CHECKING:
    import gymnasium

logger = logging.getLogger(__name__)

_INSTALL_HINT = 'pip install "gymnasium[mujoco]"'
# gymnasium warns that every `-v4` id is out of date; `-v4` is chosen on purpose (module docstring).
_V4_DEPRECATION = r".*The environment \w+-v4 is out of date"
# MuJoCo >= 3 deprecates an attribute of gymnasium's half_cheetah.xml; nothing a user can act on.
_KNOWN_MUJOCO_WARNING = "compiler attribute 'settotalmass' is deprecated"


class EnvUnavailableError(TaskError):
    """The environment a task (a Minari dataset) records cannot be made on this machine."""


def make_env(task: str | TaskInfo, *, seed: int | None = None) -> gymnasium.Env:
    """Build the evaluation environment of a D4RL MuJoCo task.

    The environment is gymnasium's `-v4` class of the task's robot (`TaskInfo.gym_id`), or for a
    Minari task the environment spec its dataset records (`TaskInfo.env_spec`), cut at
    `TaskInfo.max_episode_steps` (1000) steps, with float32 observations and a float32
    `observation_space`. The outermost wrapper carries the `TaskInfo` (see `task_of`).

    Seeding follows the evaluation protocol (seed once, then run episodes one after the other):
    `seed` is passed to the first `reset()` that is not given a seed of its own, and later resets
    continue the environment's random stream; the action space is seeded with `seed` too.

    Args:
        task: a D4RL task name such as `hopper-medium-v2`, or its parsed `TaskInfo`.
        seed: seed of the first reset and of the action space; `None` leaves both unseeded.

    Returns:
        The wrapped gymnasium environment.

    Raises:
        TaskError: `task` is not a D4RL MuJoCo locomotion task or a usable Minari dataset.
        EnvUnavailableError: a Minari dataset's recorded environment cannot be made here, or
            its spaces are not the dataset's.
        ImportError: gymnasium or mujoco is not installed.
    """
    info = task if isinstance(task, TaskInfo) else parse_task(task)
    try:
        import gymnasium as gym
        import mujoco
    except ImportError as exc:
        raise ImportError(
            f"the {info.robot} simulator needs gymnasium's MuJoCo environments ({exc}): "
            f"install them with `{_INSTALL_HINT}`"
        ) from exc
    from offlinerlkit.envs.wrappers import TaskEnv

    with warnings.catch_warnings(), _mujoco_warnings_to_logging(mujoco):
        warnings.filterwarnings("ignore", message=_V4_DEPRECATION, category=DeprecationWarning)
        env = (gym.make(info.gym_id, max_episode_steps=info.max_episode_steps)
               if info.env_spec is None else _make_recorded(gym, info))
    env = TaskEnv(env, info, seed=seed)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def _make_recorded(gym: ModuleType, info: TaskInfo) -> gymnasium.Env:
    """The environment of `info.env_spec` (a Minari dataset's), checked against its sizes."""
    from gymnasium.envs.registration import EnvSpec

    what = f"the environment {info.gym_id} that {info.name} records"
    try:
        env = gym.make(EnvSpec.from_json(info.env_spec), max_episode_steps=info.max_episode_steps)
    except Exception as exc:  # gymnasium raises many types (Error, ImportError, TypeError, ...)
        raise EnvUnavailableError(
            f"{what} cannot be made here ({type(exc).__name__}: {exc}); install what it needs "
            f"(for MuJoCo: {_INSTALL_HINT}, a gymnasium that has {info.gym_id})") from exc
    sizes = (env.observation_space.shape, env.action_space.shape)
    if sizes != ((info.obs_dim,), (info.action_dim,)):
        env.close()
        raise EnvUnavailableError(
            f"{what} has observation/action shapes {sizes[0]}/{sizes[1]} here, but the dataset "
            f"has {info.obs_dim}/{info.action_dim}; use the gymnasium version it was made with")
    return env


@contextlib.contextmanager
def _mujoco_warnings_to_logging(mujoco: ModuleType) -> Iterator[None]:
    """Send MuJoCo's warnings to `logging` while the model compiles.

    MuJoCo's default handler prints them and appends them to `MUJOCO_LOG.TXT` in the working
    directory. The known `settotalmass` deprecation goes to DEBUG, anything else to WARNING. The
    previous handler is restored afterwards.
    """

    def handler(message: str) -> None:
        level = logging.DEBUG if _KNOWN_MUJOCO_WARNING in message else logging.WARNING
        logger.log(level, "MuJoCo: %s", message)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def task_of(env: gymnasium.Env) -> TaskInfo | None:
    """The `TaskInfo` an environment was made for by `make_env`, or `None` for any other env.

    Looks through any wrappers added on top of the one `make_env` returns.
    """
    current = env
    while current is not None:
        task = getattr(current, "task", None)
        if isinstance(task, TaskInfo):
            return task
        current = getattr(current, "env", None)
    return None
