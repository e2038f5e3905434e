"""Shared pytest configuration: the `slow` marker and `--runslow`, the `device` marker and `--device`.

Slow checks (real training runs, long simulator rollouts) are skipped unless pytest is given
`--runslow` or selects them with `-m slow`.

Tests that take the `device` fixture build their tensors and modules there: `cpu` by default,
`--device cuda` runs them on CUDA (skipped, with the reason, where CUDA is absent). Every such
test carries the `device` marker, so `pytest -m device --device cuda` runs exactly those
(benchmarks/gpu_check.sh does).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run slow tests")
    parser.addoption("--device", default="cpu",
                     help="torch device of the tests that take the `device` fixture (cpu, cuda, "
                          "cuda:1; default cpu)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running check, skipped unless --runslow")
    config.addinivalue_line("markers", "device: builds its tensors on the --device device "
                                       "(added to every test that takes the `device` fixture)")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark every test that takes the `device` fixture (before `-m` selects)."""
    if "device" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.device)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("-m", default="") or ""
    if config.getoption("--runslow") or "slow" in markexpr:
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny networks run faster on one thread, and a busy 2-core machine stays responsive."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The `--device` device; a CUDA request skips where CUDA is absent (never falls back).

    Session-scoped, so module fixtures (a model trained once per module) can take it too."""
    import torch

    name = request.config.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: torch {torch.__version__} finds no CUDA device "
                    "(torch.cuda.is_available() is False)")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        pytest.skip(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--device {name}: the tests know cpu and cuda only")
    return dev
