"""Learning curves: seed aggregation and a non-empty PNG from fake run folders."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from test_table import fake_run

from offlinerlkit.pipeline import aggregate_curves, find_policy_runs, smooth_curve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import plotter  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_aggregate_mean_and_band_over_seeds(tmp_path: Path) -> None:
    fake_run(tmp_path, "hopper-medium-v2", "cql", "alone", 0, [10.0, 20.0, 30.0])
    fake_run(tmp_path, "hopper-medium-v2", "cql", "alone", 1, [30.0, 40.0])  # stopped early
    x, mean, std, count = aggregate_curves(find_policy_runs([tmp_path]))
    assert x.tolist() == [1000.0, 2000.0, 3000.0]
    assert mean.tolist() == [20.0, 30.0, 30.0]
    assert std.tolist() == [10.0, 10.0, 0.0]
    assert count.tolist() == [2, 2, 1]


def test_smoothing_is_a_centred_moving_average() -> None:
    y = np.array([0.0, 3.0, 6.0, 9.0])
    assert smooth_curve(y, 0).tolist() == y.tolist()
    assert smooth_curve(y, 1).tolist() == pytest.approx([1.5, 3.0, 6.0, 7.5])


def test_plotter_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    for task in ("hopper-medium-v2", "walker2d-medium-v2"):
        for variant in ("alone", "cocoa"):
            for seed in range(3):
                scores = list(np.cumsum(rng.uniform(0, 5, size=20)))
                fake_run(tmp_path / "log", task, "cql", variant, seed, scores)
    out = plotter.main(plotter.PlotConfig(roots=(str(tmp_path / "log"),),
                                          output=str(tmp_path / "fig" / "curves.png"),
                                          smooth=2, dpi=50, title="CQL"))
    assert out == tmp_path / "fig" / "curves.png" and out.stat().st_size > 5000
    width, height = _png_size(out)
    assert width > height > 100  # one row, two task panels side by side
    with pytest.raises(ValueError, match="no evaluated policy run"):
        plotter.main(plotter.PlotConfig(roots=(str(tmp_path / "log"),), tasks=("hopper-random",),
                                        output=str(tmp_path / "none.png")))
