"""Actor heads on top of a feature backbone."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from offlinerlkit.modules.dist import DiagGaussian, TanhNormal
from offlinerlkit.nets.ensemble_mlp import EnsembleMLP, InitMode


class DeterministicActor(nn.Module):
    """`a = max_action * tanh(W h(s) + b)` on a backbone `h` (OfflineRL-Kit's `Actor`).

    Shapes: obs `[B, obs_dim]` -> action `[B, action_dim]`.

    Args:
        backbone: feature network with an `output_dim` attribute.
        action_dim: action size.
        max_action: half-width of the symmetric action box.
    """

    def __init__(self, backbone: nn.Module, action_dim: int, *, max_action: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.last = nn.Linear(int(backbone.output_dim), action_dim)
        self.max_action = float(max_action)

    def forward(self, obs: Tensor) -> Tensor:
        return self.max_action * torch.tanh(self.last(self.backbone(obs)))


class TanhGaussianActor(nn.Module):
    """SAC-style actor: `enc -> backbone -> (mu, log sigma)`, actions `tanh(u)` (spec 6.3).

    `sigma = exp(clamp(log sigma, -5, 2))` is state-conditioned. Shapes: obs (and anchor)
    `[B, S]` -> a `TanhNormal` over `[B, A]`.

    Args:
        encoder: `IdentityEncoder(S)` (plain) or `AnchorDeltaEncoder(S, 0, ...)` (COCOA).
        hidden_dims: backbone widths (`Linear -> ReLU -> (LN)` blocks).
        action_dim: action size `A`.
        layernorm: backbone LayerNorms (the original's `--layernorm`).
        max_action: action scale (1 for D4RL MuJoCo; the original omitted it).
        init: initialisation of the linear layers.
    """

    def __init__(self, encoder: nn.Module, hidden_dims: Sequence[int], action_dim: int, *,
                 layernorm: bool = False, max_action: float = 1.0,
                 init: InitMode = "torch_default") -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = EnsembleMLP(encoder.output_dim, hidden_dims, layernorm=layernorm, init=init)
        self.mu = EnsembleMLP(self.backbone.output_dim, (), action_dim, init=init)
        self.log_sigma = EnsembleMLP(self.backbone.output_dim, (), action_dim, init=init)
        self.max_action = float(max_action)

    def forward(self, obs: Tensor, anchor: Optional[Tensor] = None) -> TanhNormal:
        h = self.backbone(self.encoder(obs, anchor))  # [1, B, H]
        mu = self.mu(h)[0]  # [B, A]
        sigma = self.log_sigma(h)[0].clamp(-5.0, 2.0).exp()  # [B, A]
        return TanhNormal(mu, sigma, self.max_action)


class GaussianActor(nn.Module):
    """IQL's actor: `mu = max_action * tanh(W h + b)`, state-independent `log std` (spec 6.3).

    Args:
        encoder: the state encoder (plain or COCOA).
        hidden_dims: backbone widths.
        action_dim: action size.
        dropout_rate: dropout in the backbone (the original's `--dropout_rate`).
        layernorm: backbone LayerNorms.
        max_action: action bound (1 for D4RL MuJoCo).
        init: initialisation of the linear layers (IQL uses orthogonal).
    """

    def __init__(self, encoder: nn.Module, hidden_dims: Sequence[int], action_dim: int, *,
                 dropout_rate: Optional[float] = None, layernorm: bool = False,
                 max_action: float = 1.0, init: InitMode = "orthogonal") -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone = EnsembleMLP(encoder.output_dim, hidden_dims, dropout_rate=dropout_rate,
                                    layernorm=layernorm, init=init)
        self.mu = EnsembleMLP(self.backbone.output_dim, (), action_dim, init=init)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.max_action = float(max_action)

    def forward(self, obs: Tensor, anchor: Optional[Tensor] = None) -> DiagGaussian:
        h = self.backbone(self.encoder(obs, anchor))  # [1, B, H]
        mu = self.max_action * torch.tanh(self.mu(h)[0])  # [B, A]
        return DiagGaussian(mu, self.log_std.exp(), self.max_action)
