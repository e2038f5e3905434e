"""Anchor plumbing for the policies: compute anchors once per distinct state batch, pass them in.

COCOA's networks see a state `s` through its anchor `s~ = anchor(s)` (spec §5). The anchor is a
deterministic, frozen function of `s` alone, so an update needs it once per *distinct* batch of
states: `s`, `s'` and (MOBILE) the model's sampled next states. Repeated states (CQL's
`num_repeat_actions` copies, max-Q backups) reuse those anchors through `repeat_rows`.
This replaces the original's shared STORE/REUSE/OFF handler (spec §5.4, §12.34): anchors are plain
tensors computed here and handed to `actor(obs, anchor)` / `critics(obs, action, anchor)`.

A plain (non-COCOA) network has an `IdentityEncoder` and gets `anchor=None`; its anchor function
is `None` and nothing is computed.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from offlinerlkit.types import AnchorFn, Batch

__all__ = ["AnchorFn", "AnchorPair", "Anchors", "CountingAnchorFn", "check_anchor_wiring",
           "repeat_rows"]


def repeat_rows(anchor: Optional[Tensor], repeats: int) -> Optional[Tensor]:
    """Anchors of `obs.repeat_interleave(repeats, 0)` from those of `obs` (None stays None).

    Row `i` becomes rows `i*R .. i*R+R-1`, the layout of the original's
    `obs.unsqueeze(1).repeat(1, R, 1).view(B * R, S)`.
    """
    return None if anchor is None else anchor.repeat_interleave(repeats, 0)


class AnchorPair(NamedTuple):
    """The anchors of one state batch for the actor and for the critics (`[N, S]` or None).

    When both networks use the same anchor function the two fields are the same tensor.
    """

    actor: Optional[Tensor]
    critic: Optional[Tensor]



class Anchors:
    """Computes the actor's and the critics' anchors of a state batch, without gradients.

    `anchors(obs)` returns an `AnchorPair`: `(actor_fn(obs), critic_fn(obs))`, each computed under
    `torch.no_grad()` and detached, or None for a network whose function is None (a plain
    network). When `actor_fn is critic_fn` the function runs once and both fields hold the same
    tensor (the original's two seekers are loaded from one file, so they are the same function
    whenever the horizons agree).

    Shapes: obs `[N, S]` -> anchors `[N, S]` (checked).

    Args:
        actor_fn: the actor's anchor function, or None for a plain actor.
        critic_fn: the critics' (and value network's) anchor function, or None for plain critics.
    """

    def __init__(self, actor_fn: Optional[AnchorFn] = None,
                 critic_fn: Optional[AnchorFn] = None) -> None:
        self.actor_fn = actor_fn
        self.critic_fn = critic_fn


    def __call__(self, obs: Tensor) -> AnchorPair:
        actor = self._compute(self.actor_fn, obs)
        if self.critic_fn is self.actor_fn:
            return AnchorPair(actor, actor)
        return AnchorPair(actor, self._compute(self.critic_fn, obs))

    @property
    def cache_fn(self) -> Optional[AnchorFn]:
        """The single deterministic function behind every anchor, or None.

        When the actor and the critics use one function (or only one of them uses anchors) and
        that function is deterministic (`fn.deterministic`, true for the paper's rollout
        anchors, false for the sampling `closest_delta` ablation), the anchors of a fixed set
        of states can be computed once and reused (`precompute`, `of_batch`).
        """
        used = [fn for fn in (self.actor_fn, self.critic_fn) if fn is not None]
        if not used or any(fn is not used[0] for fn in used):
            return None
        return used[0] if getattr(used[0], "deterministic", False) else None

    def precompute(self, states: Tensor, *, chunk_rows: int = 65536) -> Tensor:
        """Anchors `[N, S]` of a fixed state set (a dataset) by `cache_fn`, in chunks."""
        fn = self.cache_fn
        if fn is None:
            raise ValueError("these anchors cannot be precomputed: the actor and the critics use "
                             "different functions, or the function is not deterministic")
        parts = [self._compute(fn, states[i:i + chunk_rows])
                 for i in range(0, states.shape[0], chunk_rows)]
        return torch.cat(parts, 0) if parts else states.clone()

    def of_batch(self, batch: Batch, *, next_actor: bool = True) -> tuple[AnchorPair, AnchorPair]:
        """The anchor pairs of `batch.obs` and `batch.next_obs`.

        Taken from the batch when it carries precomputed anchors (`Batch.obs_anchor`, by
        `precompute`) and they can stand for this policy's (`cache_fn`), else `of_pair`.
        """
        if (batch.obs_anchor is not None and batch.next_obs_anchor is not None
                and self.cache_fn is not None):
            return self._shared(batch.obs_anchor), self._shared(batch.next_obs_anchor)
        return self.of_pair(batch.obs, batch.next_obs, next_actor=next_actor)

    def _shared(self, anchor: Tensor) -> AnchorPair:
        return AnchorPair(anchor if self.actor_fn is not None else None,
                          anchor if self.critic_fn is not None else None)

    def of_pair(self, obs: Tensor, next_obs: Tensor, *, next_actor: bool = True
                ) -> tuple[AnchorPair, AnchorPair]:
        """`(self(obs), self(next_obs))`, each function run once on both batches stacked.

        One call on `2B` rows instead of two on `B` (the anchor networks are frozen and act row
        by row, so the values are the same). With `next_actor=False` the actor's anchors of
        `next_obs` are not needed (IQL) and are computed only when the actor shares the
        critics' function.
        """
        b = obs.shape[0]
        both = torch.cat([obs, next_obs], 0)
        critic = self._compute(self.critic_fn, both)
        if self.actor_fn is self.critic_fn:
            actor, next_actor_anchor = _rows(critic, 0, b), _rows(critic, b, None)
        elif next_actor:
            both_actor = self._compute(self.actor_fn, both)
            actor, next_actor_anchor = _rows(both_actor, 0, b), _rows(both_actor, b, None)
        else:
            actor, next_actor_anchor = self._compute(self.actor_fn, obs), None
        return (AnchorPair(actor, _rows(critic, 0, b)),
                AnchorPair(next_actor_anchor, _rows(critic, b, None)))

    def actor(self, obs: Tensor) -> Optional[Tensor]:
        """Only the actor's anchors of `obs` (acting, rollouts)."""
        return self._compute(self.actor_fn, obs)


    @staticmethod
    def _compute(fn: Optional[AnchorFn], obs: Tensor) -> Optional[Tensor]:
        if fn is None:
            return None
        with torch.no_grad():
            anchor = fn(obs).detach()
        if anchor.shape != obs.shape:
            raise ValueError(f"an anchor function must map [N, S] states to [N, S] anchors; got "
                             f"{tuple(anchor.shape)} for input {tuple(obs.shape)}")
        return anchor


def _rows(x: Optional[Tensor], start: int, stop: Optional[int]) -> Optional[Tensor]:
    return None if x is None else x[start:stop]


class CountingAnchorFn:
    """Wraps an anchor function and counts its calls and rows (tests and benchmarks).

    Attributes:
        calls: number of calls since construction or the last `reset()`.
        rows: total number of states anchored.
    """

    def __init__(self, fn: AnchorFn) -> None:
        self.fn = fn
        self.calls = 0
        self.rows = 0

    def __call__(self, obs: Tensor) -> Tensor:
        self.calls += 1
        self.rows += int(obs.shape[0])
        return self.fn(obs)

    @property
    def deterministic(self) -> bool:
        """The wrapped function's `deterministic` flag (False when it has none)."""
        return bool(getattr(self.fn, "deterministic", False))

    def reset(self) -> None:
        self.calls = 0
        self.rows = 0


def check_anchor_wiring(name: str, network: nn.Module, fn: Optional[AnchorFn]) -> None:
    """Raise if `network`'s encoder and its anchor function disagree.

    A network whose `encoder.uses_anchor` is True (`AnchorDeltaEncoder`) needs a function; one
    without it (`IdentityEncoder`, or a module with no `encoder`) must get None, so no anchor is
    computed for nothing.
    """
    uses_anchor = bool(getattr(getattr(network, "encoder", None), "uses_anchor", False))
    if uses_anchor and fn is None:
        raise ValueError(f"the {name} has an anchor encoder but no anchor function was given")
    if not uses_anchor and fn is not None:
        raise ValueError(f"the {name} ignores anchors (plain encoder) but an anchor function was "
                         "given; pass None")
