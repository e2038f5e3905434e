"""Simulators for evaluating D4RL MuJoCo tasks.

`make_env` builds gymnasium's `-v4` environment of a task's robot (the same model and reward as
the mujoco-py `-v2` environments D4RL recorded with), with a 1000-step time limit and float32
observations; a Minari task gets the environment its dataset records (`EnvUnavailableError` when
it cannot be made here). `task_of` reads back the task an environment was made for.

Importing this package costs nothing: gymnasium and mujoco are imported by `make_env`.
"""
from offlinerlkit.envs.make import EnvUnavailableError, make_env, task_of

__all__ = ["EnvUnavailableError", "make_env", "task_of"]
