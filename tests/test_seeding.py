"""Tests of `offlinerlkit.utils.seeding`: global seeding and RNG state capture/restore."""
from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from offlinerlkit.utils.seeding import get_rng_state, set_rng_state, set_seed


@pytest.fixture(autouse=True)
def _keep_cudnn_flags() -> Iterator[None]:
    flags = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags


def _draw() -> tuple[list[float], list[float], list[float]]:
    """Draws from every global generator, including the cached-Gaussian paths."""
    py = [random.random(), random.gauss(0.0, 1.0), random.randint(0, 10**9)]
    npy = [float(np.random.rand()), float(np.random.normal()), float(np.random.randint(10**9))]
    th = torch.randn(5).tolist() + [float(torch.randint(0, 10**9, ()).item())]
    return py, npy, th


def test_set_seed_repeats_draws() -> None:
    set_seed(7)
    first = _draw()
    set_seed(7)
    assert _draw() == first
    set_seed(8)
    assert _draw() != first


def test_set_seed_cudnn_flags() -> None:
    set_seed(0, deterministic=True)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    set_seed(0, deterministic=False)
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError),
                                         (1.5, TypeError), (True, TypeError), ("0", TypeError)])
def test_set_seed_rejects_bad_seeds(seed: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="seed"):
        set_seed(seed)  # type: ignore[arg-type]


def test_capture_restore_repeats_draws() -> None:
    set_seed(1)
    random.gauss(0.0, 1.0)  # leaves a cached Gaussian in Python's and numpy's states
    np.random.normal()
    state = get_rng_state()
    first = _draw()
    set_rng_state(state)
    assert _draw() == first


def test_state_survives_weights_only_file(tmp_path: Path) -> None:
    set_seed(2)
    np.random.normal()
    state = get_rng_state()
    first = _draw()
    file = tmp_path / "rng.pt"
    torch.save({"rng": state}, file)
    set_seed(99)  # scramble
    loaded = torch.load(file, weights_only=True)["rng"]
    set_rng_state(loaded)
    assert _draw() == first


def test_state_is_plain_data() -> None:
    state = get_rng_state()
    assert set(state) >= {"python", "numpy", "torch"}
    assert ("cuda" in state) == torch.cuda.is_available()
    assert isinstance(state["numpy"]["key"], torch.Tensor)
    assert isinstance(state["python"]["internal"], torch.Tensor)


def test_restore_rejects_incomplete_state() -> None:
    state = get_rng_state()
    del state["numpy"]
    with pytest.raises(KeyError, match="numpy"):
        set_rng_state(state)
