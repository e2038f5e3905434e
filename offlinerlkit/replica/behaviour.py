"""Behaviour policies: the actors that sampled a replica dataset, saved as plain weights.

A `BehaviourPolicy` is a tanh-Gaussian actor with what rebuilding it needs (robot, sizes, hidden
widths) and its provenance, saved as `<out>/policies/<robot>/<level>.pt` and loaded without
unpickling objects (`torch.load(weights_only=True)`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from offlinerlkit.datasets.replica import ActFn
from offlinerlkit.modules.actor import TanhGaussianActor
from offlinerlkit.modules.build import build_tanh_actor
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.fileio import atomic_write
from offlinerlkit.utils.tasks import ROBOTS

__all__ = ["BEHAVIOUR_FORMAT", "BehaviourPolicy"]

#: `format` entry of a saved behaviour policy file.
BEHAVIOUR_FORMAT = "cocoa-rl behaviour policy"
_BEHAVIOUR_VERSION = 1


@dataclass
class BehaviourPolicy:
    """A behaviour policy (tanh-Gaussian actor) with what rebuilding and describing it needs.

    Saved with `save` as `torch.save` of plain data (`format`, `version`, `robot`, `level`,
    `obs_dim`, `action_dim`, `max_action`, `hidden_dims`, `actor` state dict, `info`), loadable
    with `torch.load(weights_only=True)`.

    Attributes:
        actor: the actor (plain encoder).
        robot: `hopper`, `halfcheetah` or `walker2d`.
        level: `random`, `medium` or `expert`.
        hidden_dims: the actor's backbone widths.
        info: provenance: `eval_return`, `eval_normalized`, `train_step`, `seed`, ... (numbers
            and strings only).
    """

    actor: TanhGaussianActor
    robot: str
    level: str
    hidden_dims: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> EnvSpec:
        """Observation and action sizes of the actor."""
        return EnvSpec(obs_dim=int(self.actor.encoder.output_dim),
                       action_dim=int(self.actor.mu.output_dim), max_action=self.actor.max_action)

    @classmethod
    def build(cls, robot: str, level: str, hidden_dims: Sequence[int], *,
              actor_state: Optional[Mapping[str, Tensor]] = None,
              info: Optional[Mapping[str, Any]] = None,
              device: torch.device | str = "cpu") -> BehaviourPolicy:
        """A new actor for `robot` (random initial weights from torch's global generator), with
        `actor_state` loaded when given."""
        if robot not in ROBOTS:
            raise ValueError(f"unknown robot {robot!r}: choose from {sorted(ROBOTS)}")
        sizes = ROBOTS[robot]
        spec = EnvSpec(int(sizes["obs_dim"]), int(sizes["action_dim"]))
        actor = build_tanh_actor(spec, tuple(hidden_dims))
        if actor_state is not None:
            actor.load_state_dict(actor_state)
        return cls(actor.to(device).eval(), robot, level, tuple(int(h) for h in hidden_dims),
                   dict(info or {}))

    def act_fn(self, *, generator: Optional[torch.Generator] = None,
               deterministic: bool = False) -> ActFn:
        """A batched numpy action function for `rollout_dataset`.

        Returns actions `[N, A]` and `log pi(a|s)` `[N]`; stochastic by default (D4RL's
        behaviour policies were sampled), with draws from `generator`.
        """
        device = next(self.actor.parameters()).device

        def act(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                dist = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=device))
                if deterministic:  # no draw: the mode, with a zero log-probability placeholder
                    mode = dist.mode()  # [N, A]
                    return mode.cpu().numpy(), np.zeros(mode.shape[0], dtype=np.float32)
                action, log_prob = dist.rsample(generator)  # [N, A], [N, 1]
            return action.cpu().numpy(), log_prob[:, 0].cpu().numpy()

        return act

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the policy atomically; an existing file is kept unless `overwrite`."""
        file = Path(path).expanduser()
        if file.exists() and not overwrite:
            raise FileExistsError(f"{file}: already exists and was left untouched; pass "
                                  "overwrite=True (--overwrite) to replace it")
        spec = self.spec
        payload = {
            "format": BEHAVIOUR_FORMAT, "version": _BEHAVIOUR_VERSION,
            "robot": self.robot, "level": self.level,
            "obs_dim": spec.obs_dim, "action_dim": spec.action_dim,
            "max_action": spec.max_action, "hidden_dims": list(self.hidden_dims),
            "actor": {k: v.detach().cpu() for k, v in self.actor.state_dict().items()},
            "info": dict(self.info),
        }
        # through a file object, so a full disk surfaces as an OSError naming the file
        return atomic_write(file, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu"
             ) -> BehaviourPolicy:
        """Rebuild a policy written by `save`.

        Raises:
            FileNotFoundError: no file at `path`.
            ValueError: the file is not a behaviour policy of this project.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"no behaviour policy file at {file}")
        try:
            payload = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise ValueError(f"{file}: cannot be read as a behaviour policy ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != BEHAVIOUR_FORMAT:
            raise ValueError(f"{file}: not a {BEHAVIOUR_FORMAT!r} file (written by "
                             "make_dataset.py / BehaviourPolicy.save)")
        policy = cls.build(str(payload["robot"]), str(payload["level"]),
                           [int(h) for h in payload["hidden_dims"]],
                           actor_state=payload["actor"], info=payload.get("info", {}),
                           device=device)
        spec = policy.spec
        if (spec.obs_dim, spec.action_dim) != (int(payload["obs_dim"]), int(payload["action_dim"])):
            raise ValueError(f"{file}: sizes {payload['obs_dim']}/{payload['action_dim']} do not "
                             f"match robot {payload['robot']}")
        return policy
