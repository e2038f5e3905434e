"""A command line generated from a config dataclass.

Each field of the dataclass becomes a `--<name>` flag; `opt(...)` attaches the help text and the
original scripts' other spellings (short forms such as `-ldp`, or older names such as
`--n_ensemble`), so commands written for the paper's code keep working. Booleans accept the
original's forms: a bare `--flag` means True, `--flag True/False/1/0/yes/no` sets the value.

Only the run scripts call `parse_config`; library code takes typed arguments.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NoReturn,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

if TYPE_CHECKING:  # types.py imports torch; this module must stay light
    from offlinerlkit.types import DataclassInstance


T = TypeVar("T")

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def opt(default: Any = dataclasses.MISSING, help: str = "", *aliases: str, **kwargs: Any) -> Any:
    """A dataclass field with CLI help text and extra flag spellings.

    Args:
        default: the default value (lists and dicts are wrapped in a default factory).
        help: one line shown by `--help`.
        *aliases: other accepted flags, e.g. `"-ldp"` or `"--n_ensemble"`.
        **kwargs: passed on to `dataclasses.field`.
    """
    metadata = {"help": help, "aliases": tuple(aliases)}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata,
                                 **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def str2bool(text: str) -> bool:
    """Parse a boolean the way the original scripts' `strtobool` did."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {text!r}")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _none_or(parse: Any) -> Any:
    def convert(text: str) -> Any:
        return None if str(text).lower() == "none" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any) -> None:
    flags = [f"--{f.name}", *f.metadata.get("aliases", ())]
    help_text = f.metadata.get("help", "")
    default = (f.default if f.default is not dataclasses.MISSING
               else f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
               else None)
    kwargs: dict[str, Any] = {"dest": f.name, "default": default}
    base, optional = _unwrap_optional(tp)
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


#: Shown under every script's --help (the flag is handled by `utils.errors.run_main`).
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
    values = _values(config_cls, vars(namespace))
    try:
        _check_finite(values)
        config = config_cls(**values)
        if getattr(config, "resume", None):
            from offlinerlkit.utils.resume import resumed_config

            given = _values(config_cls, vars(_explicit(parser, argv)))
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


def _values(config_cls: type, parsed: dict[str, Any]) -> dict[str, Any]:
    """Parsed values by field name, lists turned into tuples for tuple fields."""
    hints = get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name not in parsed:
            continue
        value = parsed[f.name]
        base, _ = _unwrap_optional(hints[f.name])
        if get_origin(base) in (tuple, typing.Tuple) and isinstance(value, list):  # noqa: UP006
            value = tuple(value)
        values[f.name] = value
    return values


def _explicit(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Only the options written on the command line (every default suppressed)."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return quiet.parse_args(argv)


def config_to_dict(config: DataclassInstance) -> dict[str, Any]:
    """A JSON-friendly dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(config_cls: type[T], data: dict[str, Any], *, strict: bool = False) -> T:
    """Rebuild a config from a dict such as `record/hyper_param.json`.

    Unknown keys are ignored unless `strict`; lists are turned back into tuples for tuple fields.
    """
    hints = get_type_hints(config_cls)
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = set(data) - names
    if strict and unknown:
        raise ValueError(f"unknown config keys for {config_cls.__name__}: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name in names & set(data):
        value = data[name]
        base, _ = _unwrap_optional(hints[name])
        if get_origin(base) in (tuple, typing.Tuple) and isinstance(value, list):  # noqa: UP006
            value = tuple(value)
        values[name] = value
    return config_cls(**values)
