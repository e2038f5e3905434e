"""Shared pytest configuration: the `slow` marker and the `--runslow` switch.

Slow checks (real training runs, long simulator rollouts) are skipped unless pytest is given
`--runslow` or selects them with `-m slow`.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run slow tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running check, skipped unless --runslow")


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
