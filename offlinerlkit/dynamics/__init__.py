"""Learned dynamics: the vectorised Gaussian ensemble, forward/reverse dynamics, training and file I/O.

Termination functions live in `offlinerlkit.dynamics.termination_fns` (imported from there).
"""
from offlinerlkit.dynamics.ensemble import (
    DEFAULT_HIDDEN_DIMS,
    DEFAULT_WEIGHT_DECAYS,
    GaussianEnsemble,
)
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics, TerminationFn, never_terminate
from offlinerlkit.dynamics.fit import FitResult, fit_ensemble
from offlinerlkit.dynamics.io import (
    DynamicsFileError,
    dynamics_file_name,
    load_dynamics,
    resolve_dynamics_dir,
    save_dynamics,
)

__all__ = [
    "DEFAULT_HIDDEN_DIMS",
    "DEFAULT_WEIGHT_DECAYS",
    "DynamicsFileError",
    "EnsembleDynamics",
    "FitResult",
    "GaussianEnsemble",
    "TerminationFn",
    "dynamics_file_name",
    "fit_ensemble",
    "load_dynamics",
    "never_terminate",
    "resolve_dynamics_dir",
    "save_dynamics",
]
