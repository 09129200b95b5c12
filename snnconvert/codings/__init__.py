"""The coding table: every conversion method snnconvert offers.

Each coding is one module of this package that declares itself with
:func:`register_coding`; the table is filled on first use (see :mod:`.registry`).
"""

from __future__ import annotations

from typing import Any

from snnconvert.codings.base import Coding, CodingReport, ConversionInputs, ReportTable, option
from snnconvert.codings.registry import (
    build_config,
    coding_for,
    codings,
    get_coding,
    parse_option,
    register_coding,
    unregister_coding,
)


def __getattr__(name: str) -> Any:
    if name == "CODINGS":  # the table as a dict, filled on first access
        return codings()
    raise AttributeError(f"module 'snnconvert.codings' has no attribute {name!r}")


__all__ = ["Coding", "CodingReport", "ConversionInputs", "ReportTable", "build_config", "coding_for", "codings",
           "get_coding", "option", "parse_option", "register_coding", "unregister_coding"]
