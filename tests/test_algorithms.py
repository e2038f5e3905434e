"""The algorithm registry: one entry per algorithm, and the layers below it never read it."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
import torch
from policy_helpers import (
    ACTION_DIM,
    OBS_DIM,
    make_tiny_critics,
    make_tiny_dynamics,
    make_tiny_sac_parts,
    tiny_batch,
)

from offlinerlkit.algorithms import ALGORITHMS, algorithm, baseline_algorithms, cocoa_algorithms
from offlinerlkit.modules.actor import DeterministicActor, GaussianActor
from offlinerlkit.modules.encoder import IdentityEncoder
from offlinerlkit.nets.mlp import MLP
from offlinerlkit.pipeline.runner import ALGOS, needs_dynamics
from offlinerlkit.policy.base import BasePolicy
from offlinerlkit.policy.bc import BCPolicy
from offlinerlkit.policy.cql import CQLPolicy
from offlinerlkit.policy.iql import IQLPolicy
from offlinerlkit.policy.mobile import MOBILEPolicy
from offlinerlkit.policy.mopo import MOPOPolicy
from offlinerlkit.policy.td3bc import TD3BCActor, TD3BCPolicy

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


def test_baselines_are_the_algorithms_without_a_cocoa_variant() -> None:
    assert baseline_algorithms() == ("bc",)
    assert set(baseline_algorithms()) | set(cocoa_algorithms()) == set(ALGORITHMS)
    labels = [e.label for e in ALGORITHMS.values()]
    assert len(set(labels)) == len(labels) and algorithm("td3bc").label == "TD3+BC"


def test_no_script_tests_an_algorithm_name() -> None:
    """Only the registry compares algorithm names (`algo == "bc"`, `r.algo in ("mopo", ...)`)."""
    names = set(ALGORITHMS)
    offenders = []
    for path in sorted((ROOT / "run_example").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant)]
                if any(c.value in names for c in consts):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


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


def _tiny_policy(name: str) -> BasePolicy:
    """Each registered algorithm's policy, plain and tiny, with its default options."""
    if name == "bc":
        return BCPolicy(DeterministicActor(MLP(OBS_DIM, (8,)), ACTION_DIM))
    if name == "iql":
        actor = GaussianActor(IdentityEncoder(OBS_DIM), (8,), ACTION_DIM)
        return IQLPolicy(actor, make_tiny_critics(OBS_DIM, ACTION_DIM, cocoa=False),
                         make_tiny_critics(OBS_DIM, 0, cocoa=False, num_critics=1))
    if name == "td3bc":
        return TD3BCPolicy(TD3BCActor(IdentityEncoder(OBS_DIM), (8,), ACTION_DIM),
                           make_tiny_critics(OBS_DIM, ACTION_DIM, cocoa=False))
    parts = make_tiny_sac_parts(cocoa=False)
    if name == "mobile":
        return MOBILEPolicy(*parts, make_tiny_dynamics(), num_samples=2)
    return {"cql": CQLPolicy, "mopo": MOPOPolicy}[name](*parts)


#: Keys a `learn()` call returns only under some options or on some calls (not declared).
_OPTIONAL_METRICS = {"loss/alpha", "alpha", "loss/cql_alpha", "cql_alpha", "loss/actor",
                     "misc/lambda"}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_declared_metrics_are_what_learn_returns(name: str) -> None:
    torch.manual_seed(0)
    policy = _tiny_policy(name)
    batch = tiny_batch()
    for _ in range(2):  # TD3+BC's first update has no actor step, its second has
        keys = set(policy.learn(batch))
        declared = set(ALGORITHMS[name].metrics)
        assert declared <= keys, (name, sorted(declared - keys))
        assert keys - declared <= _OPTIONAL_METRICS, (name, sorted(keys - declared))


def test_display_names_come_from_the_registry() -> None:
    from offlinerlkit.algorithms import display_name

    assert display_name("td3bc") == "TD3+BC"
    assert display_name("iql") == "IQL"
    assert display_name("awac") == "AWAC"  # unregistered: upper-cased
