"""The probabilistic ensemble behind both dynamics directions (spec §3.1)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from offlinerlkit.nets.ensemble_linear import EnsembleLinear, ensemble_linear

#: The original's `dynamics_weight_decay` default: one value per hidden layer, then the output layer.
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
DEFAULT_HIDDEN_DIMS: tuple[int, ...] = (200, 200, 200, 200)
MAX_LOGVAR_INIT, MIN_LOGVAR_INIT = 0.5, -10.0


class GaussianEnsemble(nn.Module):
    """`E` Gaussian MLPs evaluated in one batched pass: `x -> N(mean_e(x), exp(logvar_e(x)))`.

    Each member is `in -> hidden_dims (Swish after each) -> 2 * out`, split into `mean` and raw
    `logvar`; the log-variance is soft-clamped between learnable bounds (spec §3.1):

        logvar <- max_logvar - softplus(max_logvar - logvar)
        logvar <- min_logvar + softplus(logvar - min_logvar)

    Inputs are standardised inside the model, `(x - in_mean) / in_std`, so the scaler travels
    with the weights in `state_dict`. Buffers: `elite_idx` (int64 `[K]`, the elite members in
    ascending order of holdout loss; initially `arange(K)`), `in_mean`, `in_std` (`[in]`).

    Shapes: `x` `[B, in]` (broadcast to every member) or `[E, B, in]` (row block `e` goes to
    member `e`) -> `mean`, `logvar` `[E, B, out]`. With `members` (an int64 index `[E']`), only
    those members run and a 3-D input must be `[E', B, in]`.

    Args:
        in_dim: input size (`S + A`).
        out_dim: predicted size (`S + 1` forward with reward, `S` reverse).
        hidden_dims: hidden layer widths.
        num_members: ensemble size `E`.
        num_elites: number of elites `K <= E`.
        weight_decays: `len(hidden_dims) + 1` decay coefficients (the last for the output layer);
            None means no decay.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] = DEFAULT_HIDDEN_DIMS,
        *,
        num_members: int = 7,
        num_elites: int = 5,
        weight_decays: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if not 1 <= num_elites <= num_members:
            raise ValueError(f"need 1 <= num_elites <= num_members, got {num_elites} and {num_members}")
        decays = tuple(float(w) for w in weight_decays) if weight_decays is not None else (
            (0.0,) * (len(hidden_dims) + 1))
        if len(decays) != len(hidden_dims) + 1:
            raise ValueError(f"weight_decays needs len(hidden_dims) + 1 = {len(hidden_dims) + 1} values "
                             f"(one per hidden layer, then the output layer), got {len(decays)}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.hidden_dims = hidden_dims
        self.num_members, self.num_elites = int(num_members), int(num_elites)
        self.weight_decays = decays
        dims = (self.in_dim, *hidden_dims)
        self.layers = nn.ModuleList(
            EnsembleLinear(d_in, d_out, num_members, weight_decay=wd)
            for d_in, d_out, wd in zip(dims[:-1], dims[1:], decays[:-1])
        )
        self.output_layer = EnsembleLinear(dims[-1], 2 * self.out_dim, num_members, weight_decay=decays[-1])
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), MAX_LOGVAR_INIT))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), MIN_LOGVAR_INIT))
        self.register_buffer("elite_idx", torch.arange(self.num_elites, dtype=torch.int64))
        self.register_buffer("in_mean", torch.zeros(self.in_dim))
        self.register_buffer("in_std", torch.ones(self.in_dim))
        self._elite_cache: tuple[tuple, list[tuple[Tensor, Tensor]]] | None = None

    # --- forward passes ---
    def forward(self, x: Tensor, members: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and soft-clamped log-variance, each `[E', B, out]`."""
        params = self._layer_params(members)
        out = ensemble_linear(self._trunk(x, params[:-1]), *params[-1])  # [E', B, 2 * out]
        mean, logvar = out[..., : self.out_dim], out[..., self.out_dim:]  # [E', B, out] each
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def forward_mean(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        """Only the mean `[E', B, out]`: the log-variance half of the output layer is skipped."""
        params = self._layer_params(members)
        weight, bias = params[-1]  # [E', h, 2 * out], [E', 1, 2 * out]
        h = self._trunk(x, params[:-1])  # [E', B, h]
        return ensemble_linear(h, weight[..., : self.out_dim], bias[..., : self.out_dim])

    def _trunk(self, x: Tensor, params: list[tuple[Tensor, Tensor]]) -> Tensor:
        h = (x - self.in_mean) / self.in_std  # [B, in] or [E', B, in]
        inplace = not torch.is_grad_enabled()  # in-place Swish only when no graph is recorded
        for weight, bias in params:
            h = F.silu(ensemble_linear(h, weight, bias), inplace=inplace)  # [E', B, hidden]
        return h

    def _layer_params(self, members: Tensor | None) -> list[tuple[Tensor, Tensor]]:
        """(weight, bias) per layer, for all members or the subset `members`.

        Without autograd, the elite subset (`members is self.elite_idx`) is cached until the
        weights or the elites change (tracked by tensor versions): the anchor rollout calls
        `predict_mean` many times with small batches, where gathering costs about 10 %.
        """
        layers = (*self.layers, self.output_layer)
        if members is None:
            return [(layer.weight, layer.bias) for layer in layers]
        if torch.is_grad_enabled() or members is not self.elite_idx:
            return [(layer.weight[members], layer.bias[members]) for layer in layers]
        key = (members.data_ptr(), members._version, *(
            (t.data_ptr(), t._version) for layer in layers for t in (layer.weight, layer.bias)))
        if self._elite_cache is None or self._elite_cache[0] != key:
            self._elite_cache = (key, [(layer.weight[members], layer.bias[members]) for layer in layers])
        return self._elite_cache[1]

    # --- losses ---
    def weight_decay_loss(self) -> Tensor:
        """`sum_l wd_l * 0.5 * ||W_l||^2` over all layers and members (weights only)."""
        return sum((layer.decay_loss() for layer in (*self.layers, self.output_layer)),
                   start=self.max_logvar.new_zeros(()))

    # --- state ---
    def member_parameters(self) -> dict[str, nn.Parameter]:
        """The per-member tensors (leading axis `E`): every layer's weight and bias, by name.

        These are what keep-best snapshots copy; the shared logvar bounds are not among them.
        """
        return {name: p for name, p in self.named_parameters()
                if name.endswith((".weight", ".bias"))}

    def set_elites(self, indices: Sequence[int] | Tensor) -> None:
        """Set `elite_idx` (kept on the model device as a buffer)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if idx.numel() != self.num_elites or len(set(idx.tolist())) != self.num_elites or (
            idx.min() < 0 or idx.max() >= self.num_members
        ):
            raise ValueError(f"elites must be {self.num_elites} distinct members in [0, {self.num_members}), "
                             f"got {idx.tolist()}")
        self.elite_idx.copy_(idx)

    def set_scaler(self, mu: np.ndarray | Tensor, std: np.ndarray | Tensor) -> None:
        """Copy input standardisation statistics (any shape with `in` elements) into the buffers."""
        for buffer, value in ((self.in_mean, mu), (self.in_std, std)):
            value = torch.as_tensor(np.asarray(value, dtype=np.float32) if not isinstance(value, Tensor)
                                    else value, dtype=torch.float32).reshape(-1)
            if value.numel() != self.in_dim:
                raise ValueError(f"scaler has {value.numel()} entries, the model input has {self.in_dim}")
            buffer.copy_(value)

    @property
    def device(self) -> torch.device:
        return self.max_logvar.device

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, hidden_dims={list(self.hidden_dims)}, "
                f"num_members={self.num_members}, num_elites={self.num_elites}")
