"""A linear layer holding `E` independent members, evaluated in one batched matrix multiply."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class EnsembleLinear(nn.Module):
    """`E` independent affine maps `y_e = x_e W_e + b_e`, computed with one `baddbmm` (spec §3.1).

    Shapes: `weight` `[E, in, out]`, `bias` `[E, 1, out]`. Input `[B, in]` is broadcast to every
    member; input `[E', B, in]` gives member `e` its own rows (`E' = E`, or `E' = len(members)`
    when `members` selects a subset). Output `[E', B, out]`.

    Initialisation: weights truncated normal with std `1 / (2 sqrt(in))`, truncated at ±2 in
    absolute value (`nn.init.trunc_normal_` defaults, as the original); biases zero.

    Args:
        in_dim: input features.
        out_dim: output features.
        num_members: ensemble size `E`.
        weight_decay: coefficient `wd` of this layer's decay loss `wd * 0.5 * ||W||^2`.
    """

    def __init__(self, in_dim: int, out_dim: int, num_members: int, *, weight_decay: float = 0.0) -> None:
        super().__init__()
        if min(in_dim, out_dim, num_members) < 1:
            raise ValueError(f"EnsembleLinear sizes must be positive, got in={in_dim}, out={out_dim}, "
                             f"E={num_members}")
        self.in_dim, self.out_dim, self.num_members = int(in_dim), int(out_dim), int(num_members)
        self.weight_decay = float(weight_decay)
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * math.sqrt(self.in_dim)))
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        """Apply the members (all, or the subset `members`, an int64 index `[E']`) to `x`."""
        weight, bias = self.weight, self.bias  # [E, in, out], [E, 1, out]
        if members is not None:
            weight, bias = weight[members], bias[members]  # [E', in, out], [E', 1, out]
        return ensemble_linear(x, weight, bias)

    def decay_loss(self) -> Tensor:
        """`wd * 0.5 * sum(W ** 2)` over all members (weights only, not biases)."""
        return self.weight_decay * 0.5 * self.weight.square().sum()

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, num_members={self.num_members}, "
                f"weight_decay={self.weight_decay}")


def ensemble_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """`x_e W_e + b_e` for weight `[E, in, out]`, bias `[E, 1, out]`; `x` `[B, in]` or `[E, B, in]`."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)  # [B, in] -> [E, B, in] (a view)
    elif x.dim() != 3 or x.shape[0] != weight.shape[0]:
        raise ValueError(f"ensemble linear layer expects [B, {weight.shape[1]}] or "
                         f"[{weight.shape[0]}, B, {weight.shape[1]}] input, got {tuple(x.shape)}")
    return torch.baddbmm(bias, x, weight)  # [E, B, out]
