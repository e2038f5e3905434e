"""`benchmarks/suite.py`: the whole speed table at tiny sizes, and its FLOP counting by hand."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from readme_commands import readme_lines
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import suite  # noqa: E402

#: Flags that only shrink the work (sizes, repeats); argparse keeps the last value given.
SMALL = ["--threads", "1", "--steps", "1", "--warmup", "1", "--repeats", "1",
         "--matmul_size", "128", "--dyn_rows", "1000", "--dyn_steps", "2",
         "--rollout_starts", "500", "--reverse_starts", "200", "--reverse_length", "2",
         "--seeker_rows", "2000", "--seeker_epochs", "1", "--anchor_states", "64", "300",
         "--buffer_rows", "100000"]
TINY = SMALL + ["--algos", "bc", "iql"]


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "suite.py"), *args],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """`## title` -> rows of the pipe table under it, as {column: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    title, columns = None, None
    for line in text.splitlines():
        if line.startswith("## "):
            title, columns = line[3:], None
            tables[title] = []
        elif line.startswith("|") and title is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if columns is None:
                columns = cells
            elif not set(line) <= set("|-: "):
                tables[title].append(dict(zip(columns, cells)))
    return tables


def table_for(tables: dict[str, list[dict[str, str]]], section: str) -> list[dict[str, str]]:
    matches = [rows for title, rows in tables.items() if title.startswith(suite.TITLES[section])]
    assert len(matches) == 1, f"section {section!r} missing or repeated in {list(tables)}"
    return matches[0]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, list[dict[str, str]]]]:
    path = tmp_path_factory.mktemp("suite") / "speed.md"
    proc = run_suite(*TINY, "--markdown", str(path))
    return proc.stdout, markdown_tables(path.read_text())


def test_every_section_is_printed_and_written(tiny_run) -> None:
    stdout, tables = tiny_run
    assert stdout.splitlines()[0].startswith("device=cpu ")
    assert "threads=1" in stdout.splitlines()[0] and f"torch={torch.__version__}" in stdout
    for section in suite.SECTIONS:
        assert f"== {suite.TITLES[section]}" in stdout, section
        assert table_for(tables, section), f"section {section!r} has no rows"


def test_every_number_parses_as_positive(tiny_run) -> None:
    _, tables = tiny_run
    checked = 0
    for title, rows in tables.items():
        for row in rows:
            for column, cell in list(row.items())[1:]:  # the first column is the row's label
                if cell == "-" or (column.startswith("anchor ") and "precomputed" in str(row)):
                    continue  # precomputed dataset anchors: 0 anchor calls per update
                assert number(cell) > 0, f"{title} / {row} / {column}: {cell!r}"
                checked += 1
    assert checked >= 40


def test_policy_rows_and_columns(tiny_run) -> None:
    _, tables = tiny_run
    rows = {r["algorithm"]: r for r in table_for(tables, "policies")}
    cached = "iql+cocoa (row anchors precomputed)"
    assert list(rows) == ["bc", "iql", "iql+cocoa", cached]  # BC alone only
    for name, row in rows.items():
        for column in ("steps/s", "ms/step", "GFLOP/update", "GFLOP/s", "% of fp32 matmul"):
            assert number(row[column]) > 0, (name, column)
        assert number(row["steps/s"]) * number(row["ms/step"]) == pytest.approx(1000, rel=0.02)
    assert rows["iql"]["anchor calls/update"] == "-"
    assert number(rows["iql+cocoa"]["anchor calls/update"]) >= 1
    assert number(rows["iql+cocoa"]["anchor rows/update"]) >= 256
    assert number(rows["iql+cocoa"]["COCOA/alone time"]) > 0
    assert (rows[cached]["anchor calls/update"], rows[cached]["anchor rows/update"]) == ("0", "0")
    assert number(rows[cached]["GFLOP/update"]) < number(rows["iql+cocoa"]["GFLOP/update"])
    assert number(rows["iql+cocoa"]["GFLOP/update"]) > number(rows["iql"]["GFLOP/update"])
    assert not any("ref" in column for column in rows["iql"])  # no figures from elsewhere


def test_rollout_and_memory_rows(tiny_run) -> None:
    _, tables = tiny_run
    rollout = {r["actor"]: r for r in table_for(tables, "rollout")}
    assert rollout["mopo+cocoa"]["anchor calls/step"] == "1"
    assert number(rollout["mopo+cocoa"]["anchor rows/step"]) == 500
    dynamics = [r["model"] for r in table_for(tables, "dynamics")]
    assert dynamics == ["forward (23 -> 18)", "reverse (23 -> 17)"]
    memory = {r["what"]: r for r in table_for(tables, "memory")}
    buffer = next(v for k, v in memory.items() if k.startswith("replay buffer"))
    assert number(buffer["bytes/transition"]) == 168  # (17 + 6 + 1 + 17 + 1) float32
    measured = next(v for k, v in memory.items() if k.startswith("peak RSS growth"))
    assert number(measured["bytes/transition"]) >= 168  # at least the buffer itself


def test_anchor_rows(tiny_run) -> None:
    _, tables = tiny_run
    rows = table_for(tables, "anchors")
    assert [(r["anchor fn"], r["states"]) for r in rows] == [
        ("rollout_anchor_fn H=1", "64"), ("rollout_anchor_fn H=1", "300"),
        ("rollout_anchor_fn H=5", "64"), ("rollout_anchor_fn H=5", "300")]
    for row in rows:  # states/s x ms/call = states
        assert number(row["states/s"]) * number(row["ms/call"]) / 1000 == pytest.approx(
            number(row["states"]), rel=0.02)


def test_only_selects_sections() -> None:
    stdout = run_suite("--threads", "1", "--only", "matmul", "--matmul_size", "64",
                       "--repeats", "1").stdout
    assert f"== {suite.TITLES['matmul']}" in stdout
    assert all(f"== {suite.TITLES[s]}" not in stdout for s in suite.SECTIONS[1:])


def test_only_anchors_with_its_sizes() -> None:
    stdout = run_suite("--threads", "1", "--only", "anchors", "--repeats", "1",
                       "--anchor_horizons", "0", "2", "--anchor_states", "32").stdout
    assert all(f"== {suite.TITLES[s]}" not in stdout for s in suite.SECTIONS if s != "anchors")
    lines = stdout.split(f"== {suite.TITLES['anchors']} ==", 1)[1].splitlines()
    assert [line.split()[1] for line in lines if line.startswith("rollout_anchor_fn")] == [
        "H=0", "H=2"]


def test_counted_flops_match_a_hand_count() -> None:
    """One update of a 2-layer MLP: layer 1 (input without grad) costs 4*B*i*h (forward, weight
    gradient), layer 2 costs 6*B*h*o (forward, input and weight gradients); Adam counts 0."""
    torch.manual_seed(0)
    b, i, h, o = 32, 17, 64, 5
    net = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    optim = torch.optim.Adam(net.parameters())
    x, y = torch.randn(b, i), torch.randn(b, o)

    def update() -> None:
        loss = (net(x) - y).square().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    assert suite.count_flops(update) == pytest.approx(4 * b * i * h + 6 * b * h * o, rel=1e-3)


def test_counted_flops_of_one_linear_with_input_gradient() -> None:
    b, i, o = 256, 23, 200
    layer = nn.Linear(i, o)
    x = torch.randn(b, i, requires_grad=True)
    assert suite.count_flops(lambda: layer(x).sum().backward()) == pytest.approx(
        6 * b * i * o, rel=1e-3)


def test_readme_suite_commands_run() -> None:
    """Every `python benchmarks/suite.py` command in README.md, with only shrinking flags added
    (its own sections and algorithms stay; batch 16 keeps CQL+COCOA's update short)."""
    commands = [shlex.split(ln, comments=True) for ln in readme_lines()
                if ln.startswith("python benchmarks/suite.py")]
    assert commands, "README.md lost its `python benchmarks/suite.py` commands"
    for argv in commands:
        stdout = run_suite(*argv[2:], *SMALL, "--batch_size", "16").stdout
        only = list(suite.SECTIONS)
        if "--only" in argv:
            rest = argv[argv.index("--only") + 1:]
            only = rest[:next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]
        for section in only:
            assert f"== {suite.TITLES[section]}" in stdout, (argv, section)


@pytest.mark.parametrize("cocoa", [False, True])
def test_every_registered_algorithm_has_a_workload(cocoa: bool) -> None:
    """Each algorithm of the registry builds in the benchmark and runs one finite update."""
    import workloads

    from offlinerlkit.algorithms import ALGORITHMS
    from offlinerlkit.types import EnvSpec

    assert set(workloads.ALGOS) == set(ALGORITHMS)
    spec = EnvSpec(obs_dim=5, action_dim=2, max_action=1.0)
    batch = workloads.make_batch(spec, 16, torch.device("cpu"), seed=0)  # MOPO: 12 real rows
    for algo in workloads.ALGOS:
        if cocoa and not ALGORITHMS[algo].has_cocoa:
            continue
        _, update, anchor = workloads.build(algo, cocoa, spec, torch.device("cpu"))
        metrics = update(batch)
        assert metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), algo
        assert (anchor is not None) == cocoa, algo
