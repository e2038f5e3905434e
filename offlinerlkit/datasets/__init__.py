"""Datasets: finding, reading, writing and preprocessing offline RL data.

* `load_dataset(task)` finds a task's data on this machine (`find_dataset`, never downloading)
  and returns the transition dict `observations (N,S) f32`, `actions (N,A) f32`,
  `next_observations (N,S) f32`, `rewards (N,) f32`, `terminals (N,) bool`.
* `qlearning_dataset` is D4RL's preprocessing (COCOA spec section 2.1), vectorised.
* `read_d4rl_hdf5` / `write_d4rl_hdf5` read and write the D4RL HDF5 layout, validating it;
  `read_hdf5_metadata` reads only a file's `metadata/`.
* Minari (`minari:<dataset id>` tasks) is optional and imported only when used.

Importing this package imports numpy only (h5py, d4rl and minari are imported on use).
"""
from offlinerlkit.datasets.checks import DatasetAnomalyError, check_dataset_values
from offlinerlkit.datasets.errors import DatasetError, DatasetNotFoundError
from offlinerlkit.datasets.hdf5 import (
    read_d4rl_hdf5,
    read_hdf5_metadata,
    validate_d4rl_arrays,
    write_d4rl_hdf5,
)
from offlinerlkit.datasets.loading import (
    D4RL_DIR_ENV,
    DatasetSource,
    d4rl_dataset_dir,
    find_dataset,
    load_dataset,
    load_from_source,
)
from offlinerlkit.datasets.minari_data import (
    MINARI_PREFIX,
    episodes_to_transitions,
    minari_dataset_dir,
    read_minari_episodes,
)
from offlinerlkit.datasets.qlearning import REQUIRED_KEYS, qlearning_dataset

__all__ = [
    "D4RL_DIR_ENV",
    "MINARI_PREFIX",
    "REQUIRED_KEYS",
    "DatasetAnomalyError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSource",
    "check_dataset_values",
    "d4rl_dataset_dir",
    "episodes_to_transitions",
    "find_dataset",
    "load_dataset",
    "load_from_source",
    "minari_dataset_dir",
    "qlearning_dataset",
    "read_d4rl_hdf5",
    "read_hdf5_metadata",
    "read_minari_episodes",
    "validate_d4rl_arrays",
    "write_d4rl_hdf5",
]
