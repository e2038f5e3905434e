"""Per-dimension input standardisation for the dynamics ensembles (spec §3.2).

`StandardScaler` keeps the fitted mean and standard deviation as numpy arrays of shape `(1, D)`;
those arrays are the truth, written to `mu.npy` / `std.npy`. Tensor transforms use device copies
cached per `(device, dtype)`, so transforming a tensor never changes what is saved (the original
switched its arrays to torch in place and then saved `.pt` files instead, spec §12 item 20).
Loading reads `.npy` first and falls back to the original's `mu.pt` / `std.pt`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

#: Standard deviations below this are replaced by 1 (constant input dimensions).
MIN_STD = 1e-12
MU_FILE, STD_FILE = "mu.npy", "std.npy"
MU_FILE_ORIGINAL, STD_FILE_ORIGINAL = "mu.pt", "std.pt"


class StandardScaler:
    """Standardise inputs per dimension: `x -> (x - mu) / std`.

    Shapes: `mu`, `std` are float32 numpy arrays `(1, D)`; `transform` takes `(..., D)` arrays or
    tensors. `std < 1e-12` is replaced by 1 when fitting, so constant dimensions map to 0.

    Args:
        mu: optional mean, any shape with `D` elements.
        std: optional standard deviation, same size as `mu`.
    """

    def __init__(self, mu: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self._mu: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}
        if (mu is None) != (std is None):
            raise ValueError("StandardScaler: give both mu and std, or neither")
        if mu is not None and std is not None:
            self.set(mu, std)

    # --- state ---
    @property
    def is_fitted(self) -> bool:
        return self._mu is not None

    @property
    def mu(self) -> np.ndarray:
        """Mean, float32 `(1, D)`."""
        return self._checked()[0]

    @property
    def std(self) -> np.ndarray:
        """Standard deviation, float32 `(1, D)` (no entry below 1e-12)."""
        return self._checked()[1]

    @property
    def dim(self) -> int:
        return int(self.mu.shape[1])

    def set(self, mu: np.ndarray, std: np.ndarray) -> StandardScaler:
        """Set the statistics (flattened to `(1, D)` float32); returns self."""
        mu = np.asarray(mu, dtype=np.float32).reshape(1, -1)
        std = np.asarray(std, dtype=np.float32).reshape(1, -1)
        if mu.shape != std.shape:
            raise ValueError(f"StandardScaler: mu {mu.shape} and std {std.shape} differ in size")
        if not (np.isfinite(mu).all() and np.isfinite(std).all()) or (std <= 0).any():
            raise ValueError("StandardScaler: mu/std must be finite and std positive")
        self._mu, self._std = mu.copy(), std.copy()
        self._cache.clear()
        return self

    def fit(self, data: np.ndarray | Tensor) -> StandardScaler:
        """Fit mean and (population) std over the rows of `data` `(N, D)`; returns self."""
        if isinstance(data, Tensor):
            data = data.detach().cpu().numpy()
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"StandardScaler.fit expects a non-empty (N, D) array, got {data.shape}")
        mu = np.mean(data, axis=0, keepdims=True)
        std = np.std(data, axis=0, keepdims=True)
        std[std < MIN_STD] = 1.0
        return self.set(mu, std)

    # --- transforms ---
    def transform(self, data: np.ndarray) -> np.ndarray:
        """`(data - mu) / std` for a numpy array `(..., D)`."""
        return (np.asarray(data, dtype=np.float32) - self.mu) / self.std

    def inverse_transform(self, data: np.ndarray) -> np.ndarray:
        """`data * std + mu` for a numpy array `(..., D)`."""
        return np.asarray(data, dtype=np.float32) * self.std + self.mu

    def tensors(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                ) -> tuple[Tensor, Tensor]:
        """`(mu, std)` as `[D]` tensors on `device`, cached (the numpy arrays stay the truth)."""
        key = (torch.device(device), dtype)
        if key not in self._cache:
            mu, std = self._checked()
            self._cache[key] = (
                torch.as_tensor(mu[0], dtype=dtype, device=key[0]),
                torch.as_tensor(std[0], dtype=dtype, device=key[0]),
            )
        return self._cache[key]

    def transform_tensor(self, data: Tensor) -> Tensor:
        """`(data - mu) / std` for a tensor `[..., D]` on any device."""
        mu, std = self.tensors(data.device, data.dtype)
        return (data - mu) / std

    # --- files ---
    def save(self, directory: str | os.PathLike) -> None:
        """Write `mu.npy` and `std.npy` (float32, shape `(1, D)`) into `directory`, atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        mu, std = self._checked()
        for name, array in ((MU_FILE, mu), (STD_FILE, std)):
            _atomic_write_npy(directory / name, array)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> StandardScaler:
        """Read `mu.npy`/`std.npy` from `directory`, else the original's `mu.pt`/`std.pt`.

        Raises:
            FileNotFoundError: neither pair exists.
            ValueError: a file cannot be read or the arrays are inconsistent.
        """
        directory = Path(directory)
        npy = (directory / MU_FILE, directory / STD_FILE)
        pt = (directory / MU_FILE_ORIGINAL, directory / STD_FILE_ORIGINAL)
        if all(p.is_file() for p in npy):
            paths, reader = npy, _read_npy
        elif all(p.is_file() for p in pt):
            paths, reader = pt, _read_pt
            logger.info("scaler: %s has no mu.npy/std.npy; reading the original's .pt files", directory)
        else:
            raise FileNotFoundError(
                f"no input scaler in {directory}: expected {MU_FILE} and {STD_FILE} (or the "
                f"original's {MU_FILE_ORIGINAL} and {STD_FILE_ORIGINAL}); copy them from the run "
                "that trained this model"
            )
        arrays = []
        for path in paths:
            try:
                arrays.append(reader(path))
            except Exception as exc:  # any read failure means a corrupt file
                raise ValueError(f"cannot read scaler file {path}: {exc}") from exc
        try:
            return cls(arrays[0], arrays[1])
        except ValueError as exc:
            raise ValueError(f"invalid scaler files in {directory}: {exc}") from exc

    def _checked(self) -> tuple[np.ndarray, np.ndarray]:
        if self._mu is None or self._std is None:
            raise RuntimeError("StandardScaler is not fitted: call fit() or load() first")
        return self._mu, self._std

    def __repr__(self) -> str:
        return f"StandardScaler(dim={self.dim})" if self.is_fitted else "StandardScaler(unfitted)"


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_pt(path: Path) -> np.ndarray:
    value = torch.load(path, map_location="cpu", weights_only=True)
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _atomic_write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
