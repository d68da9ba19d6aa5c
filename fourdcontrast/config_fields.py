"""Values of a configuration section checked against its dataclass: the type of every field comes from the
field's annotation (``typing.get_type_hints``), so a field added to a config dataclass is checked without
touching this module; ranges come from a table of the config module or from ``field(metadata={"range":
...})``.

Used when a config is read (:mod:`fourdcontrast.train.config`, :mod:`fourdcontrast.downstream.config`),
on the YAML file's values and on the ``--set`` overrides alike (which are parsed as YAML first, so
``--set optim.grad_clip=null``, ``--set run.amp=true`` and ``--set data.rooms={train: 4}`` work). A
value that does not fit raises :class:`~fourdcontrast.errors.ConfigError` naming the file (and the
``--set`` item), the field, the value and what is expected.

Conversions (nothing else is converted):

- ``float`` fields take integers, and numeric strings (YAML 1.1 reads ``1e-4`` as a string);
- ``int`` fields take integral floats and numeric strings (``5e4``);
- ``tuple[...]`` fields take lists (YAML has no tuples) and become tuples;
- ``bool`` fields take only ``true`` / ``false`` (not 0 / 1), ``str`` fields only strings.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from fourdcontrast.errors import ConfigError

__all__ = ["check_range", "check_section", "describe_type", "override_items", "parse_typed"]


class _Mismatch(Exception):
    """A value that does not fit an annotation (turned into a :class:`ConfigError` by the caller)."""


def _args(annotation) -> tuple:
    return typing.get_args(annotation)


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def describe_type(annotation) -> str:
    """What a value of ``annotation`` looks like, in words (``"a number or null"``)."""
    if annotation is Any:
        return "any value"
    if _is_union(annotation):
        arms = [a for a in _args(annotation) if a is not type(None)]
        text = " or ".join(describe_type(a) for a in arms)
        return text + " or null" if len(arms) < len(_args(annotation)) else text
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        return "true or false"
    if origin is int:
        return "an integer"
    if origin is float:
        return "a number"
    if origin is str:
        return "a string"
    if origin is dict:
        return "a mapping"
    if origin is tuple:
        args = _args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values ({', '.join(describe_type(a) for a in args)})"
    if origin is list:
        args = _args(annotation)
        return f"a list of {describe_type(args[0])}" if args else "a list"
    return getattr(annotation, "__name__", str(annotation))


def _number(value, integral: bool):
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Mismatch from None
    if not isinstance(value, int | float):
        raise _Mismatch
    if integral:
        if isinstance(value, float):
            if not value.is_integer():
                raise _Mismatch
            return int(value)
        return value
    return float(value)


def parse_typed(value, annotation):
    """``value`` converted to ``annotation`` by the rules of the module docstring.

    Raises:
        _Mismatch: when it does not fit (internal; :func:`check_section` reports it).
    """
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return value
    if _is_union(annotation):
        if value is None and type(None) in _args(annotation):
            return None
        for arm in _args(annotation):
            if arm is type(None):
                continue
            try:
                return parse_typed(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    origin = typing.get_origin(annotation) or annotation
    args = _args(annotation)
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if origin is int:
        return _number(value, integral=True)
    if origin is float:
        return _number(value, integral=False)
    if origin is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        if len(args) == 2:
            return {parse_typed(k, args[0]): parse_typed(v, args[1]) for k, v in value.items()}
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return [parse_typed(v, args[0]) for v in value] if args else list(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_typed(v, args[0]) for v in value)
        if args and len(value) != len(args):
            raise _Mismatch
        return tuple(parse_typed(v, a) for v, a in zip(value, args, strict=True)) if args else tuple(value)
    if isinstance(origin, type):
        if isinstance(value, origin):
            return value
        raise _Mismatch
    return value  # an annotation this module does not know: left to the dataclass


_RANGE = re.compile(r"^\s*(?:(?P<op>>=|<=|>|<)\s*(?P<bound>\S+)|(?P<lo_b>[\[(])\s*(?P<lo>[^,]+),\s*"
                    r"(?P<hi>[^\])]+)(?P<hi_b>[\])]))\s*$")


def check_range(value, spec: str) -> bool:
    """Whether the number ``value`` lies in ``spec``: ``"> 0"``, ``">= 1"``, ``"< 1"``, ``"<= 1"`` or an
    interval ``"[0, 1)"``, ``"(0, 1]"``, ``"[0, 1]"``, ``"(0, 1)"``. NaN lies in no range.

    Raises:
        ValueError: on a spec of another form (a programming error).
    """
    m = _RANGE.match(spec)
    if m is None:
        raise ValueError(f"range spec {spec!r} is not of the form '> 0', '>= 1', '[0, 1)', ...")
    if isinstance(value, float) and math.isnan(value):
        return False
    if m["op"]:
        bound = float(m["bound"])
        return {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound}[m["op"]]
    lo, hi = float(m["lo"]), float(m["hi"])
    above = value >= lo if m["lo_b"] == "[" else value > lo
    below = value <= hi if m["hi_b"] == "]" else value < hi
    return above and below


def _range_words(spec: str) -> str:
    m = _RANGE.match(spec)
    if m and m["op"]:
        return f"{m['op']} {m['bound']}"
    return f"in {spec.strip()}"


def override_items(overrides: list[str] | None) -> dict[str, str]:
    """``["optim.lr=abc"]`` → ``{"optim.lr": "optim.lr=abc"}``: which keys came from ``--set``."""
    out = {}
    for item in overrides or []:
        key, sep, _ = item.partition("=")
        if sep:
            out[key.strip()] = item
    return out


def _where(source: str, key: str, overridden: dict[str, str]) -> str:
    item = overridden.get(key)
    return f"{source} (--set {item})" if item is not None else source


def check_section(cls: type, values: dict, section: str | None, source: str,
                  ranges: dict[str, str] | None = None,
                  overridden: dict[str, str] | None = None) -> dict:
    """Check the ``values`` of one config section against the dataclass ``cls``; return them converted.

    Args:
        cls: the section's dataclass; its field annotations give the types.
        values: the section as read (YAML values, ``--set`` overrides applied).
        section: the section's name in keys (``"optim"`` → ``optim.lr``); None for top-level fields.
        source: the config file, named in every error.
        ranges: ``{"optim.lr": "> 0", ...}`` (keys of absent fields are ignored); a field's
            ``metadata["range"]`` is used as well.
        overridden: :func:`override_items` of the ``--set`` items, to name the one at fault.

    Raises:
        ConfigError: one line naming the file (and ``--set`` item), the field, the value and what is
            expected, for an unknown field, a value of the wrong type or out of range.
    """
    overridden = overridden or {}
    ranges = ranges or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{section}." if section else ""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = _where(source, prefix + unknown[0], overridden)
        in_section = f" in section {section!r}" if section else ""
        raise ConfigError(f"{where}: unknown field(s) {unknown}{in_section}; its fields are "
                          f"{', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        key = prefix + name
        annotation = hints.get(name, Any)
        try:
            converted = parse_typed(value, annotation)
        except _Mismatch:
            expected = describe_type(annotation)
            raise ConfigError(f"{_where(source, key, overridden)}: {key} must be {expected}, "
                              f"got {value!r}") from None
        spec = fields[name].metadata.get("range") or ranges.get(key)
        if spec is not None and converted is not None and not check_range(converted, spec):
            raise ConfigError(f"{_where(source, key, overridden)}: {key} must be {_range_words(spec)}, "
                              f"got {value!r}")
        out[name] = converted
    return out
