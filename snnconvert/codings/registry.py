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
from snnconvert.registry import Registry

CODINGS: Registry[Coding] = Registry("coding", same=lambda a, b: a.config is b.config)
"""Every coding by name (filled by the method packages and plugins on first read)."""


def register_coding(coding: Coding) -> Coding:
    """Add ``coding`` to the table (idempotent for the same declaration); returns it."""
    if not dataclasses.is_dataclass(coding.config):
        raise TypeError(f"coding {coding.name}: config must be a dataclass, not {coding.config!r}")
    owner = next((c for c in CODINGS._items.values() if c.config is coding.config), None)
    if owner is not None and owner.name != coding.name:
        raise ValueError(f"config {coding.config.__name__} already belongs to coding {owner.name!r}")
    CODINGS.register(coding.name, coding)
    CODING_OPTIONS.register(coding.name, coding.option_set())
    return coding


def unregister_coding(name: str) -> None:
    """Remove a coding (tests that register toys clean up with this)."""
    CODINGS.unregister(name)
    CODING_OPTIONS.unregister(name)


def codings() -> dict[str, Coding]:
    """All registered codings by name, in name order."""
    return CODINGS.items()


def get_coding(name: str) -> Coding:
    """The coding ``name``, or a one-line error listing the choices."""
    return CODINGS.get(name)


def coding_for(config: Any) -> Coding:
    """The coding a config object belongs to."""
    coding = next((c for c in codings().values() if c.config is type(config)), None)
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
