"""The dataclass-generated command line: types, aliases, the original's boolean forms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from offlinerlkit.config import RunConfig
from offlinerlkit.utils.cli import config_from_dict, config_to_dict, opt, parse_config


@dataclass(frozen=True)
class _Cfg(RunConfig):
    """A test config."""

    hidden_dims: tuple[int, ...] = opt((256, 256), "hidden sizes", "-hd")
    n_ensemble: int = opt(7, "members", "-ne", "--num_ensemble")
    mode: Literal["a", "b"] = opt("a", "a mode")
    load_path: Optional[str] = opt(None, "a path", "-ldp")
    use_x: bool = opt(False, "flag")
    auto_alpha: bool = opt(True, "flag")


def test_defaults_and_types() -> None:
    cfg = parse_config(_Cfg, [])
    assert cfg.hidden_dims == (256, 256) and cfg.n_ensemble == 7 and cfg.load_path is None
    assert cfg.use_x is False and cfg.auto_alpha is True


def test_aliases_lists_and_literals() -> None:
    cfg = parse_config(_Cfg, ["-hd", "64", "64", "64", "-ne", "3", "--mode", "b", "-ldp", "x/model"])
    assert cfg.hidden_dims == (64, 64, 64) and cfg.n_ensemble == 3
    assert cfg.mode == "b" and cfg.load_path == "x/model"
    assert parse_config(_Cfg, ["--num_ensemble", "5"]).n_ensemble == 5


@pytest.mark.parametrize(("argv", "expected"), [
    (["--use_x"], True), (["--use_x", "True"], True), (["--use_x", "0"], False),
    (["--auto_alpha", "False"], False), (["--auto_alpha", "no"], False), (["--auto_alpha"], True),
])
def test_original_boolean_forms(argv: list[str], expected: bool) -> None:
    cfg = parse_config(_Cfg, argv)
    assert (cfg.use_x if "--use_x" in argv else cfg.auto_alpha) is expected


def test_bad_values_exit_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--use_x", "maybe"], ["--mode", "c"], ["--epoch", "0"], ["--n_ensemble", "x"]):
        with pytest.raises(SystemExit):
            parse_config(_Cfg, argv)
    assert "--epoch must be at least 1" in capsys.readouterr().err


def test_dict_round_trip() -> None:
    cfg = parse_config(_Cfg, ["-hd", "32", "--task", "walker2d-medium-v2"])
    data = config_to_dict(cfg)
    assert config_from_dict(_Cfg, {**data, "hidden_dims": list(data["hidden_dims"]), "other": 1}) == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        config_from_dict(_Cfg, {"other": 1}, strict=True)
