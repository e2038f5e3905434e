"""The algorithm registry: what the rest of the code needs to know about each policy algorithm.

Each algorithm is declared once here. Nothing else tests algorithm names: the pipeline asks
`model_based` and `cocoa_sizes`, the result reader asks `signature`, the scripts take their
COCOA sizes and preset tables from their own entry, and the pipeline driver and the benchmarks
find a script through `script` / `config`. Adding an algorithm is a policy module, a script and
one entry (docs/ADDING_AN_ALGORITHM.md).

Layer: above `anchor` and `presets` (it imports only `config` and `presets`), below `pipeline`
and the scripts; the anchor layer takes sizes as arguments and never imports this module.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from offlinerlkit.config import CocoaSizes
from offlinerlkit.presets import MOBILE, MOPO, Preset

__all__ = ["ALGORITHMS", "Algorithm", "CocoaSizes", "algorithm", "baseline_algorithms",
           "cocoa_algorithms", "display_name"]


@dataclass(frozen=True)
class Algorithm:
    """One policy algorithm.

    Attributes:
        name: the name used on the command line, in run folders and in result tables.
        label: the name shown to people (summaries, plots): `TD3+BC` for `td3bc`.
        script: the module in `run_example/` that trains it (`main(cfg)`).
        config: the name of that script's config dataclass.
        model_based: trains on model rollouts, so the policy stage needs forward dynamics
            even without COCOA.
        cocoa_sizes: COCOA's default network sizes (spec 6.4); None when the algorithm has no
            COCOA variant.
        cocoa_in_paper: whether its COCOA variant is one of the paper's (False: an extension).
        presets: per-task hyper-parameters (`offlinerlkit.presets`), task key -> preset.
        signature: a config field only this algorithm's runs record in `hyper_param.json`
            (how results tell its runs apart); None to go by the run folder's name.
        metrics: the keys every `learn()` call of its policy returns, in the original's
            vocabulary (spec 7.1-7.4: it names them per algorithm; see docs/ARCHITECTURE.md,
            "Metrics"); optional ones (auto-alpha's `loss/alpha`, `alpha`, the Lagrange
            multiplier's, TD3+BC's delayed actor step's) are not listed.
    """

    name: str
    label: str
    script: str
    config: str
    model_based: bool = False
    cocoa_sizes: Optional[CocoaSizes] = None
    cocoa_in_paper: bool = False
    presets: Mapping[str, Preset] = field(default_factory=dict)
    signature: Optional[str] = None
    metrics: tuple[str, ...] = ("loss/actor",)

    @property
    def has_cocoa(self) -> bool:
        """Whether the algorithm has a COCOA variant."""
        return self.cocoa_sizes is not None


_SMALL = CocoaSizes((64, 64), 4, (100, 100))
_SAC_METRICS = ("loss/actor", "loss/critic1", "loss/critic2")

#: Every algorithm, in table order (the paper's four after BC, then the extensions).
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("bc", "BC", "run_bc", "BCConfig"),
    Algorithm("cql", "CQL", "run_cql", "CQLConfig",
              cocoa_sizes=CocoaSizes((256, 256, 256), 32, (256, 256, 256)), cocoa_in_paper=True,
              signature="cql_weight", metrics=_SAC_METRICS),
    Algorithm("iql", "IQL", "run_iql", "IQLConfig", cocoa_sizes=_SMALL, cocoa_in_paper=True,
              signature="expectile", metrics=("loss/actor", "loss/q1", "loss/q2", "loss/v")),
    Algorithm("mopo", "MOPO", "run_mopo", "MOPOConfig", model_based=True, cocoa_sizes=_SMALL,
              cocoa_in_paper=True, presets=MOPO, signature="uncertainty_mode",
              metrics=(*_SAC_METRICS, "train/actor/target_Q")),
    Algorithm("mobile", "MOBILE", "run_mobile", "MOBILEConfig", model_based=True, cocoa_sizes=_SMALL,
              cocoa_in_paper=True, presets=MOBILE, signature="num_q_ensemble",
              metrics=("loss/actor", "loss/critic")),
    # not in the paper; its COCOA variant is this project's extension (docs/FIDELITY.md)
    Algorithm("td3bc", "TD3+BC", "run_td3bc", "TD3BCConfig", cocoa_sizes=_SMALL, signature="policy_noise",
              metrics=("loss/critic1", "loss/critic2")),
)}


def algorithm(name: str) -> Algorithm:
    """The registry entry of `name`; a clear error for an unknown name."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose from {list(ALGORITHMS)}") from None


def display_name(name: str) -> str:
    """The label of a registered algorithm (`TD3+BC` for `td3bc`); an unknown name upper-cased
    (results folders may hold runs of algorithms this version does not register)."""
    entry = ALGORITHMS.get(name)
    return entry.label if entry is not None else name.upper()


def baseline_algorithms() -> tuple[str, ...]:
    """The algorithms without a COCOA variant (trained alone only, e.g. BC), in table order."""
    return tuple(a.name for a in ALGORITHMS.values() if not a.has_cocoa)


def cocoa_algorithms() -> tuple[str, ...]:
    """The algorithms with a COCOA variant (those the pipeline drives), in table order."""
    return tuple(a.name for a in ALGORITHMS.values() if a.has_cocoa)
