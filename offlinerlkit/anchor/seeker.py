"""The anchor-seeking policy and its file, `model/anchor_seeker_pretrain.pth` (spec §4.5, §4.7).

The file is a `torch.save` dict that the original code can load and ours reads with
`torch.load(weights_only=True)`::

    {"state_dict":    the seeker's parameters in the original's key layout
                      (backbone.model.{0,2,3,5}.* with LayerNorm, backbone.model.{0,2}.* without,
                      last.weight, last.bias),
     "random_states": {"np": (bit_generator, key int64 tensor [624], pos, has_gauss, cached),
                       "torch": ByteTensor, "torch_cuda": [ByteTensor, ...]},
     "metadata":      {"format", "format_version", "obs_dim", "action_dim", "hidden_dims",
                       "layernorm", "max_action", "task", ...}}

The original file has only the first two keys, with numpy's RNG state as numpy's own tuple
(a `uint32` array inside); `load_seeker` reads it by allowlisting exactly the numpy globals the
file needs, and rebuilds the architecture from the weight shapes.
"""
from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from offlinerlkit.nets.mlp import MLP
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
from offlinerlkit.utils.safe_pickle import numpy_safe_globals
from offlinerlkit.utils.seeding import get_rng_state

__all__ = ["SEEKER_FILE", "AnchorSeeker", "SeekerFileError", "load_seeker", "resolve_seeker_file",
           "save_seeker"]

logger = logging.getLogger(__name__)

SEEKER_FILE = "anchor_seeker_pretrain.pth"
FORMAT, FORMAT_VERSION = "cocoa-rl/anchor_seeker", 1
_ARCH_KEYS = ("obs_dim", "action_dim", "hidden_dims", "layernorm", "max_action")
_BACKBONE_KEY = re.compile(r"^backbone\.model\.(\d+)\.(weight|bias)$")


class SeekerFileError(UserError, ValueError):
    """An anchor-seeker file exists but cannot be used: corrupt, or made for another task/size."""


class AnchorSeeker(nn.Module):
    """COCOA's anchor-seeking policy `pi~`: a deterministic MLP from states to actions (spec §4.5).

        pi~(s) = m * tanh(W_out h(s) + b_out),   h = backbone(s)

    The backbone is `S -> hidden_dims`, each block `Linear -> ReLU -> (LayerNorm)`; there is no
    output LayerNorm. Anchors are found by rolling `pi~` through the forward model (see
    `rollout_anchor_fn`). Parameter names match the original's `AnchorActor`
    (`backbone.model.<i>.*`, `last.*`), so state dicts are interchangeable.

    Shapes: obs `[B, S]` -> actions `[B, A]` in `[-m, m]`.

    Args:
        obs_dim: `S`.
        action_dim: `A`.
        hidden_dims: hidden widths (the original's `anchor_seeker_hidden_dims`, `[100, 100]`).
        layernorm: LayerNorm after each hidden block (the original's `asp_layernorm`, on).
        max_action: `m`.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (100, 100), *,
                 layernorm: bool = True, max_action: float = 1.0) -> None:
        super().__init__()
        if not hidden_dims or min(hidden_dims) < 1 or obs_dim < 1 or action_dim < 1:
            raise ValueError(f"AnchorSeeker needs obs_dim, action_dim >= 1 and at least one hidden "
                             f"layer; got {obs_dim}, {action_dim}, {list(hidden_dims)}")
        if max_action <= 0:
            raise ValueError(f"max_action must be > 0, got {max_action}")
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.layernorm = bool(layernorm)
        self.max_action = float(max_action)  # a plain attribute: the state dict keeps the original's keys
        self.backbone = MLP(self.obs_dim, self.hidden_dims, layernorm=self.layernorm)
        self.last = nn.Linear(self.hidden_dims[-1], self.action_dim)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.last(self.backbone(obs))) * self.max_action  # [B, A]

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments, as stored in the file's metadata."""
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "hidden_dims": list(self.hidden_dims), "layernorm": self.layernorm,
                "max_action": self.max_action}

    def extra_repr(self) -> str:
        return (f"obs_dim={self.obs_dim}, action_dim={self.action_dim}, "
                f"hidden_dims={list(self.hidden_dims)}, layernorm={self.layernorm}, "
                f"max_action={self.max_action}")


# --- saving ---
def save_seeker(path: str | os.PathLike, seeker: AnchorSeeker, *,
                metadata: Mapping[str, Any]) -> Path:
    """Write `anchor_seeker_pretrain.pth` atomically (temporary file, fsync, `os.replace`).

    Args:
        path: a folder (normally `<run>/model/`, created if needed; the file gets the original's
            name) or a file path ending in `.pth`/`.pt`.
        seeker: the seeker to save.
        metadata: provenance stored in the file, at least `task` (may be None); plain Python
            values only. Architecture keys are filled in from the seeker and must agree if given.

    Returns:
        The path of the file.
    """
    path = Path(path)
    file = path if path.suffix in (".pth", ".pt") else path / SEEKER_FILE
    meta = plain_data(dict(metadata), "save_seeker: metadata")
    for key, value in seeker.architecture().items():
        if key in meta and meta[key] != value:
            raise ValueError(f"save_seeker: metadata[{key!r}] = {meta[key]!r} but the seeker has {value!r}")
        meta[key] = value
    meta.setdefault("task", None)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION)
    state = OrderedDict((k, v.detach().to("cpu", copy=True)) for k, v in seeker.state_dict().items())
    payload = {"state_dict": state, "random_states": _random_states(), "metadata": meta}
    return atomic_write(file, lambda f: torch.save(payload, f))


def _random_states() -> dict[str, Any]:
    """The original's `{np, torch, torch_cuda}`, with numpy's key as an int64 tensor.

    numpy's state tuple holds a `uint32` array, which weights-only loading cannot read without
    allowlisting numpy; an int64 tensor holds the same 624 words and both loaders read it.
    """
    state = get_rng_state()
    npst = state["numpy"]
    np_state = (npst["bit_generator"], npst["key"], npst["pos"], npst["has_gauss"],
                npst["cached_gaussian"])
    return {"np": np_state, "torch": state["torch"], "torch_cuda": list(state.get("cuda", []))}


# --- loading ---
def resolve_seeker_file(path: str | os.PathLike) -> Path:
    """The seeker file for `path`: the file itself, a folder holding it, or a run folder.

    Raises:
        FileNotFoundError: nothing at `path`, or no `anchor_seeker_pretrain.pth` there.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"anchor seeker path {root} does not exist: pass the run folder of "
                                f"an anchor-seeker run, its model/ folder, or the {SEEKER_FILE} file")
    if root.is_file():
        return root
    for folder in (root, root / "model"):
        if (folder / SEEKER_FILE).is_file():
            return folder / SEEKER_FILE
    raise FileNotFoundError(f"no {SEEKER_FILE} in {root} or {root / 'model'}: pass the run folder "
                            "of a finished anchor-seeker run, its model/ folder, or the file itself")


def load_seeker(
    path: str | os.PathLike,
    *,
    task: str | None,
    obs_dim: int | None,
    action_dim: int | None,
    hidden_dims: Sequence[int] | None = None,
    layernorm: bool | None = None,
    max_action: float | None = None,
    device: torch.device | str = "cpu",
) -> AnchorSeeker:
    """Load a seeker saved by `save_seeker` or by the original code, frozen and in eval mode.

    The architecture comes from the file: our metadata, or (original files) the key layout and
    weight shapes, cross-checked against `<folder>/../record/hyper_param.json` when present
    (`anchor_seeker_hidden_dims`, `asp_layernorm`/`seeker_layernorm`; `max_action` is read from
    it). The task is
    checked against the file's metadata and the JSON's `task` (at the top level as the original
    writes it, or under `config` as ours does).

    Args:
        path: see `resolve_seeker_file`.
        task: the task the caller works on; refused if the file or JSON says another (None: no check).
        obs_dim: expected observation size (None: no check).
        action_dim: expected action size (None: no check).
        hidden_dims: expected hidden widths (None: take them from the file).
        layernorm: expected LayerNorm switch (None: take it from the file).
        max_action: `m`; for original files (which do not record it) the JSON's value, else
            this one, else 1.0; for ours it must match the file if given.
        device: where to put the seeker.

    Raises:
        FileNotFoundError: no seeker file at `path`.
        SeekerFileError: a corrupt file, or a task / size / architecture mismatch.
    """
    file = resolve_seeker_file(path)
    payload = _torch_load(file)
    hyper = read_hyper_params(file.parent.parent, error=SeekerFileError)
    hyper_path = file.parent.parent / HYPER_PARAM_FILE
    if not isinstance(payload, Mapping) or not isinstance(payload.get("state_dict"), Mapping):
        raise SeekerFileError(f"{file} is not an anchor-seeker file (no 'state_dict' entry); pass "
                              f"the {SEEKER_FILE} of an anchor-seeker run")
    state = {k: v for k, v in payload["state_dict"].items()}
    if any(not isinstance(v, Tensor) for v in state.values()):
        raise SeekerFileError(f"{file}: 'state_dict' holds non-tensor values; the file is corrupt")
    inferred = _infer_architecture(state, file)
    meta = payload.get("metadata")
    if meta is not None:  # ours
        if not isinstance(meta, Mapping) or meta.get("format") != FORMAT or (
            meta.get("format_version") != FORMAT_VERSION or any(k not in meta for k in _ARCH_KEYS)
        ):
            raise SeekerFileError(f"{file} has incomplete or unsupported metadata; re-run the "
                                  "anchor-seeker stage")
        arch = {k: meta[k] for k in _ARCH_KEYS}
        arch["hidden_dims"] = [int(h) for h in arch["hidden_dims"]]
        for key in ("obs_dim", "action_dim", "hidden_dims", "layernorm"):
            if arch[key] != inferred[key]:
                raise SeekerFileError(f"{file}: metadata says {key}={arch[key]!r} but the weights have "
                                      f"{inferred[key]!r}; the file is corrupt")
        file_task = meta.get("task")
        if max_action is not None and float(max_action) != float(arch["max_action"]):
            raise SeekerFileError(f"{file} was saved with max_action={arch['max_action']} but "
                                  f"max_action={max_action} was given; pass max_action=None")
    else:  # the original's {state_dict, random_states}
        arch = dict(inferred)
        hyper_max = find_hyper_value(hyper, ("max_action",)) if hyper else None
        arch["max_action"] = float(hyper_max if hyper_max is not None else
                                   (max_action if max_action is not None else 1.0))
        file_task = None
    if hyper and meta is None:  # ours describe themselves; the JSON's flags may mean other networks
        _check_hyper(arch, hyper, hyper_path, file)
    check_provenance(file, file_task=file_task, hyper=hyper, run_path=file.parent.parent,
                     task=task, arch=arch, expected={"obs_dim": obs_dim, "action_dim": action_dim},
                     kind="anchor seeker", verb="maps", error=SeekerFileError)
    if hidden_dims is not None and [int(h) for h in hidden_dims] != arch["hidden_dims"]:
        raise SeekerFileError(f"{file} has hidden dims {arch['hidden_dims']} but {list(hidden_dims)} "
                              "were requested; pass hidden_dims=None to use the file's, or the "
                              "seeker trained with those sizes")
    if layernorm is not None and bool(layernorm) != arch["layernorm"]:
        raise SeekerFileError(f"{file} was trained with layernorm={arch['layernorm']} but "
                              f"layernorm={layernorm} was requested; pass layernorm=None to use "
                              "the file's setting")
    seeker = AnchorSeeker(arch["obs_dim"], arch["action_dim"], arch["hidden_dims"],
                          layernorm=arch["layernorm"], max_action=float(arch["max_action"]))
    load_finite_state(seeker, {k: v.float() for k, v in state.items()}, file=file,
                      error=SeekerFileError,
                      if_diverged="the pretraining that saved it diverged; train the seeker again")
    return seeker.to(device).requires_grad_(False).eval()


def _torch_load(file: Path) -> Any:
    """`torch.load(weights_only=True)`, allowing only the numpy globals an original file needs.

    The original pickles numpy's RNG state tuple (a `uint32` array). If plain weights-only
    loading fails, the globals the file needs are listed; when all of them are on the
    allow-list of `utils.safe_pickle` (numpy's array and dtype reconstructors) they are allowed
    for one more weights-only load; anything else is refused.
    """
    def corrupt(exc: BaseException) -> SeekerFileError:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return SeekerFileError(f"cannot read {file} ({type(exc).__name__}: {first}); the file is "
                               "corrupt or not an anchor-seeker file; copy it again or re-run the "
                               "anchor-seeker stage")

    if file.stat().st_size == 0:
        raise SeekerFileError(f"{file} is empty (an interrupted write?); re-run the anchor-seeker stage")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # decide below whether numpy globals explain it
        first_error = exc
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    except Exception as exc:
        raise corrupt(first_error) from exc
    safe, refused = numpy_safe_globals(needed)
    if not needed or refused:
        if refused:
            raise SeekerFileError(f"{file} contains objects other than tensors and numpy arrays "
                                  f"({', '.join(refused)}); refusing to unpickle it. Use a file "
                                  "written by save_seeker or by the original anchor-seeker script")
        raise corrupt(first_error) from first_error
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise corrupt(exc) from exc


def _infer_architecture(state: Mapping[str, Tensor], file: Path) -> dict[str, Any]:
    """Sizes and the LayerNorm switch from the original key layout and the weight shapes."""
    def bad(why: str) -> SeekerFileError:
        return SeekerFileError(f"{file}: unexpected anchor-seeker weights ({why}); expected "
                               "backbone.model.<i>.{weight,bias} and last.{weight,bias}; the file "
                               "is corrupt or not an anchor-seeker file")

    layers: dict[int, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = _BACKBONE_KEY.match(key)
        if match:
            layers.setdefault(int(match[1]), {})[match[2]] = value
        elif key not in ("last.weight", "last.bias"):
            raise bad(f"unknown key {key!r}")
    if "last.weight" not in state or "last.bias" not in state or not layers:
        raise bad("missing last.* or backbone weights")
    linear = [i for i in sorted(layers) if layers[i].get("weight") is not None and layers[i]["weight"].dim() == 2]
    norms = [i for i in sorted(layers) if i not in linear]
    layernorm = bool(norms)
    stride = 3 if layernorm else 2  # Linear, ReLU[, LayerNorm] per block
    expected_norms = [stride * j + 2 for j in range(len(linear))] if layernorm else []
    if linear != [stride * j for j in range(len(linear))] or norms != expected_norms:
        raise bad(f"backbone layers at {sorted(layers)}")
    hidden: list[int] = []
    width = None
    for j, i in enumerate(linear):
        weight, bias = layers[i]["weight"], layers[i].get("bias")
        if bias is None or bias.shape != (weight.shape[0],) or (width is not None and weight.shape[1] != width):
            raise bad(f"backbone.model.{i} has weight {tuple(weight.shape)}")
        width = int(weight.shape[0])
        hidden.append(width)
        if layernorm:
            norm = layers[stride * j + 2]
            if set(norm) != {"weight", "bias"} or any(t.shape != (width,) for t in norm.values()):
                raise bad(f"LayerNorm backbone.model.{stride * j + 2} does not match width {width}")
    last_w, last_b = state["last.weight"], state["last.bias"]
    if last_w.dim() != 2 or last_w.shape[1] != width or last_b.shape != (last_w.shape[0],):
        raise bad(f"last.weight {tuple(last_w.shape)} does not follow width {width}")
    return {"obs_dim": int(layers[0]["weight"].shape[1]), "action_dim": int(last_w.shape[0]),
            "hidden_dims": hidden, "layernorm": layernorm}


def _check_hyper(arch: Mapping[str, Any], hyper: Mapping[str, Any], hyper_path: Path, file: Path) -> None:
    checks = (
        ("hidden_dims", ("anchor_seeker_hidden_dims",), (), lambda v: [int(h) for h in v]),
        ("layernorm", ("seeker_layernorm", "asp_layernorm"), (), bool),
    )
    mismatch = hyper_mismatch(arch, hyper, checks)
    if mismatch is not None:
        name, value = mismatch
        raise SeekerFileError(f"{file} has {name}={arch[name]!r} but {hyper_path} says "
                              f"{value!r}; the folder mixes files of two runs")


