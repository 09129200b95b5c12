"""The coding table: codings register themselves, keyed by their config type.

Every method package under :mod:`snnconvert.methods` is imported on first use
(:func:`snnconvert.registry.load_methods`), so a new coding is one call of
:func:`register_coding` in its method's package. Codings that live outside (plugins, tests)
register the same way once their module is imported; installed packages advertise their
module in the ``snnconvert.methods`` entry-point group.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from snnconvert.codings.base import Coding
from snnconvert.errors import SnnConvertError
from snnconvert.limits import shorten
from snnconvert.registry import load_methods

_BY_CONFIG: dict[type, Coding] = {}
_BY_NAME: dict[str, Coding] = {}


def register_coding(coding: Coding) -> Coding:
    """Add ``coding`` to the table (idempotent for the same declaration); returns it."""
    if not dataclasses.is_dataclass(coding.config):
        raise TypeError(f"coding {coding.name}: config must be a dataclass, not {coding.config!r}")
    known = _BY_NAME.get(coding.name)
    if known is not None and known.config is not coding.config:
        raise ValueError(f"coding name {coding.name!r} is taken by {known.config.__module__}")
    owner = _BY_CONFIG.get(coding.config)
    if owner is not None and owner.name != coding.name:
        raise ValueError(f"config {coding.config.__name__} already belongs to coding {owner.name!r}")
    _BY_NAME[coding.name] = coding
    _BY_CONFIG[coding.config] = coding
    return coding


def unregister_coding(name: str) -> None:
    """Remove a coding (tests that register toys clean up with this)."""
    coding = _BY_NAME.pop(name, None)
    if coding is not None:
        _BY_CONFIG.pop(coding.config, None)


def _load_codings() -> None:
    """Import every method package (each registers its coding) and the entry-point plugins."""
    load_methods()


def codings() -> dict[str, Coding]:
    """All registered codings by name, in name order."""
    _load_codings()
    return dict(sorted(_BY_NAME.items()))


def get_coding(name: str) -> Coding:
    table = codings()
    if name not in table:
        raise SnnConvertError(f"unknown coding {name!r}: choose one of {', '.join(sorted(table))}")
    return table[name]


def coding_for(config: Any) -> Coding:
    """The coding a config object belongs to."""
    _load_codings()
    coding = _BY_CONFIG.get(type(config))
    if coding is None:
        raise SnnConvertError(f"{type(config).__name__} is not the config of any registered coding")
    return coding


def build_config(coding: Coding, config: Any = None, **options: Any) -> Any:
    """A validated config of ``coding``: a copy of ``config`` (or the defaults) with ``options``
    applied. The caller's config object is never changed."""
    names = {f.name for f in dataclasses.fields(coding.config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise SnnConvertError(
            f"unknown option(s) for coding {coding.name}: {', '.join(unknown)} (valid: {', '.join(sorted(names))})"
        )
    if config is None:
        config = coding.config(**options)
    elif not isinstance(config, coding.config):
        raise SnnConvertError(f"coding {coding.name} takes a {coding.config.__name__}, not a {type(config).__name__}")
    else:
        config = dataclasses.replace(config, **options)
    config.validate()
    return config


# ---------------------------------------------------------------------------- text -> value


def _scalar(text: str, kind: Any) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(text)
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:
        return text
    if kind is type(None):
        if text.strip().lower() in ("none", "null"):
            return None
        raise ValueError(text)
    raise ValueError(text)


def parse_typed(text: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        # str last: "3" is the int 3 for `int | str`; None first: "none" is None for `int | None`
        ordered = sorted(members, key=lambda a: (a is not type(None), a is str))
        for member in ordered:
            try:
                return parse_typed(text, member)
            except ValueError:
                continue
        raise ValueError(text)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (str,)
        parts = [p.strip() for p in text.strip().strip("[]").split(",") if p.strip()]
        if not parts:
            raise ValueError(text)
        return [parse_typed(p, item) for p in parts]
    return _scalar(text, annotation)


def parse_option(coding: Coding, name: str, text: str) -> Any:
    """Read the command-line text of config field ``name`` (a declared parser, else the field's
    type: ``int | list[int] | str`` reads ``3``, ``1,2,3`` and ``auto``)."""
    if name in coding.parsers:
        return coding.parsers[name](text)
    hints = typing.get_type_hints(coding.config)
    if name not in hints:
        valid = ", ".join(f.name for f in coding.options())
        raise SnnConvertError(f"{name} is not an option of coding {coding.name} (its options: {valid})")
    try:
        return parse_typed(text, hints[name])
    except ValueError:
        shown = re.sub(r"<class '(\w+)'>", r"\1", str(hints[name]).replace("typing.", "")).replace("NoneType", "none")
        raise SnnConvertError(f"--{flag_name(name)} {shorten(text, 60)!r} is not possible for coding {coding.name}: "
                              f"expected {shown}") from None


def flag_name(field_name: str) -> str:
    """``bits_spike`` -> ``bits-spike``; ``Tc`` stays ``Tc``."""
    return field_name.replace("_", "-")

