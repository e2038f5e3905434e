"""Behaviour cloning of the anchor seeker on reverse imagination (spec §4.6, §12.16)."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from offlinerlkit.anchor.seeker import AnchorSeeker
from offlinerlkit.nets.optim import adam
from offlinerlkit.nets.pairs import training_pairs

__all__ = [
    "HOLDOUT_LOSS_KEY",
    "TRAIN_LOSS_KEY",
    "PretrainMode",
    "original_stop_epoch",
    "pretrain_seeker",
    "update_stall_count",
]

logger = logging.getLogger(__name__)

PretrainMode = Literal["original", "improved"]
#: Mean minibatch loss of an epoch (the original's logged key).
TRAIN_LOSS_KEY = "train/anchor_seeking_loss"
#: Held-out loss of an epoch ("improved" mode only).
HOLDOUT_LOSS_KEY = "holdout/anchor_seeking_loss"
#: The original compares the first epoch's summed loss with this value.
INITIAL_PREV_LOSS = 1e10


def update_stall_count(prev_sum: float, epoch_sum: float, count: int, *,
                       rel_tol: float = 0.005) -> int:
    """The original's early-stop counter after one epoch (spec §4.6).

    `count + 1` when the summed epoch loss changed by at most `rel_tol` relative to the previous
    epoch's, `|(prev - cur) / prev| <= rel_tol` (in either direction), else 0.
    """
    if prev_sum == 0:
        change = 0.0 if epoch_sum == 0 else float("inf")
    else:
        change = abs((prev_sum - epoch_sum) / prev_sum)
    return count + 1 if change <= rel_tol else 0


def original_stop_epoch(epoch_sums: Sequence[float], *, rel_tol: float = 0.005, patience: int = 5,
                        initial: float = INITIAL_PREV_LOSS) -> int | None:
    """The 0-based epoch after which the original stops, given each epoch's summed loss.

    The first epoch is compared with `initial` (1e10); the counter of `update_stall_count` must
    reach `patience`. None if it never does within `epoch_sums`.
    """
    prev, count = float(initial), 0
    for epoch, current in enumerate(epoch_sums):
        count = update_stall_count(prev, float(current), count, rel_tol=rel_tol)
        prev = float(current)
        if count >= patience:
            return epoch
    return None


def pretrain_seeker(
    seeker: AnchorSeeker,
    observations: Tensor | np.ndarray,
    actions: Tensor | np.ndarray,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 256,
    mode: PretrainMode = "original",
    patience: int = 5,
    rel_tol: float = 0.005,
    holdout_ratio: float = 0.1,
    max_holdout: int = 50_000,
    generator: torch.Generator | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[float]:
    """Fit `seeker(obs) ~ action` by mean squared error with Adam (behaviour cloning).

    Loss per minibatch: `mean_{b,j} (Y_bj - pi~(X_b)_j)^2` with `X` = imagined earlier states
    (`observations`) and `Y` = the actions leading back towards the data (`actions`).

    * `"original"` (spec §4.6, faithful): minibatches of `batch_size` rows taken in order,
      **without shuffling**, the last partial batch dropped. After each epoch the summed
      minibatch loss feeds the original's early-stop counter (`update_stall_count`: a change of
      at most `rel_tol` relative to the previous epoch, either direction, counts; the first
      epoch is compared with 1e10); training stops when it reaches `patience`. The final
      weights are kept.
    * `"improved"` (spec §12.16): a random held-out split (`min(int(N * holdout_ratio),
      max_holdout)` rows), the training rows reshuffled every epoch (last partial batch kept),
      and training stops when the held-out loss has not improved for `patience` epochs; the
      weights of the best held-out epoch are restored.

    Args:
        seeker: the seeker to train (in place).
        observations: `X`, `[N, S]`.
        actions: `Y`, `[N, A]`.
        epochs: maximum number of epochs (the original's `asp_epoch`, 50).
        lr: Adam learning rate (`asp_lr`, 1e-3).
        batch_size: minibatch size (`asp_batch_size`, 256).
        mode: `"original"` or `"improved"`.
        patience: epochs of stalling (original) / no held-out improvement (improved) before stopping.
        rel_tol: the original's relative-change threshold (0.005).
        holdout_ratio: held-out fraction ("improved" only).
        max_holdout: cap on the held-out rows ("improved" only).
        generator: torch generator for the split and shuffles ("improved" only).
        progress: show a tqdm bar over epochs.
        on_epoch: called as `on_epoch(epoch, metrics)` after every epoch, `epoch` 0-based (the
            original's logging timestep); metrics hold `train/anchor_seeking_loss` (mean
            minibatch loss) and, in "improved" mode, `holdout/anchor_seeking_loss`.

    Returns:
        The mean minibatch training loss of every epoch run.
    """
    if mode not in ("original", "improved"):
        raise ValueError(f"mode must be 'original' or 'improved', got {mode!r}")
    if epochs < 1 or batch_size < 1 or patience < 1 or lr <= 0:
        raise ValueError(f"need epochs, batch_size, patience >= 1 and lr > 0; got {epochs}, "
                         f"{batch_size}, {patience}, {lr}")
    params = [p for p in seeker.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the seeker is frozen (no parameter requires grad); pass a trainable one")
    device = next(seeker.parameters()).device
    x, y = training_pairs(observations, actions, seeker.obs_dim, seeker.action_dim, device,
                          names=("observations", "actions"))
    optimizer = adam(params, lr=lr)
    was_training = seeker.training
    seeker.train()
    bar = tqdm(total=epochs, desc="anchor seeker", unit="epoch", disable=not progress,
               dynamic_ncols=True)
    try:
        if mode == "original":
            losses = _fit_original(seeker, optimizer, x, y, epochs=epochs, batch_size=batch_size,
                                   patience=patience, rel_tol=rel_tol, bar=bar, on_epoch=on_epoch)
        else:
            losses = _fit_improved(seeker, optimizer, x, y, epochs=epochs, batch_size=batch_size,
                                   patience=patience, holdout_ratio=holdout_ratio,
                                   max_holdout=max_holdout, generator=generator, bar=bar,
                                   on_epoch=on_epoch)
    finally:
        bar.close()
        seeker.train(was_training)
    return losses


def _step(seeker: AnchorSeeker, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> Tensor:
    loss = F.mse_loss(seeker(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _fit_original(seeker: AnchorSeeker, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, *,
                  epochs: int, batch_size: int, patience: int, rel_tol: float, bar: tqdm,
                  on_epoch: Callable[[int, dict[str, float]], None] | None) -> list[float]:
    num_batches = x.shape[0] // batch_size  # the last partial batch is dropped
    if num_batches < 1:
        raise ValueError(f"{x.shape[0]} rows make no full minibatch of {batch_size}; the original "
                         "mode drops partial batches (lower batch_size or use more data)")
    losses: list[float] = []
    prev, stall = INITIAL_PREV_LOSS, 0
    for epoch in range(epochs):
        total = torch.zeros((), device=x.device)
        for j in range(num_batches):
            rows = slice(j * batch_size, (j + 1) * batch_size)
            total += _step(seeker, optimizer, x[rows], y[rows])
        epoch_sum = float(total)
        losses.append(epoch_sum / num_batches)
        if on_epoch is not None:
            on_epoch(epoch, {TRAIN_LOSS_KEY: losses[-1]})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4g}")
        stall = update_stall_count(prev, epoch_sum, stall, rel_tol=rel_tol)
        prev = epoch_sum
        if stall >= patience:
            logger.info("anchor seeker: early stop after epoch %d (summed loss changed by at most "
                        "%.3g%% for %d epochs)", epoch, 100 * rel_tol, patience)
            break
    return losses


def _fit_improved(seeker: AnchorSeeker, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, *,
                  epochs: int, batch_size: int, patience: int, holdout_ratio: float,
                  max_holdout: int, generator: torch.Generator | None, bar: tqdm,
                  on_epoch: Callable[[int, dict[str, float]], None] | None) -> list[float]:
    n = x.shape[0]
    holdout = min(int(n * holdout_ratio), int(max_holdout))
    train = n - holdout
    if holdout < 1 or train < 1:
        raise ValueError(f"{n} rows with holdout_ratio={holdout_ratio} leave {holdout} held-out and "
                         f"{train} training rows; both must be >= 1")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=gen_device).to(x.device)
    train_idx, hold_x, hold_y = perm[:train], x[perm[train:]], y[perm[train:]]
    losses: list[float] = []
    best, best_state, since = float("inf"), copy.deepcopy(seeker.state_dict()), 0
    for epoch in range(epochs):
        order = train_idx[torch.randperm(train, generator=generator, device=gen_device).to(x.device)]
        total, num_batches = torch.zeros((), device=x.device), 0
        for start in range(0, train, batch_size):
            idx = order[start:start + batch_size]
            total += _step(seeker, optimizer, x[idx], y[idx])
            num_batches += 1
        losses.append(float(total) / num_batches)
        held = _mse(seeker, hold_x, hold_y, batch_size=max(batch_size, 4096))
        if on_epoch is not None:
            on_epoch(epoch, {TRAIN_LOSS_KEY: losses[-1], HOLDOUT_LOSS_KEY: held})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4g}", holdout=f"{held:.4g}")
        if held < best:
            best, best_state, since = held, copy.deepcopy(seeker.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                logger.info("anchor seeker: early stop after epoch %d (no held-out improvement for "
                            "%d epochs)", epoch, patience)
                break
    seeker.load_state_dict(best_state)
    logger.info("anchor seeker: best held-out loss %.6g", best)
    return losses


@torch.no_grad()
def _mse(seeker: AnchorSeeker, x: Tensor, y: Tensor, *, batch_size: int) -> float:
    """Mean squared error over all rows and action dims, in blocks of rows."""
    total = torch.zeros((), device=x.device)
    for start in range(0, x.shape[0], batch_size):
        total += (seeker(x[start:start + batch_size]) - y[start:start + batch_size]).square().sum()
    return float(total) / y.numel()
