"""What every algorithm object provides to the trainers."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from offlinerlkit.nets.optim import LRSchedule, OptimizerFactory
from offlinerlkit.types import Batch


class BasePolicy:
    """An offline RL algorithm: networks, optimisers, schedulers and one `learn()` step.

    Subclasses register their parts in three dicts (networks in `nets`, optimisers in `optims`,
    learning-rate schedulers in `schedulers`); `state_dict`, `train`/`eval` and checkpointing are
    written once here. Subclasses implement `learn` and `act_tensor`.

    **Constructor convention** (every policy): a policy takes its learning rates, an
    `OptimizerFactory` (`optimizer=`, default the fused `adam`) and an optional `LRSchedule` of
    its actor (`actor_lr_schedule=`), and builds every optimiser and scheduler itself through
    `add_optimizer`. Optimiser `<name>_optim` and its scheduler `<name>_scheduler` are registered
    under those keys, so a checkpoint's optimiser and scheduler states always have the same names.
    """

    #: Checkpoint keys renamed since older runs: `{group: {old name: new name}}`, applied to a
    #: saved state before it is loaded, so a resume of an older checkpoint still works.
    renamed_state: ClassVar[Mapping[str, Mapping[str, str]]] = {}

    def __init__(self, *, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, Optimizer] = {}
        self.schedulers: dict[str, LRScheduler] = {}

    def add_optimizer(self, name: str, params: Iterable[Tensor], lr: float, *,
                      optimizer: OptimizerFactory, schedule: Optional[LRSchedule] = None
                      ) -> Optimizer:
        """Build `optimizer(params, lr)`, register it as `<name>_optim` (and its schedule's
        scheduler as `<name>_scheduler`); returns the optimiser."""
        optim = optimizer(list(params), lr=lr)
        self.optims[f"{name}_optim"] = optim
        if schedule is not None:
            self.schedulers[f"{name}_scheduler"] = schedule(optim)
        return optim

    # --- the algorithm ---
    def learn(self, batch: Batch) -> dict[str, float]:
        """One gradient update; returns metrics as Python floats under `group/name` keys."""
        raise NotImplementedError

    def act_tensor(self, obs: Tensor, *, deterministic: bool) -> Tensor:
        """Actions `[B, action_dim]` for observations `[B, obs_dim]` (no gradient)."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = True) -> np.ndarray:
        """Numpy edge of `act_tensor`: one observation `(S,)` or a batch `(B, S)`."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.ndim == 1
        action = self.act_tensor(x[None] if single else x, deterministic=deterministic)
        out = action.cpu().numpy()
        return out[0] if single else out

    # --- modes ---
    def train(self) -> None:
        for net in self.nets.values():
            net.train()

    def eval(self) -> None:
        for net in self.nets.values():
            net.eval()

    def step_schedulers(self) -> None:
        """Advance every learning-rate scheduler by one epoch."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    # --- state ---
    def extra_state(self) -> dict[str, Any]:
        """Non-module state (e.g. a learnable temperature held outside `nets`)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, schedulers and extra state, keyed by their registered names."""
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optims": {k: v.state_dict() for k, v in self.optims.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned; every registered part must be present."""
        for group in ("nets", "optims", "schedulers"):
            mine: dict[str, Any] = getattr(self, group)
            renamed = self.renamed_state.get(group, {})
            saved = {renamed.get(k, k): v for k, v in state.get(group, {}).items()}
            missing = sorted(set(mine) - set(saved))
            if missing:
                raise KeyError(f"checkpoint lacks {group} {missing}; it was written by another "
                               "algorithm or configuration")
            for name, obj in mine.items():
                obj.load_state_dict(saved[name])
        self.load_extra_state(state.get("extra", {}))
