"""The plain multi-layer perceptron used by actors, critics, the anchor seeker and f/g nets."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

from torch import Tensor, nn


class MLP(nn.Module):
    """`in -> hidden... [-> out]`, each hidden block `Linear -> activation -> (Dropout) -> (LayerNorm)`.

    The layers sit in `self.model` (an `nn.Sequential`), so state-dict keys read `model.<i>.*`
    as in OfflineRL-Kit and the original COCOA code (e.g. a seeker with LayerNorm has its linear
    layers at `model.0` and `model.3`).

    Args:
        input_dim: input width.
        hidden_dims: widths of the hidden blocks.
        output_dim: width of a final linear layer; None means no output layer
            (the module's output then has `hidden_dims[-1]` features).
        activation: hidden activation class.
        dropout_rate: dropout after each activation when set.
        layernorm: LayerNorm at the end of each hidden block.
        output_layernorm: LayerNorm after the output layer (COCOA's f and g nets).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: Optional[int] = None,
        *,
        activation: Callable[[], nn.Module] = nn.ReLU,
        dropout_rate: Optional[float] = None,
        layernorm: bool = False,
        output_layernorm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), activation()]
            if dropout_rate:
                layers.append(nn.Dropout(dropout_rate))
            if layernorm:
                layers.append(nn.LayerNorm(hidden))
            width = hidden
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            if output_layernorm:
                layers.append(nn.LayerNorm(output_dim))
            width = output_dim
        self.model = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

