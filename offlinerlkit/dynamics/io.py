"""Saving and loading dynamics ensembles, ours and the original implementation's (spec §3.5, §9.2).

A dynamics folder (`<run>/model/`, `<run>/checkpoint_last/` or `<run>/checkpoint_best/`) holds
`dynamics.pth` (forward) or `reverse_dynamics.pth` (reverse), plus the input scaler as `mu.npy`
and `std.npy` of shape `(1, S + A)`.

* Our `.pth` is a dict `{"format": "cocoa-rl/dynamics", "format_version": 1, "state_dict": ...,
  "metadata": {...}}`; the metadata (task, sizes, architecture, direction, weight decays) makes
  the file self-describing. The scaler is also inside the state dict (`in_mean`, `in_std`).
* The original's `.pth` is the bare state dict of its `EnsembleDynamicsModel`:
  `backbones.{i}.{weight,bias,saved_weight,saved_bias}`, `output_layer.{same four}`,
  `max_logvar`, `min_logvar`, `elites` (weights `(E, in, out)`, biases `(E, 1, out)`). Its
  architecture comes from the weight shapes (cross-checked against `../record/hyper_param.json`
  when present) and its scaler from `mu.npy`/`std.npy` (or the original's `mu.pt`/`std.pt`).
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.dynamics.ensemble_dynamics import Direction, EnsembleDynamics, TerminationFn
from offlinerlkit.utils.checkpoint import load_finite_state
from offlinerlkit.utils.errors import UserError
from offlinerlkit.utils.fileio import atomic_write, plain_data
from offlinerlkit.utils.run_record import (
    HYPER_PARAM_FILE,
    check_provenance,
    find_hyper_value,
    hyper_mismatch,
    read_hyper_params,
)
from offlinerlkit.utils.scaler import MU_FILE, STD_FILE, StandardScaler

logger = logging.getLogger(__name__)

FILE_NAMES: dict[str, str] = {"forward": "dynamics.pth", "reverse": "reverse_dynamics.pth"}
FORMAT, FORMAT_VERSION = "cocoa-rl/dynamics", 1
#: Sub-folders of a run folder searched, in order, for a dynamics file.
RUN_SUBDIRS = ("model", "checkpoint_last")
_ORIGINAL_LAYER = re.compile(r"^(backbones\.(\d+)|output_layer)\.(weight|bias|saved_weight|saved_bias)$")
_ARCH_KEYS = ("direction", "with_reward", "obs_dim", "action_dim", "hidden_dims", "num_members",
              "num_elites", "weight_decays")


class DynamicsFileError(UserError, ValueError):
    """A dynamics file exists but cannot be used: corrupt, or made for another task or size."""


def dynamics_file_name(direction: Direction) -> str:
    """`dynamics.pth` (forward) or `reverse_dynamics.pth` (reverse)."""
    if direction not in FILE_NAMES:
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    return FILE_NAMES[direction]


# --- saving ---
def save_dynamics(
    directory: str | os.PathLike,
    dynamics: EnsembleDynamics,
    *,
    metadata: Mapping[str, Any],
    state_dict: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write `dynamics.pth` / `reverse_dynamics.pth`, `mu.npy` and `std.npy` into `directory`.

    Every file is written atomically (temporary file, then `os.replace`), so a crash never
    leaves a half-written checkpoint; rewriting a run's own `checkpoint_last/` every epoch is the
    intended use.

    Args:
        directory: the folder to write (created if needed).
        dynamics: the dynamics to save.
        metadata: provenance stored in the file, at least `task` (may be None); values must be
            plain Python (str, numbers, bools, None, lists, dicts). Architecture keys
            (`obs_dim`, `hidden_dims`, ...) are filled in from the model and must agree if given.
        state_dict: the model state to write instead of the in-memory one (e.g.
            `FitResult.saved_state`); it must fit the model.

    Returns:
        The path of the `.pth` file.
    """
    model = dynamics.model
    state = {name: t.detach().to("cpu", copy=True) for name, t in (state_dict or model.state_dict()).items()}
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise ValueError("save_dynamics: state_dict does not fit the model (different keys or shapes)")
    meta = plain_data(dict(metadata), "save_dynamics: metadata")
    arch = _architecture(dynamics)
    for key, value in arch.items():
        if key in meta and meta[key] != value:
            raise ValueError(f"save_dynamics: metadata[{key!r}] = {meta[key]!r} but the model has {value!r}")
    meta.update(arch)
    meta.setdefault("task", None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    StandardScaler(state["in_mean"].numpy(), state["in_std"].numpy()).save(directory)
    path = directory / dynamics_file_name(dynamics.direction)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": meta}
    return atomic_write(path, lambda f: torch.save(payload, f))


def _architecture(dynamics: EnsembleDynamics) -> dict[str, Any]:
    model = dynamics.model
    return {
        "direction": dynamics.direction,
        "with_reward": dynamics.with_reward,
        "obs_dim": dynamics.obs_dim,
        "action_dim": dynamics.action_dim,
        "hidden_dims": list(model.hidden_dims),
        "num_members": model.num_members,
        "num_elites": model.num_elites,
        "weight_decays": list(model.weight_decays),
    }


# --- loading ---
def resolve_dynamics_dir(path: str | os.PathLike, direction: Direction = "forward") -> Path:
    """The folder holding the dynamics file for `path`.

    `path` may be a dynamics folder (`model/`, `checkpoint_last/`, `checkpoint_best/`), the
    `.pth` file itself, or a run folder (then `model/` is preferred, else `checkpoint_last/`).

    Raises:
        FileNotFoundError: nothing usable at `path`.
        DynamicsFileError: only the other direction's file is there.
    """
    name = dynamics_file_name(direction)
    other_direction = "reverse" if direction == "forward" else "forward"
    other = dynamics_file_name(other_direction)  # type: ignore[arg-type]
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"dynamics path {root} does not exist: pass a run folder, or its model/, "
            "checkpoint_last/ or checkpoint_best/ folder"
        )
    if root.is_file():
        if root.name == name:
            return root.parent
        if root.name == other:
            raise DynamicsFileError(f"{root} holds {other_direction} dynamics, but {direction} dynamics "
                                    f"were requested; pass the folder with {name} or "
                                    f"direction={other_direction!r}")
        raise FileNotFoundError(f"{root} is not a dynamics file: expected {name} or its folder")
    candidates = [root, *(root / sub for sub in RUN_SUBDIRS)]
    for folder in candidates:
        if (folder / name).is_file():
            return folder
    for folder in candidates:
        if (folder / other).is_file():
            raise DynamicsFileError(
                f"{folder} holds {other} ({other_direction} dynamics) but no {name}: "
                f"{direction} dynamics were requested; pass direction={other_direction!r} or the "
                f"folder of a {direction} dynamics run"
            )
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no {name} found for {root} (looked in {looked}): pass a run folder, or its model/, "
        "checkpoint_last/ or checkpoint_best/ folder of a finished dynamics training"
    )


def load_dynamics(
    path: str | os.PathLike,
    *,
    task: str | None,
    obs_dim: int | None,
    action_dim: int | None,
    direction: Direction = "forward",
    device: torch.device | str = "cpu",
    termination_fn: TerminationFn | None = None,
    **dynamics_kwargs: Any,
) -> EnsembleDynamics:
    """Load dynamics saved by `save_dynamics` or by the original implementation.

    The architecture is rebuilt from the file (our metadata, or the original's weight shapes
    cross-checked against `<folder>/../record/hyper_param.json`, whose keys may be the
    original's `dynamics_hidden_dims` / `n_ensemble` / `n_elites` or ours `num_ensemble` /
    `num_elites`).

    Args:
        path: see `resolve_dynamics_dir`.
        task: the task the caller works on; refused if the file says another (None: no check).
        obs_dim: expected observation size (None: no check).
        action_dim: expected action size (None: no check).
        direction: `"forward"` (`dynamics.pth`) or `"reverse"` (`reverse_dynamics.pth`).
        device: where to put the model.
        termination_fn: forwarded to `EnsembleDynamics` (forward only).
        **dynamics_kwargs: other `EnsembleDynamics` options (`penalty_coef`, `uncertainty_mode`).

    Raises:
        FileNotFoundError: the folder, the `.pth` file or (original format) the scaler is missing.
        DynamicsFileError: a corrupt file, or a task / size / direction mismatch.
    """
    folder = resolve_dynamics_dir(path, direction)
    file = folder / dynamics_file_name(direction)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle means the file is unusable
        raise DynamicsFileError(f"cannot read {file} ({type(exc).__name__}; details above): the file "
                                "is corrupt or not a dynamics checkpoint; copy it again or re-run "
                                "dynamics training") from exc
    hyper = read_hyper_params(folder.parent, error=DynamicsFileError)
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        state, arch, file_task = _from_ours(payload, file, folder, direction)
    elif isinstance(payload, Mapping) and "output_layer.weight" in payload:
        state, arch = _from_original(payload, file, folder, direction, hyper)
        file_task = None
    else:
        raise DynamicsFileError(f"{file} is neither a cocoa-rl dynamics file nor an original dynamics "
                                "state dict; re-run dynamics training")
    _check_against_hyper_params(arch, hyper, folder, file)
    check_provenance(file, file_task=file_task, hyper=hyper, run_path=folder.parent, task=task,
                     arch=arch, expected={"obs_dim": obs_dim, "action_dim": action_dim},
                     kind="dynamics", verb="models", error=DynamicsFileError)
    model = GaussianEnsemble(
        arch["obs_dim"] + arch["action_dim"],
        arch["obs_dim"] + int(direction == "forward"),
        arch["hidden_dims"],
        num_members=arch["num_members"],
        num_elites=arch["num_elites"],
        weight_decays=arch["weight_decays"],
    )
    load_finite_state(model, state, file=file, error=DynamicsFileError,
                      if_diverged="the training that saved it diverged; train the dynamics again")
    elites = model.elite_idx.tolist()
    if len(set(elites)) != len(elites) or min(elites) < 0 or max(elites) >= model.num_members:
        raise DynamicsFileError(f"{file} has invalid elite indices {elites}")
    model.to(device).eval()
    return EnsembleDynamics(model, direction=direction, termination_fn=termination_fn, **dynamics_kwargs)


def _from_ours(payload: Mapping[str, Any], file: Path, folder: Path, direction: Direction
               ) -> tuple[dict[str, Tensor], dict[str, Any], str | None]:
    meta, state = payload.get("metadata"), payload.get("state_dict")
    if payload.get("format_version") != FORMAT_VERSION or not isinstance(meta, Mapping) or (
        not isinstance(state, Mapping) or any(k not in meta for k in _ARCH_KEYS)
    ):
        raise DynamicsFileError(f"{file} is an incomplete or unsupported cocoa-rl dynamics file "
                                f"(format_version {payload.get('format_version')!r}); re-run dynamics training")
    if meta["direction"] != direction:
        raise DynamicsFileError(f"{file} holds {meta['direction']} dynamics, but {direction} were requested")
    arch = {k: meta[k] for k in _ARCH_KEYS}
    arch["hidden_dims"] = [int(h) for h in arch["hidden_dims"]]
    if (folder / MU_FILE).is_file() and (folder / STD_FILE).is_file():
        try:
            scaler = StandardScaler.load(folder)
        except ValueError as exc:
            raise DynamicsFileError(str(exc)) from exc
        in_mean, in_std = state.get("in_mean"), state.get("in_std")
        if in_mean is None or in_std is None or in_mean.numel() != scaler.dim or not (
            np.allclose(scaler.mu[0], in_mean.numpy()) and np.allclose(scaler.std[0], in_std.numpy())
        ):
            raise DynamicsFileError(f"{folder / MU_FILE} / {STD_FILE} disagree with the scaler stored "
                                    f"in {file}; the folder mixes files of two runs")
    task = meta.get("task")
    return dict(state), arch, (str(task) if task is not None else None)


def _from_original(state: Mapping[str, Any], file: Path, folder: Path, direction: Direction,
                   hyper: Mapping[str, Any] | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    def bad(why: str) -> DynamicsFileError:
        return DynamicsFileError(f"{file} looks like an original dynamics state dict but {why}; "
                                 "it is corrupt or from an unsupported version")

    layers: dict[int, dict[str, Tensor]] = {}
    extra = {}
    for key, value in state.items():
        match = _ORIGINAL_LAYER.match(key)
        if match is None:
            extra[key] = value
            continue
        index = int(match[2]) if match[2] is not None else -1  # -1: the output layer
        layers.setdefault(index, {})[match[3]] = value
    if set(extra) != {"max_logvar", "min_logvar", "elites"}:
        raise bad(f"has keys {sorted(extra)} besides the layers (expected max_logvar, min_logvar, elites)")
    hidden_idx = sorted(i for i in layers if i >= 0)
    if hidden_idx != list(range(len(hidden_idx))) or -1 not in layers:
        raise bad(f"its layers are numbered {hidden_idx} (expected backbones.0..n-1 and output_layer)")
    ordered = [layers[i] for i in hidden_idx] + [layers[-1]]
    converted: dict[str, Tensor] = {}
    prev_out, num_members = None, None
    for i, layer in enumerate(ordered):
        if "weight" not in layer or "bias" not in layer:
            raise bad(f"layer {i} lacks its weight or bias")
        weight, bias = layer["weight"].float(), layer["bias"].float()
        members, d_in, d_out = weight.shape if weight.dim() == 3 else (None, None, None)
        if members is None or bias.shape != (members, 1, d_out) or (
            num_members is not None and members != num_members) or (prev_out is not None and d_in != prev_out):
            raise bad(f"layer {i} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; expected "
                      "(E, in, out) and (E, 1, out) chaining from layer to layer")
        num_members, prev_out = members, d_out
        prefix = "output_layer" if i == len(ordered) - 1 else f"layers.{i}"
        converted[f"{prefix}.weight"], converted[f"{prefix}.bias"] = weight, bias
    in_dim = int(ordered[0]["weight"].shape[1])
    if prev_out % 2:
        raise bad(f"its output layer has an odd width {prev_out} (expected 2 * (S + with_reward))")
    out_dim = prev_out // 2
    obs_dim = out_dim - int(direction == "forward")
    action_dim = in_dim - obs_dim
    if obs_dim < 1 or action_dim < 1:
        raise bad(f"input width {in_dim} and output width {out_dim} do not fit {direction} dynamics")
    for name in ("max_logvar", "min_logvar"):
        value = state[name].float().reshape(-1)
        if value.numel() != out_dim:
            raise bad(f"{name} has {value.numel()} entries, expected {out_dim}")
        converted[name] = value
    elites = state["elites"].reshape(-1).to(torch.int64)
    converted["elite_idx"] = elites
    try:
        scaler = StandardScaler.load(folder)
    except ValueError as exc:
        raise DynamicsFileError(str(exc)) from exc
    if scaler.dim != in_dim:
        raise DynamicsFileError(f"the scaler in {folder} has {scaler.dim} entries but {file} takes "
                                f"{in_dim} inputs; the folder mixes files of two runs")
    converted["in_mean"] = torch.as_tensor(scaler.mu[0])
    converted["in_std"] = torch.as_tensor(scaler.std[0])
    decays = find_hyper_value(hyper, ("dynamics_weight_decay",), nested_keys=("weight_decays", "weight_decay"), section="dynamics") if hyper else None
    num_layers = len(ordered)
    if not (isinstance(decays, list) and len(decays) == num_layers):
        decays = [0.0] * num_layers
    arch = {
        "direction": direction,
        "with_reward": direction == "forward",
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "hidden_dims": [int(layer["weight"].shape[2]) for layer in ordered[:-1]],
        "num_members": int(num_members),
        "num_elites": int(elites.numel()),
        "weight_decays": [float(w) for w in decays],
    }
    return converted, arch


def _check_against_hyper_params(arch: Mapping[str, Any], hyper: Mapping[str, Any] | None,
                                folder: Path, file: Path) -> None:
    if not hyper:
        return
    checks = (
        ("hidden_dims", ("dynamics_hidden_dims",), ("hidden_dims",), lambda v: [int(h) for h in v]),
        ("num_members", ("n_ensemble", "num_ensemble"), ("num_members",), int),
        ("num_elites", ("n_elites", "num_elites"), (), int),
    )
    mismatch = hyper_mismatch(arch, hyper, checks, section="dynamics")
    if mismatch is not None:
        name, value = mismatch
        raise DynamicsFileError(f"{file} has {name}={arch[name]} but {folder.parent / HYPER_PARAM_FILE} "
                                f"says {value}; the folder mixes files of two runs")


