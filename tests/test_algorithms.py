"""The algorithm registry: one entry per algorithm, and the layers below it never read it."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from offlinerlkit.algorithms import ALGORITHMS, algorithm, cocoa_algorithms
from offlinerlkit.pipeline.runner import ALGOS, needs_dynamics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "run_example"))


def test_every_entry_names_a_script_with_its_config_and_main() -> None:
    for entry in ALGORITHMS.values():
        module = importlib.import_module(entry.script)
        assert callable(module.main), entry.name
        assert isinstance(getattr(module, entry.config), type), entry.name


def test_pipeline_drives_every_algorithm_and_cocoa_where_it_exists() -> None:
    assert ALGOS == tuple(ALGORITHMS)
    assert {"bc", "cql", "iql", "mopo", "mobile"} <= set(ALGOS)
    assert "bc" not in cocoa_algorithms()
    for name in ALGOS:
        assert needs_dynamics(name, "alone") == ALGORITHMS[name].model_based
        if name in cocoa_algorithms():
            assert needs_dynamics(name, "cocoa")
        else:
            with pytest.raises(ValueError, match="no COCOA variant"):
                needs_dynamics(name, "cocoa")


def test_signatures_are_unique_config_fields() -> None:
    signatures = [e.signature for e in ALGORITHMS.values() if e.signature is not None]
    assert len(signatures) == len(set(signatures))
    for entry in ALGORITHMS.values():
        if entry.signature is not None:
            cfg_cls = getattr(importlib.import_module(entry.script), entry.config)
            assert entry.signature in cfg_cls.__dataclass_fields__, entry.name
            others = [e for e in ALGORITHMS.values() if e is not entry and e.signature]
            for other in others:  # no other algorithm's config has this field
                other_cls = getattr(importlib.import_module(other.script), other.config)
                assert entry.signature not in other_cls.__dataclass_fields__, (entry.name, other.name)


def test_unknown_algorithm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        algorithm("nope")


@pytest.mark.parametrize("layer", ["nets", "modules", "dynamics", "anchor", "policy",
                                   "policy_trainer", "buffer", "datasets", "envs", "utils"])
def test_layers_below_the_registry_do_not_import_it(layer: str) -> None:
    for path in (ROOT / "offlinerlkit" / layer).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "offlinerlkit.algorithms", path
