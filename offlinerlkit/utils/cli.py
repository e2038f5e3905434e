"""A command line generated from a config dataclass.

Each field of the dataclass becomes a `--<name>` flag; `opt(...)` attaches the help text and the
original scripts' other spellings (short forms such as `-ldp`, or older names such as
`--n_ensemble`), so commands written for the paper's code keep working. Booleans accept the
original's forms: a bare `--flag` means True, `--flag True/False/1/0/yes/no` sets the value.

Every run script ends with `run_main(main, ConfigClass)`: it parses the command line into the
config and ends on an error as `utils.errors` says. Only the run scripts call `parse_config` and
`run_main`; library code takes typed arguments and never imports this module (the fields'
metadata lives in `utils.fields`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, Optional, TypeVar, get_args, get_origin, get_type_hints

from offlinerlkit.utils.errors import DEBUG_ENV, DEBUG_FLAG, describe, exit_code
from offlinerlkit.utils.fields import (
    config_from_dict,
    config_to_dict,
    field_default,
    field_values,
    opt,
    unwrap_optional,
)
from offlinerlkit.utils.resume import resumed_config

__all__ = ["EPILOG", "build_parser", "config_from_dict", "config_to_dict", "opt", "parse_config",
           "run_main", "str2bool"]

T = TypeVar("T")

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def str2bool(text: str) -> bool:
    """Parse a boolean the way the original scripts' `strtobool` did."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {text!r}")


def _none_or(parse: Any) -> Any:
    def convert(text: str) -> Any:
        return None if str(text).lower() == "none" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any) -> None:
    flags = [f"--{f.name}", *f.metadata.get("aliases", ())]
    help_text = f.metadata.get("help", "")
    default = field_default(f)
    default = None if default is dataclasses.MISSING else default
    kwargs: dict[str, Any] = {"dest": f.name, "default": default}
    base, optional = unwrap_optional(tp)
    origin = get_origin(base)
    if base is bool:
        kwargs.update(nargs="?", const=True, type=str2bool, metavar="BOOL")
    elif origin is Literal:
        choices = list(get_args(base))
        kwargs.update(type=_none_or(type(choices[0])) if optional else type(choices[0]),
                      choices=choices + ([None] if optional else []))
    elif origin in (list, tuple, typing.List, typing.Tuple, Sequence):  # noqa: UP006
        item = get_args(base)[0] if get_args(base) else str
        kwargs.update(nargs="*", type=item)
    elif base in (int, float, str):
        kwargs.update(type=_none_or(base) if optional else base)
    else:
        raise TypeError(f"config field {f.name!r} has a type the CLI cannot parse: {tp!r}")
    shown = "none" if default is None else default
    kwargs["help"] = f"{help_text} (default: {shown})".strip()
    parser.add_argument(*flags, **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `<prog>: error: <message> (--help lists the options)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


#: Shown under every script's --help (the flag is handled by `run_main`).
EPILOG = ("Errors in the options, task, data or files print one line and exit 2 (1 when the "
          "machine refused, e.g. a full disk); --debug (or COCOA_DEBUG=1) shows the traceback.")


def build_parser(config_cls: type, *, description: str | None = None) -> argparse.ArgumentParser:
    """Build an argparse parser with one flag per field of the dataclass `config_cls`."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls!r} is not a dataclass")
    doc = (config_cls.__doc__ or "").strip().splitlines()
    parser = _Parser(description=description or (doc[0] if doc else None), epilog=EPILOG)
    hints = get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.init:
            _add_field(parser, f, hints[f.name])
    return parser


def parse_config(config_cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse `argv` (default: `sys.argv[1:]`) into an instance of `config_cls`.

    Lists given on the command line are stored as tuples when the field is a tuple type, so the
    result stays hashable for frozen configs. With `--resume RUN_DIR` (configs with a `resume`
    field) the result is the saved run's configuration, with only the options given on the
    command line checked against it (`utils.resume.resumed_config`). Float options must be
    finite. Errors end with one line `<prog>: error: <message>` and exit status 2.
    """
    parser = build_parser(config_cls)
    namespace = parser.parse_args(argv)
    values = field_values(config_cls, vars(namespace))
    try:
        _check_finite(values)
        config = config_cls(**values)
        if getattr(config, "resume", None):
            given = field_values(config_cls, vars(_explicit(parser, argv)))
            config = resumed_config(config, given=given)
        return config
    except (TypeError, ValueError, FileNotFoundError) as err:
        parser.error(str(err))
        raise  # unreachable: parser.error exits


def _check_finite(values: dict[str, Any]) -> None:
    """Refuse NaN and infinite float options (argparse's `float` accepts "nan" and "inf")."""
    for name, value in values.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ValueError(f"--{name} must be a finite number, got {_show(value)}")


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _explicit(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Only the options written on the command line (every default suppressed)."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return quiet.parse_args(argv)


def run_main(main: Callable[..., Any], config_cls: Optional[type[T]] = None) -> None:
    """Every script's entry: run its `main` (with its parsed config when `config_cls` is
    given) and end as `utils.errors` says: one line and exit 2 or 1 for user and machine
    errors, a traceback for bugs, every traceback with `--debug` or `COCOA_DEBUG=1`."""
    debug = DEBUG_FLAG in sys.argv[1:] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != DEBUG_FLAG]
    try:
        if config_cls is None:
            main()
        else:
            main(parse_config(config_cls))
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code(exc)
        if debug or code is None:
            raise
        sys.stdout.flush()
        print(f"{Path(sys.argv[0]).name}: error: {describe(exc)}", file=sys.stderr, flush=True)
        sys.exit(code)
