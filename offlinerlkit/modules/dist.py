"""Action distributions returned by the stochastic actors."""
from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class TanhNormal:
    """`a = max_action * tanh(u)`, `u ~ N(mean, std)` (spec 6.3).

    `log_prob` is `sum_i log N(u_i) - sum_i log(1 - tanh(u_i)^2 + 1e-6)` (the original's form,
    without a `log max_action` term). Shapes: mean, std `[B, A]`; log-probs `[B, 1]`.
    """

    def __init__(self, mean: Tensor, std: Tensor, max_action: float = 1.0) -> None:
        self.mean, self.std, self.max_action = mean, std, float(max_action)

    def mode(self) -> Tensor:
        """The deterministic action `max_action * tanh(mean)`."""
        return self.max_action * torch.tanh(self.mean)

    def rsample(self, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-probability `[B, 1]`."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        u = self.mean + self.std * eps
        return self.max_action * torch.tanh(u), self._log_prob_u(u, eps)

    def _log_prob_u(self, u: Tensor, eps: Tensor) -> Tensor:
        normal = -0.5 * eps.square() - self.std.log() - _LOG_SQRT_2PI
        squash = torch.log(1 - torch.tanh(u).square() + 1e-6)
        return (normal - squash).sum(-1, keepdim=True)


class DiagGaussian:
    """`a ~ N(mean, std)` with a state-independent std (IQL's actor, spec 6.3).

    The deterministic action is the mean clipped to `[-max_action, max_action]`.
    """

    def __init__(self, mean: Tensor, std: Tensor, max_action: float = 1.0) -> None:
        self.mean, self.std, self.max_action = mean, std.expand_as(mean), float(max_action)

    def mode(self) -> Tensor:
        return self.mean.clamp(-self.max_action, self.max_action)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def log_prob(self, action: Tensor) -> Tensor:
        """Summed log-density of `action` `[B, A]` -> `[B, 1]`."""
        z = (action - self.mean) / self.std
        return (-0.5 * z.square() - self.std.log() - _LOG_SQRT_2PI).sum(-1, keepdim=True)
