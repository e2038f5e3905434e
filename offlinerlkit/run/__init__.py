"""The run wiring of the scripts in `run_example/` (the layer just below them).

A script parses its config, calls `prepare_run` (threads, device, seed, task, data), builds its
networks and policy itself, opens its run with `open_policy_run` (speed options, buffer, run
folder, logger: a `RunContext`), builds its trainer from `RunContext.trainer_options()` and
calls `train_policy`. The dynamics stage is `run_dynamics_training`; artifact stages resume
with `restart_stage` and mark finished steps with `save_step` / `load_step`. No function here takes a callback or builds a
model the script could build.
"""
from offlinerlkit.run.dynamics_run import run_dynamics_training
from offlinerlkit.run.policy_run import (
    RunContext,
    anchor_setup,
    load_anchor_dynamics,
    open_policy_run,
    train_policy,
)
from offlinerlkit.run.setup import (
    RunInputs,
    clear_steps,
    load_step,
    load_task_data,
    open_run,
    prepare_run,
    restart_stage,
    save_step,
)

__all__ = ["RunContext", "RunInputs", "anchor_setup", "clear_steps", "load_anchor_dynamics", "load_step",
           "load_task_data", "open_policy_run", "open_run", "prepare_run", "restart_stage",
           "run_dynamics_training", "save_step", "train_policy"]
