"""Critic ensembles: E Q-functions (or value functions) evaluated in one batched pass."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from torch import Tensor, nn

from offlinerlkit.nets.ensemble_mlp import EnsembleMLP, InitMode


class CriticEnsemble(nn.Module):
    """`Q_e(s, a) = head_e(backbone_e(enc_e(s, anchor, a)))` for `e = 1..E`, in one pass (spec 6.3).

    With `IdentityEncoder(S, A)` this is a set of plain MLP critics on `[s, a]`; with an
    `AnchorDeltaEncoder(S, A, ..., num_members=E)` each critic has its own f and g nets. A value
    network is the same with `action=None` and an encoder without extra input.

    Shapes: obs (and anchor) `[B, S]`, action `[B, A]` or None -> `[E, B, 1]`.

    Args:
        encoder: the state(-action) encoder; its output is broadcast to the members when it has no
            member axis.
        hidden_dims: backbone widths (`Linear -> ReLU -> (LN)`).
        num_members: number of critics `E`.
        layernorm: backbone LayerNorms.
        init: initialisation of the linear layers.
    """

    def __init__(self, encoder: nn.Module, hidden_dims: Sequence[int], *, num_members: int = 2,
                 layernorm: bool = False, init: InitMode = "torch_default") -> None:
        super().__init__()
        self.encoder = encoder
        self.num_members = int(num_members)
        self.backbone = EnsembleMLP(encoder.output_dim, hidden_dims, 1, num_members=num_members,
                                    layernorm=layernorm, init=init)

    def forward(self, obs: Tensor, action: Optional[Tensor] = None,
                anchor: Optional[Tensor] = None) -> Tensor:
        return self.backbone(self.encoder(obs, anchor, action))  # [E, B, 1]
