"""Fixed-capacity transition storage held as tensors on one device."""
from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.types import Batch
from offlinerlkit.utils.fileio import atomic_write

_FIELDS = ("obs", "action", "reward", "next_obs", "done")


class ReplayBuffer:
    """A ring buffer of transitions on `device` (spec 2.2), sampled uniformly with replacement.

    The dataset buffer is filled once with `load_dataset`; the model-rollout buffer grows with
    `add_batch`, overwriting its oldest rows when full. Shapes: obs/next_obs `[C, obs_dim]`,
    action `[C, action_dim]`, reward/done `[C, 1]`, all float32.

    `set_anchors` attaches COCOA's anchors of the stored `obs` and `next_obs` (computed once,
    e.g. by the trainer for a fixed dataset); samples then carry them. A later `add_batch`
    without anchors drops them. A buffer filled by `add_batch` calls that all pass anchors
    (the model-rollout buffer) keeps them per row, and saves them with its state.

    Args:
        capacity: maximum number of transitions held.
        obs_dim: observation size.
        action_dim: action size.
        device: where the tensors live (sampling returns tensors there).
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, *,
                 device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.obs_dim, self.action_dim = int(capacity), int(obs_dim), int(action_dim)
        self.device = torch.device(device)
        widths = {"obs": obs_dim, "action": action_dim, "reward": 1, "next_obs": obs_dim, "done": 1}
        self._data = {k: torch.zeros(self.capacity, w, device=self.device) for k, w in widths.items()}
        self.ptr = 0
        self.size = 0
        self._anchors: dict[str, Tensor] | None = None

    # --- filling ---
    @classmethod
    def from_transitions(cls, data: Mapping[str, np.ndarray], *,
                         device: torch.device | str = "cpu") -> ReplayBuffer:
        """A buffer holding exactly a transition dict (`observations`, `actions`, ...)."""
        n = int(data["observations"].shape[0])
        buffer = cls(max(n, 1), data["observations"].shape[1], data["actions"].shape[1],
                     device=device)
        buffer.load_dataset(data)
        return buffer

    def load_dataset(self, data: Mapping[str, np.ndarray]) -> None:
        """Replace the contents with a transition dict; it must fit in the capacity."""
        batch = Batch.from_transitions(data, device=self.device)
        n = len(batch)
        if n > self.capacity:
            raise ValueError(f"dataset of {n} transitions exceeds the buffer capacity {self.capacity}")
        self._check_shapes(batch)
        for k in _FIELDS:
            self._data[k][:n] = getattr(batch, k)
        self.ptr, self.size = n % self.capacity, n
        self._anchors = None

    def add_batch(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor,
                  done: Tensor, *, obs_anchor: Tensor | None = None,
                  next_obs_anchor: Tensor | None = None) -> None:
        """Append rows at the write pointer, wrapping around (and overwriting) when full.

        With `obs_anchor` and `next_obs_anchor` (`[n, obs_dim]`) the rows keep their anchors;
        this needs a buffer that is empty or whose every row was added with anchors.
        """
        batch = Batch(obs, action, reward.reshape(-1, 1), next_obs, done.reshape(-1, 1).float())
        self._check_shapes(batch)
        n = len(batch)
        # row i goes to (ptr + i) mod capacity; when n > capacity only the last `capacity` rows
        # survive, at the slots they would have overwritten last (the original's ring semantics)
        first = max(n - self.capacity, 0)
        idx = (self.ptr + torch.arange(first, n, device=self.device)) % self.capacity  # [kept]
        for k in _FIELDS:
            self._data[k][idx] = getattr(batch, k)[first:].to(self.device, torch.float32)
        if (obs_anchor is None) != (next_obs_anchor is None):
            raise ValueError("add_batch: give both obs_anchor and next_obs_anchor, or neither")
        if obs_anchor is None:
            self._anchors = None
        else:
            self._add_anchors(idx, first, n, obs_anchor, next_obs_anchor)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _add_anchors(self, idx: Tensor, first: int, n: int, obs_anchor: Tensor,
                     next_obs_anchor: Tensor) -> None:
        for name, anchor in (("obs_anchor", obs_anchor), ("next_obs_anchor", next_obs_anchor)):
            if tuple(anchor.shape) != (n, self.obs_dim):
                raise ValueError(f"replay buffer: {name} has shape {tuple(anchor.shape)}, "
                                 f"expected ({n}, {self.obs_dim}), one per added row")
        stored = self._anchors
        if stored is None or stored["obs_anchor"].shape[0] != self.capacity:
            if self.size > 0:
                raise ValueError("replay buffer: rows added with anchors to a buffer whose rows "
                                 "have none; add every row with its anchors")
            stored = {k: torch.zeros(self.capacity, self.obs_dim, device=self.device)
                      for k in ("obs_anchor", "next_obs_anchor")}
        stored["obs_anchor"][idx] = obs_anchor[first:].detach().to(self.device, torch.float32)
        stored["next_obs_anchor"][idx] = next_obs_anchor[first:].detach().to(self.device,
                                                                              torch.float32)
        self._anchors = stored

    def set_anchors(self, obs_anchor: Tensor, next_obs_anchor: Tensor) -> None:
        """Attach the anchors of the stored `obs` and `next_obs` rows (`[size, obs_dim]` each)."""
        for name, anchor in (("obs_anchor", obs_anchor), ("next_obs_anchor", next_obs_anchor)):
            if tuple(anchor.shape) != (self.size, self.obs_dim):
                raise ValueError(f"replay buffer: {name} has shape {tuple(anchor.shape)}, "
                                 f"expected ({self.size}, {self.obs_dim}), one per stored row")
        self._anchors = {"obs_anchor": obs_anchor.detach().to(self.device, torch.float32),
                         "next_obs_anchor": next_obs_anchor.detach().to(self.device, torch.float32)}

    @property
    def has_anchors(self) -> bool:
        """Whether samples carry precomputed anchors."""
        return self._anchors is not None

    def _check_shapes(self, batch: Batch) -> None:
        n = len(batch)
        expected = {"obs": (n, self.obs_dim), "action": (n, self.action_dim), "reward": (n, 1),
                    "next_obs": (n, self.obs_dim), "done": (n, 1)}
        for k, shape in expected.items():
            got = tuple(getattr(batch, k).shape)
            if got != shape:
                raise ValueError(f"replay buffer: field {k!r} has shape {got}, expected {shape}")

    # --- reading ---
    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> Batch:
        """`batch_size` rows drawn uniformly with replacement."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=gen_device)
        idx = idx.to(self.device)
        anchors = {k: v[idx] for k, v in self._anchors.items()} if self._anchors else {}
        return Batch(*(self._data[k][idx] for k in _FIELDS), **anchors)

    def stored(self, field: str) -> Tensor:
        """A read-only view of one field's stored rows (`obs`, `next_obs`, ...), storage order."""
        if field not in _FIELDS:
            raise KeyError(f"unknown buffer field {field!r}; one of {_FIELDS}")
        return self._data[field][: self.size]

    def sample_all(self) -> Batch:
        """Copies of all stored rows, in storage order."""
        anchors = {k: v.clone() for k, v in self._anchors.items()} if self._anchors else {}
        return Batch(*(self._data[k][: self.size].clone() for k in _FIELDS), **anchors)

    # --- persistence (arrays, never pickled objects) ---
    def state_dict(self) -> dict[str, Tensor | int]:
        """The stored rows (first `size` only), their anchors if any, the pointer, the capacity."""
        state: dict[str, Tensor | int] = {k: self._data[k][: self.size].cpu().clone() for k in _FIELDS}
        for k, v in (self._anchors or {}).items():
            state[k] = v[: self.size].cpu().clone()
        state.update(ptr=self.ptr, size=self.size, capacity=self.capacity)
        return state

    def load_state_dict(self, state: Mapping[str, Tensor | int | np.ndarray]) -> None:
        """Restore rows and pointers saved by `state_dict` (capacity and sizes must match)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"buffer capacity mismatch: saved {int(state['capacity'])}, "
                             f"this buffer {self.capacity}")
        size = int(state["size"])
        for k in _FIELDS:
            rows = torch.as_tensor(np.asarray(state[k]) if isinstance(state[k], np.ndarray)
                                   else state[k], dtype=torch.float32)
            if rows.shape[0] != size or rows.shape[1] != self._data[k].shape[1]:
                raise ValueError(f"saved buffer field {k!r} has shape {tuple(rows.shape)}, expected "
                                 f"({size}, {self._data[k].shape[1]})")
            self._data[k][:size] = rows.to(self.device)
        self.size, self.ptr = size, int(state["ptr"])
        self._anchors = None
        if "obs_anchor" in state and "next_obs_anchor" in state:
            self._anchors = {k: torch.zeros(self.capacity, self.obs_dim, device=self.device)
                             for k in ("obs_anchor", "next_obs_anchor")}
            for k in self._anchors:
                self._anchors[k][:size] = torch.as_tensor(np.asarray(state[k]), dtype=torch.float32
                                                          ).to(self.device)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the buffer to an `.npz` file atomically (temporary file, then rename)."""
        state = self.state_dict()
        arrays = {k: (v.numpy() if isinstance(v, Tensor) else np.asarray(v)) for k, v in state.items()}
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    def load(self, path: str | os.PathLike) -> None:
        """Restore a buffer written by `save`."""
        try:
            with np.load(Path(path)) as npz:
                state = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise ValueError(f"cannot read replay buffer file {path}: {err}; it may be truncated "
                             "or from another program") from err
        self.load_state_dict({k: (int(v) if v.ndim == 0 else v) for k, v in state.items()})
