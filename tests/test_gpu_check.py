"""`benchmarks/gpu_check.sh`: its 8-minute budget, its refusals, and (slow) the whole CPU dry run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
#: The issue's limit on a CUDA machine, seconds; each step's `timeout -k 5` may add 5 s.
BUDGET_S = 8 * 60


def run_check(tmp_path: Path, *args: str, timeout: int = 60, **env: str
              ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
                "GPU_CHECK_WORK": str(tmp_path / "work"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=False, cwd=tmp_path)


def test_the_full_run_fits_in_eight_minutes() -> None:
    text = SCRIPT.read_text()
    full = text[text.index('MODE="full"'):]
    caps = dict(re.findall(r"\b(T_[A-Z]+)=(\d+)", full.splitlines()[1]))
    assert set(caps) == {"T_TESTS", "T_SUITE", "T_FAST", "T_DATA", "T_CQL"}, caps
    steps = len(caps)
    assert sum(map(int, caps.values())) + 5 * steps + 30 <= BUDGET_S  # 30 s: setup and report


def test_a_python_without_torch_stops_with_the_reason_in_the_report(tmp_path: Path) -> None:
    fake = tmp_path / "no_torch"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError('torch hidden by the test')\n")
    proc = run_check(tmp_path, "--device", "cpu", PYTHONPATH=str(fake))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (tmp_path / "out" / "gpu_report.md").read_text()
    assert "cannot import torch: nothing below can run" in report
    assert "torch hidden by the test" in report
    assert "## Device-parametrised tests" not in report  # stopped before any step


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    proc = run_check(tmp_path, "--gpu")
    assert proc.returncode == 2 and "unknown option --gpu" in proc.stderr


@pytest.mark.slow
def test_cpu_dry_run_completes_and_reports_every_step(tmp_path: Path) -> None:
    """1 to 2.5 minutes on the busy 2-core CPU (49, 64 and 141 s measured), hence slow."""
    proc = run_check(tmp_path, timeout=900, DEVICE="cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "out" / "gpu_report.md").read_text()
    assert "mode: quick" in report
    tests = re.search(r"summary: `(\d+) passed[^`]*`", report)
    assert tests and int(tests.group(1)) > 50 and " failed" not in tests.group(0), report[:3000]
    assert report.count("### Policy gradient steps") == 2
    assert report.count("### Matrix-multiply rate") == 2
    assert "| iql+cocoa (row anchors precomputed) |" in report
    assert "speed options: --tf32, --bf16, --compile" in report
    assert "--cuda_graphs dropped (it needs CUDA" in report
    rate = re.search(r"\*\*CQL\+COCOA: ([0-9.]+) steps/s \(5 steps in", report)
    assert rate and float(rate.group(1)) > 0, report[-3000:]
    assert "FAILED" not in report and "TIMED OUT" not in report
