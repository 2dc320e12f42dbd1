"""Build command-line interfaces from typed config dataclasses, so help text lives in one place.

Each component owns its config dataclass (``Seq2SeqConfig`` in ``assistant/generators/lstm/config.py``,
``RetrieverConfig`` in ``assistant/retrieval/index.py``, ...). Every field carries its help text in
``field(metadata={"help": ...})`` and the dataclass validates itself in ``__post_init__`` by raising
``ConfigError``. This module only turns such dataclasses into ``argparse`` flags and back; it reads no
configuration itself (nothing is read at import time).

Pattern after nanoGPT's config and peft's ``LoraConfig``: one typed object per component.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from assistant.errors import ConfigError

T = TypeVar("T")

_SCALARS = (int, float, str)


def _field_type(cls: type, f: dataclasses.Field) -> tuple[type, bool, bool]:
    """Return ``(scalar_type, is_list, is_optional)`` of a dataclass field.

    Raises:
        ConfigError: the field's type cannot be expressed as a flag.
    """
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise ConfigError(f"{cls.__name__}.{f.name}: union type {tp} cannot be a command-line flag")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner, *_rest) = typing.get_args(tp)
        return inner, True, optional
    if origin is typing.Literal:
        return str, False, optional
    if tp in _SCALARS or tp is bool:
        return tp, False, optional
    raise ConfigError(f"{cls.__name__}.{f.name}: type {tp} cannot be a command-line flag")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one ``--flag`` per field of the dataclass ``cls`` to ``parser``.

    Flag names are the field names with ``_`` turned into ``-``, after ``prefix`` (e.g. ``lora-``).
    Booleans become ``--flag / --no-flag``; ``Literal`` fields get ``choices``; list fields take
    several values. Defaults and help come from the dataclass, so ``--help`` shows them.

    Args:
        parser: the parser (or argument group) to extend.
        cls: a dataclass type whose fields have ``metadata={"help": ...}``.
        prefix: prepended to every flag name, to keep several configs apart in one CLI.
    """
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        scalar, is_list, _optional = _field_type(cls, f)
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )  # type: ignore[misc]
        flag = "--" + prefix + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kwargs: dict[str, Any] = {"dest": prefix.replace("-", "_") + f.name, "default": default}
        hints = typing.get_type_hints(cls)
        literal_args = _literal_choices(hints[f.name])
        if scalar is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                help=f"{help_text} (default: {default})",
                **kwargs,
            )
            continue
        if literal_args:
            kwargs["choices"] = literal_args
        kwargs["type"] = scalar
        if is_list:
            kwargs["nargs"] = "+"
        group.add_argument(flag, help=f"{help_text} (default: {default})", **kwargs)


def _literal_choices(tp: Any) -> list[str] | None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            found = _literal_choices(a)
            if found:
                return found
        return None
    if origin is typing.Literal:
        return list(typing.get_args(tp))
    return None


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "") -> T:
    """Build ``cls`` from the flags that :func:`add_dataclass_arguments` added.

    Raises:
        ConfigError: a value fails the dataclass's own validation (message names the field).
    """
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(args, prefix.replace("-", "_") + f.name)
        _scalar, is_list, _ = _field_type(cls, f)
        if is_list and value is not None:
            value = (
                tuple(value)
                if typing.get_origin(typing.get_type_hints(cls)[f.name]) is tuple
                else list(value)
            )
        values[f.name] = value
    return cls(**values)


def dataclass_from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build ``cls`` from a dict (e.g. a saved ``config.json``), rejecting unknown keys.

    Args:
        cls: the dataclass type.
        data: field name → value.
        where: a description of the source for messages, e.g. a file path.

    Raises:
        ConfigError: unknown or missing keys, or a value the dataclass rejects.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.__name__} fields {unknown}; valid fields are {sorted(names)}"
        )
    values = {}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if isinstance(value, list) and typing.get_origin(hints[key]) is tuple:
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: cannot build {cls.__name__}: {e}") from e


def require(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``; for use in ``__post_init__``."""
    if not condition:
        raise ConfigError(message)
