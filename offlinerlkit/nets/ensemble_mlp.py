"""MLPs with `E` independent members evaluated in one batched pass (critic ensembles, f/g nets)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from offlinerlkit.nets.ensemble_linear import EnsembleLinear

#: How linear layers are initialised: PyTorch's `nn.Linear` default (per member), orthogonal with
#: gain sqrt(2) and zero bias (IQL), or the dynamics' truncated normal.
InitMode = Literal["torch_default", "orthogonal", "trunc_normal"]


def init_ensemble_linear_(layer: EnsembleLinear, mode: InitMode, *, gain: float = math.sqrt(2)) -> None:
    """Re-initialise every member of `layer` as an independent `nn.Linear` would be.

    `torch_default` draws weight and bias from `U(-1/sqrt(in), 1/sqrt(in))` (what
    `nn.Linear.reset_parameters` gives); `orthogonal` makes each member's `[out, in]` matrix
    orthogonal with `gain` and zeroes the bias.
    """
    with torch.no_grad():
        if mode == "trunc_normal":
            layer.reset_parameters()
        elif mode == "torch_default":
            bound = 1.0 / math.sqrt(layer.in_dim)
            layer.weight.uniform_(-bound, bound)
            layer.bias.uniform_(-bound, bound)
        elif mode == "orthogonal":
            for e in range(layer.num_members):
                w = torch.empty(layer.out_dim, layer.in_dim)
                nn.init.orthogonal_(w, gain=gain)
                layer.weight[e].copy_(w.t())  # [out, in] -> [in, out]
            layer.bias.zero_()
        else:
            raise ValueError(f"unknown init mode {mode!r}")


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a separate affine per member: `[E, B, D] -> [E, B, D]`."""

    def __init__(self, dim: int, num_members: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.eps = int(dim), eps
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.shape[0] == 1:  # one member: the affine fused into the LayerNorm kernel
            return F.layer_norm(x, (self.dim,), self.weight[0, 0], self.bias[0, 0], self.eps)
        return torch.addcmul(self.bias, F.layer_norm(x, (self.dim,), eps=self.eps), self.weight)


class EnsembleMLP(nn.Module):
    """`E` MLPs `in -> hidden... [-> out]` in one pass; hidden block `Linear -> act -> (Dropout) -> (LN)`.

    With `E = 1` this is an ordinary MLP evaluated through batched matmuls. Shapes: `[B, in]`
    (broadcast to every member) or `[E, B, in]` -> `[E, B, out]`.

    Args:
        input_dim: input width.
        hidden_dims: hidden widths.
        output_dim: width of a final linear layer (None: the last hidden block is the output).
        num_members: ensemble size `E`.
        activation: hidden activation class.
        dropout_rate: dropout after each hidden activation when set.
        layernorm: LayerNorm at the end of each hidden block.
        output_layernorm: LayerNorm after the output layer.
        init: initialisation of the linear layers (`InitMode`).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: Optional[int] = None,
        *,
        num_members: int = 1,
        activation: Callable[[], nn.Module] = nn.ReLU,
        dropout_rate: Optional[float] = None,
        layernorm: bool = False,
        output_layernorm: bool = False,
        init: InitMode = "torch_default",
    ) -> None:
        super().__init__()
        self.num_members = int(num_members)
        layers: list[nn.Module] = []
        width = int(input_dim)
        for hidden in hidden_dims:
            layers += [EnsembleLinear(width, hidden, num_members), activation()]
            if dropout_rate:
                layers.append(nn.Dropout(dropout_rate))
            if layernorm:
                layers.append(EnsembleLayerNorm(hidden, num_members))
            width = int(hidden)
        num_hidden_layers = len(layers)
        if output_dim is not None:
            layers.append(EnsembleLinear(width, output_dim, num_members))
            if output_layernorm:
                layers.append(EnsembleLayerNorm(output_dim, num_members))
            width = int(output_dim)
        self.model = nn.Sequential(*layers)
        self.num_hidden_layers = num_hidden_layers  # modules before the output layer
        self.input_dim, self.output_dim = int(input_dim), width
        for layer in self.model:
            if isinstance(layer, EnsembleLinear):
                init_ensemble_linear_(layer, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self._per_member(x))

    def hidden(self, x: Tensor) -> Tensor:
        """The last hidden block's output `[E, B, hidden_dims[-1]]` (the output layer's input)."""
        x = self._per_member(x)
        for layer in self.model[:self.num_hidden_layers]:
            x = layer(x)
        return x

    def _per_member(self, x: Tensor) -> Tensor:
        """`[B, in]` broadcast to `[E, B, in]` (a view); `[E, B, in]` unchanged."""
        return x.unsqueeze(0).expand(self.num_members, -1, -1) if x.dim() == 2 else x

    @property
    def output_layers(self) -> tuple[nn.Module, ...]:
        """The output `EnsembleLinear` and, when present, its `EnsembleLayerNorm`."""
        return tuple(self.model[self.num_hidden_layers:])
