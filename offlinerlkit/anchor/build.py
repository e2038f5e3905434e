"""Turn COCOA's options into anchor functions and encoder choices for a policy (spec 5, 6.5, 9.2).

A policy script calls `build_anchor_setup` once; the result says which anchor function the actor
and the critics get (None for a plain network) and which encoder each network type uses. When
the actor and critic horizons are equal, both get the same function object, so a policy computes
each state batch's anchors once for all its networks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from offlinerlkit.anchor.anchor_fn import AnchorFn, closest_delta_anchor_fn, rollout_anchor_fn
from offlinerlkit.anchor.seeker import load_seeker
from offlinerlkit.config import CocoaOptions, CocoaSizes
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.modules.build import PLAIN, EncoderOptions
from offlinerlkit.types import EnvSpec
from offlinerlkit.utils.errors import UserError

log = logging.getLogger(__name__)

class CocoaSetupError(UserError, ValueError):
    """COCOA was asked for with options that cannot work; the message says what to pass."""


@dataclass(frozen=True)
class AnchorSetup:
    """What a policy needs from COCOA.

    Attributes:
        actor_anchor_fn, critic_anchor_fn: the anchor functions (None: plain network).
        actor_encoder, critic_encoder: encoder options of the actor and of the critics/V.
        backbone_dims: the default backbone sizes for this algorithm and variant (COCOA's when
            any network is anchor + delta, else None to keep the algorithm's plain default).
        record: a JSON-friendly description for `hyper_param.json`.
    """

    actor_anchor_fn: Optional[AnchorFn] = None
    critic_anchor_fn: Optional[AnchorFn] = None
    actor_encoder: EncoderOptions = PLAIN
    critic_encoder: EncoderOptions = PLAIN
    backbone_dims: Optional[tuple[int, ...]] = None
    record: dict[str, Any] = field(default_factory=lambda: {"cocoa": False})


def build_anchor_setup(options: CocoaOptions, *, sizes: Optional[CocoaSizes], task: str, spec: EnvSpec,
                       dynamics: Optional[EnsembleDynamics], dataset_obs: Optional[np.ndarray],
                       device: torch.device | str = "cpu",
                       generator: Optional[torch.Generator] = None) -> AnchorSetup:
    """Build the anchor functions and encoder options that `options` ask for.

    Args:
        options: the script's COCOA options.
        sizes: the algorithm's default f/g and backbone sizes (spec 6.4; its registry entry,
            `offlinerlkit.algorithms`); `options` may override the f/g ones. None: the
            algorithm has no COCOA variant (asking for COCOA is an error).
        task: the task; a seeker trained for another task is refused.
        spec: observation/action sizes; a seeker of other sizes is refused.
        dynamics: the trained forward dynamics (needed for rollout anchors).
        dataset_obs: dataset observations (needed for the closest-delta ablation).
        device: where the seeker goes.
        generator: random source of the closest-delta ablation.
    """
    actor_delta, critic_delta = options.anchor_delta_actor, options.anchor_delta_critics
    if not options.use_cocoa:
        if actor_delta or critic_delta:
            raise CocoaSetupError("--anchor_delta_actor/--anchor_delta_critics (the original's "
                                  "--actor_transd/--critic_transd) need anchors: pass "
                                  "--load_anchor_seeker_path (and --load_dynamics_path)")
        return AnchorSetup()
    actor_delta = True if actor_delta is None else actor_delta
    critic_delta = True if critic_delta is None else critic_delta
    if not (actor_delta or critic_delta):
        raise CocoaSetupError("COCOA is on but --anchor_delta_actor and --anchor_delta_critics "
                              "are both off; drop --load_anchor_seeker_path for a plain run")
    if sizes is None:
        raise CocoaSetupError("this algorithm has no COCOA variant: drop the COCOA options")
    fg_default, embed_default, backbone = sizes
    encoder = EncoderOptions(cocoa=True, fg_hidden_dims=options.fg_hidden_dims or fg_default,
                             embedding_dim=options.embedding_dim or embed_default,
                             fg_layernorm=options.fg_layernorm)
    record: dict[str, Any] = {"cocoa": True, "anchor_mode": options.anchor_mode,
                              "anchor_delta_actor": actor_delta,
                              "anchor_delta_critics": critic_delta,
                              "fg_hidden_dims": list(encoder.fg_hidden_dims),
                              "embedding_dim": encoder.embedding_dim,
                              "fg_layernorm": encoder.fg_layernorm}
    if options.anchor_mode == "rollout":
        if dynamics is None:
            raise CocoaSetupError("COCOA's rollout anchors run the forward dynamics: pass "
                                  "--load_dynamics_path <dynamics run>/model")
        seeker = load_seeker(options.load_anchor_seeker_path, task=task,  # type: ignore[arg-type]
                             obs_dim=spec.obs_dim, action_dim=spec.action_dim,
                             hidden_dims=options.anchor_seeker_hidden_dims, device=device)
        actor_fn = rollout_anchor_fn(seeker, dynamics, options.actor_horizon_len)
        critic_fn = (actor_fn if options.critic_horizon_len == options.actor_horizon_len
                     else rollout_anchor_fn(seeker, dynamics, options.critic_horizon_len))
        record.update(actor_horizon_len=options.actor_horizon_len,
                      critic_horizon_len=options.critic_horizon_len,
                      seeker=seeker.architecture())
    else:
        if dataset_obs is None:
            raise CocoaSetupError("the closest_delta ablation needs the dataset observations")
        obs = torch.as_tensor(np.asarray(dataset_obs, dtype=np.float32), device=device)
        actor_fn = critic_fn = closest_delta_anchor_fn(
            obs, sample_size=options.closest_obs_sample_size, generator=generator)
        record.update(closest_obs_sample_size=options.closest_obs_sample_size)
    return AnchorSetup(
        actor_anchor_fn=actor_fn if actor_delta else None,
        critic_anchor_fn=critic_fn if critic_delta else None,
        actor_encoder=encoder if actor_delta else PLAIN,
        critic_encoder=encoder if critic_delta else PLAIN,
        backbone_dims=backbone, record=record,
    )
