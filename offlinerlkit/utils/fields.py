"""Config dataclass fields with command-line metadata, and their JSON round trip.

`opt(...)` declares a field of a config dataclass with its help text, the other spellings its
flag accepts (the original scripts' short forms and names) and the names it was saved under
by earlier versions of this project (`saved_as`). The command line (`utils.cli`) reads this
metadata; `config_from_dict` uses `saved_as` so that the `record/hyper_param.json` of an older
run still rebuilds its configuration (`upgrade_saved`).

This module only describes fields: it parses no command line, so `config.py` and the library
can use it without depending on the script-side `utils.cli`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:  # types.py imports torch; this module must stay light
    from offlinerlkit.types import DataclassInstance

__all__ = ["config_from_dict", "config_to_dict", "field_default", "field_values", "opt", "unwrap_optional",
           "upgrade_saved"]

T = TypeVar("T")


def opt(default: Any = dataclasses.MISSING, help: str = "", *aliases: str,
        saved_as: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A dataclass field with CLI help text, extra flag spellings and former saved names.

    Args:
        default: the default value (lists and dicts are wrapped in a default factory).
        help: one line shown by `--help`.
        *aliases: other accepted flags, e.g. `"-ldp"` or `"--n_ensemble"`.
        saved_as: names this field had in the `hyper_param.json` of older runs; a saved value
            under such a name that is not None replaces the field's own (see `upgrade_saved`).
        **kwargs: passed on to `dataclasses.field`.
    """
    metadata = {"help": help, "aliases": tuple(aliases), "saved_as": tuple(saved_as)}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata,
                                 **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def field_default(f: dataclasses.Field) -> Any:
    """The default of a dataclass field (its factory called), or `dataclasses.MISSING`."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """`Optional[X]` -> `(X, True)`; any other type -> `(type, False)`."""
    origin = get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def config_to_dict(config: DataclassInstance) -> dict[str, Any]:
    """A JSON-friendly dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def upgrade_saved(config_cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration with the former field names of `config_cls` replaced by today's.

    For each field declared with `opt(..., saved_as=(old, ...))`, a saved `old` key is removed;
    its value, when not None, becomes the field's value. A None meant "not given": the field's
    own saved value stands, or, when the record has none, the field's default. Other keys pass
    through unchanged.
    """
    upgraded = dict(data)
    for f in dataclasses.fields(config_cls):
        for old in f.metadata.get("saved_as", ()):
            if old in upgraded and old != f.name:
                value = upgraded.pop(old)
                if value is not None:
                    upgraded[f.name] = value
                elif f.name not in upgraded and field_default(f) is not dataclasses.MISSING:
                    upgraded[f.name] = field_default(f)
    return upgraded


def config_from_dict(config_cls: type[T], data: Mapping[str, Any], *, strict: bool = False) -> T:
    """Rebuild a config from a dict such as `record/hyper_param.json`'s `config`.

    Former field names are mapped first (`upgrade_saved`). Unknown keys are ignored unless
    `strict`; lists are turned back into tuples for tuple fields.
    """
    data = upgrade_saved(config_cls, data)
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = set(data) - names
    if strict and unknown:
        raise ValueError(f"unknown config keys for {config_cls.__name__}: {sorted(unknown)}")
    return config_cls(**field_values(config_cls, data))


def field_values(config_cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are init fields of `config_cls`, lists turned into tuples
    for tuple-typed fields (JSON and argparse give lists; frozen configs keep tuples)."""
    hints = get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        if not f.init or f.name not in data:
            continue
        value = data[f.name]
        base, _ = unwrap_optional(hints[f.name])
        if get_origin(base) in (tuple, typing.Tuple) and isinstance(value, list):  # noqa: UP006
            value = tuple(value)
        values[f.name] = value
    return values
