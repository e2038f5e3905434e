"""Learning curves: seed aggregation and a non-empty PNG from fake run folders."""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from script_helpers import fake_run, run_script_without

from offlinerlkit.pipeline import (
    aggregate_curves,
    draw_learning_curves,
    find_policy_runs,
    smooth_curve,
)
from offlinerlkit.utils.extras import MissingExtraError

PLOTTER = Path(__file__).resolve().parents[1] / "run_example" / "plotter.py"
sys.path.insert(0, str(PLOTTER.parent))
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


def _fake_online_sac_run(root: Path) -> Path:
    """What the replica maker writes for its online SAC run (config counts train_steps)."""
    run = root / "replica-hopper" / "online_sac" / "seed_0_20240101-000000"
    (run / "record").mkdir(parents=True)
    record = {"config": {"robot": "hopper", "task": None, "train_steps": 300, "seed": 0},
              "dataset_source": "cocoa-rl replica (maker)"}
    (run / "record" / "hyper_param.json").write_text(json.dumps(record))
    (run / "record" / "policy_training_progress.csv").write_text(
        "timestep,eval/normalized_episode_reward\n100,1.0\n200,2.0\n")
    return run


def test_only_offline_policy_runs_are_found(tmp_path: Path) -> None:
    _fake_online_sac_run(tmp_path)
    offline = fake_run(tmp_path, "hopper-medium-v2", "iql", "alone", 0, [5.0])
    assert [r.path for r in find_policy_runs([tmp_path])] == [offline]


def test_panels_are_the_algorithm_task_pairs_with_runs_and_one_point_shows(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _fake_online_sac_run(tmp_path)
    fake_run(tmp_path, "hopper-medium-v2", "iql", "alone", 0, [5.0])  # evaluated once
    fake_run(tmp_path, "hopper-medium-v2", "iql", "cocoa", 0, [6.0])
    fig = draw_learning_curves(find_policy_runs([tmp_path]))
    (ax,) = fig.axes  # no ONLINE/none panel
    assert ax.get_title() == "IQL: hopper-medium"
    assert [line.get_marker() for line in ax.get_lines()] == ["o", "o"]  # single points visible
    # CQL on one task and IQL on another: two panels side by side, no empty ones
    fake_run(tmp_path, "walker2d-medium-v2", "cql", "alone", 0, list(range(30)))
    fig = draw_learning_curves(find_policy_runs([tmp_path]))
    assert sorted(ax.get_title() for ax in fig.axes) == ["CQL: walker2d-medium", "IQL: hopper-medium"]
    long_curve = next(ax for ax in fig.axes if ax.get_title().startswith("CQL")).get_lines()[0]
    assert long_curve.get_marker() in (None, "None", "")  # long curves without markers


def test_a_missing_matplotlib_names_the_install_command(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_run(tmp_path, "hopper-medium-v2", "iql", "alone", 0, [5.0])
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[plot\]"'):
        draw_learning_curves(find_policy_runs([tmp_path]))
    proc = run_script_without("matplotlib", PLOTTER, "--roots", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('plotter.py: error: matplotlib is not installed; install it with '
                                   'pip install -e ".[plot]"')
