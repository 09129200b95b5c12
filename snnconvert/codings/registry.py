"""The coding table: codings register themselves, keyed by their config type.

Every method package under :mod:`snnconvert.methods` is imported on first use
(:func:`snnconvert.registry.load_methods`), so a new coding is one call of
:func:`register_coding` in its method's package. Codings that live outside (plugins, tests)
register the same way once their module is imported; installed packages advertise their
module in the ``snnconvert.methods`` entry-point group.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from snnconvert.codings.base import Coding
from snnconvert.errors import SnnConvertError
from snnconvert.options import CODING_OPTIONS, flag_name, parse_typed
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
    CODING_OPTIONS.register(coding.name, coding.option_set())
    _BY_NAME[coding.name] = coding
    _BY_CONFIG[coding.config] = coding
    return coding


def unregister_coding(name: str) -> None:
    """Remove a coding (tests that register toys clean up with this)."""
    coding = _BY_NAME.pop(name, None)
    if coding is not None:
        _BY_CONFIG.pop(coding.config, None)
        CODING_OPTIONS.unregister(name)


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
    return coding.option_set().build(config, **options)


def parse_option(coding: Coding, name: str, text: str) -> Any:
    """Read the command-line text of config field ``name`` (a declared parser, else the field's
    type: ``int | list[int] | str`` reads ``3``, ``1,2,3`` and ``auto``)."""
    return coding.option_set().parse(name, text)


__all__ = ["build_config", "coding_for", "codings", "flag_name", "get_coding", "parse_option", "parse_typed",
           "register_coding", "unregister_coding"]
