"""Comparisons for the device-parametrised tests (`device` fixture, `--device`; see conftest.py).

On CPU the tests keep their exact assertions. On CUDA, results of two computations that are the
same on paper (an optimised update and its reference, a fused kernel and the op-by-op one) may
differ in the last bits: cuBLAS picks other reduction orders and some backward kernels add with
atomics. There, and only there, the comparisons allow `CUDA_RTOL` / `CUDA_ATOL` (float32, TF32
off, which is PyTorch's default for matmuls).
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

CUDA_RTOL, CUDA_ATOL = 1e-4, 1e-5


def close_kw(device: torch.device, *, rtol: float = 0.0, atol: float = 0.0) -> dict[str, float]:
    """`assert_close` tolerances: the test's own on CPU, at least the CUDA ones on CUDA."""
    if device.type == "cpu":
        return {"rtol": rtol, "atol": atol}
    return {"rtol": max(rtol, CUDA_RTOL), "atol": max(atol, CUDA_ATOL)}


def assert_same(device: torch.device, actual: torch.Tensor, expected: torch.Tensor,
                msg: str = "") -> None:
    """Bit-for-bit equal on CPU; equal within the CUDA tolerances on CUDA."""
    if device.type == "cpu":
        assert torch.equal(actual, expected), msg
    else:
        torch.testing.assert_close(actual, expected, rtol=CUDA_RTOL, atol=CUDA_ATOL, msg=msg or None)


def same_floats(device: torch.device, expected: Any) -> Any:
    """What `got == ...` compares a metrics dict (or float) with: itself on CPU, an approx on CUDA."""
    if device.type == "cpu":
        return expected
    return pytest.approx(expected, rel=CUDA_RTOL, abs=CUDA_ATOL)
