"""State encoders: the plain identity and COCOA's anchor + delta (bilinear, "transductive") encoder.

Every actor, critic and value network starts with an encoder `enc(obs, anchor, extra)`; the
rest of the network does not know which one it has. A plain run uses `IdentityEncoder` (the
anchor is ignored and may be None); COCOA uses `AnchorDeltaEncoder`, which needs the anchor of
each observation (computed outside the network, once per state batch, and passed in).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from offlinerlkit.nets.bilinear import bilinear_layernorm_head
from offlinerlkit.nets.ensemble_mlp import EnsembleMLP, InitMode


class IdentityEncoder(nn.Module):
    """`h = [obs, extra]`: the network sees the raw observation (and action, for Q critics).

    Shapes: obs `[B, S]` (or `[E, B, S]`), extra `[..., k]` or None -> `[..., S + k]`.

    Args:
        obs_dim: observation size `S`.
        extra_dim: size `k` of the extra input appended to the observation (the action for Q
            critics, 0 otherwise).
    """

    uses_anchor = False

    def __init__(self, obs_dim: int, extra_dim: int = 0) -> None:
        super().__init__()
        self.obs_dim, self.extra_dim = int(obs_dim), int(extra_dim)
        self.output_dim = self.obs_dim + self.extra_dim

    def forward(self, obs: Tensor, anchor: Optional[Tensor] = None,
                extra: Optional[Tensor] = None) -> Tensor:
        del anchor  # a plain network ignores anchors
        return obs if extra is None else torch.cat([obs, extra], dim=-1)


class AnchorDeltaEncoder(nn.Module):
    """COCOA's transductive encoding `h_t = <f_t(delta), g_t(anchor)>` (paper Sec. 3, spec 6.1-6.2).

    `delta = obs - anchor`. Two MLPs with the same shape and separate weights,
    `f, g: in -> fg_hidden_dims -> T*D` (hidden blocks `Linear -> ReLU -> (LN)`, output
    `Linear -> (LN)`), map `[delta, extra]` and `[anchor, extra]` to `T` blocks of `D` numbers;
    feature `t` is the dot product of block `t` of f with block `t` of g. For Q critics the
    action is appended to both inputs (`extra`). `T = fg_hidden_dims[-1]`, `D = embedding_dim`.

    Shapes: obs, anchor `[B, S]`, extra `[B, k]` or None -> `[E, B, T]` (E = num_members).

    Args:
        obs_dim: observation size `S`.
        extra_dim: size `k` of the extra input (action for Q critics, else 0).
        hidden_dims: `fg_hidden_dims` of f and g; the last one is the feature width `T`.
        embedding_dim: block size `D`.
        num_members: number of independent encoders (one per critic of an ensemble).
        layernorm: the LayerNorms of f and g (the original's `asp_layernorm`, on by default).
        init: initialisation of the linear layers.
        fused_head: compute the output layers, LayerNorms and bilinear product with
            `bilinear_layernorm_head` (same function, far less memory traffic; used only when
            `layernorm` is on). False runs the op-by-op form (the reference in the tests).
    """

    uses_anchor = True

    def __init__(self, obs_dim: int, extra_dim: int, hidden_dims: Sequence[int], embedding_dim: int,
                 *, num_members: int = 1, layernorm: bool = True,
                 init: InitMode = "torch_default", fused_head: bool = True) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("AnchorDeltaEncoder needs at least one fg_hidden_dims entry")
        self.obs_dim, self.extra_dim = int(obs_dim), int(extra_dim)
        self.num_features, self.embedding_dim = int(hidden_dims[-1]), int(embedding_dim)
        self.output_dim = self.num_features
        width = self.num_features * self.embedding_dim  # the original's fg_output_dim
        kwargs = dict(num_members=num_members, layernorm=layernorm, output_layernorm=layernorm,
                      init=init)
        self.delta_net = EnsembleMLP(self.obs_dim + self.extra_dim, hidden_dims, width, **kwargs)
        self.anchor_net = EnsembleMLP(self.obs_dim + self.extra_dim, hidden_dims, width, **kwargs)
        self.fused_head = bool(fused_head and layernorm)

    def forward(self, obs: Tensor, anchor: Optional[Tensor] = None,
                extra: Optional[Tensor] = None) -> Tensor:
        if anchor is None:
            raise ValueError("AnchorDeltaEncoder needs the anchor of every observation; compute "
                             "it with the anchor function and pass it in")
        delta = obs - anchor
        if extra is not None:
            delta, anchor = torch.cat([delta, extra], -1), torch.cat([anchor, extra], -1)
        if self.fused_head:
            f_linear, f_norm = self.delta_net.output_layers
            g_linear, g_norm = self.anchor_net.output_layers
            return bilinear_layernorm_head(self.delta_net.hidden(delta), self.anchor_net.hidden(anchor),
                                           f_linear, f_norm, g_linear, g_norm, self.num_features)
        f = self.delta_net(delta)  # [E, B, T*D]
        g = self.anchor_net(anchor)  # [E, B, T*D]
        shape = (*f.shape[:-1], self.num_features, self.embedding_dim)
        return (f.view(shape) * g.view(shape)).sum(-1)  # [E, B, T]
