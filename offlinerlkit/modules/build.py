"""Builders that assemble encoders, actors and critics from plain options.

The plain algorithms and their COCOA variants differ only in the encoder: `cocoa=False` gives an
`IdentityEncoder`, `cocoa=True` an `AnchorDeltaEncoder` (spec 6) with `fg_hidden_dims`,
`embedding_dim` and the f/g LayerNorm switch. Everything else is shared.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from torch import nn

from offlinerlkit.modules.actor import GaussianActor, TanhGaussianActor
from offlinerlkit.modules.critic import CriticEnsemble
from offlinerlkit.modules.encoder import AnchorDeltaEncoder, IdentityEncoder
from offlinerlkit.nets.ensemble_mlp import InitMode
from offlinerlkit.types import EnvSpec


@dataclass(frozen=True)
class EncoderOptions:
    """Which encoder a network gets.

    Attributes:
        cocoa: anchor + delta (bilinear) encoder instead of the raw input.
        fg_hidden_dims: f/g hidden widths; the last is the bilinear feature width `T`.
        embedding_dim: block size `D` of the bilinear product.
        fg_layernorm: LayerNorms inside f and g (`--fg_layernorm`; the original's `asp_layernorm`).
    """

    cocoa: bool = False
    fg_hidden_dims: tuple[int, ...] = (64, 64)
    embedding_dim: int = 4
    fg_layernorm: bool = True


PLAIN = EncoderOptions()


def build_encoder(obs_dim: int, extra_dim: int, options: EncoderOptions, *, num_members: int = 1,
                  init: InitMode = "torch_default") -> nn.Module:
    """The encoder of one network (or of an ensemble of `num_members` critics)."""
    if not options.cocoa:
        return IdentityEncoder(obs_dim, extra_dim)
    return AnchorDeltaEncoder(obs_dim, extra_dim, options.fg_hidden_dims, options.embedding_dim,
                              num_members=num_members, layernorm=options.fg_layernorm, init=init)


def build_tanh_actor(spec: EnvSpec, hidden_dims: Sequence[int], options: EncoderOptions = PLAIN, *,
                     layernorm: bool = False, init: InitMode = "torch_default") -> TanhGaussianActor:
    """The tanh-Gaussian actor of SAC, CQL, MOPO and MOBILE."""
    return TanhGaussianActor(build_encoder(spec.obs_dim, 0, options, init=init), hidden_dims,
                             spec.action_dim, layernorm=layernorm, max_action=spec.max_action,
                             init=init)


def build_gaussian_actor(spec: EnvSpec, hidden_dims: Sequence[int],
                         options: EncoderOptions = PLAIN, *, dropout_rate: Optional[float] = None,
                         layernorm: bool = False, init: InitMode = "orthogonal") -> GaussianActor:
    """IQL's Gaussian actor."""
    return GaussianActor(build_encoder(spec.obs_dim, 0, options, init=init), hidden_dims,
                         spec.action_dim, dropout_rate=dropout_rate, layernorm=layernorm,
                         max_action=spec.max_action, init=init)


def build_critics(spec: EnvSpec, hidden_dims: Sequence[int], options: EncoderOptions = PLAIN, *,
                  num_members: int = 2, with_action: bool = True, layernorm: bool = False,
                  init: InitMode = "torch_default") -> CriticEnsemble:
    """`num_members` Q-functions (or value functions with `with_action=False`) in one module."""
    extra = spec.action_dim if with_action else 0
    encoder = build_encoder(spec.obs_dim, extra, options, num_members=num_members, init=init)
    return CriticEnsemble(encoder, hidden_dims, num_members=num_members, layernorm=layernorm,
                          init=init)
