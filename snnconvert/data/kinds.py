"""Data kinds: what a data spec's kind (``digits``, ``imagefolder:PATH``, ...) is and how it loads.

A kind declares its syntax, whether it takes a path, its ``,KEY=VALUE`` options, and three
loaders named as ``"module:function"`` (imported on first use, so parsing a spec loads no
torch): ``pool(spec, role, input_spec) -> Pool`` (the images a role draws from),
``pool_key(spec, role) -> str`` (names those files without reading them) and optionally
``class_names() -> list[str]`` for data sets whose classes are fixed. A plugin adds a kind with
``DATA_KINDS.register(name, DataKind(...))`` from a module its ``snnconvert.methods`` entry
point names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snnconvert.registry import Registry, load_method_packages


@dataclass(frozen=True)
class DataKind:
    """One kind of data spec (see the module docstring)."""

    syntax: str  # as help and errors show it: "imagefolder:PATH"
    pool: str  # "module:function" of pool(spec, role, input_spec) -> Pool
    pool_key: str  # "module:function" of pool_key(spec, role) -> str
    takes_path: bool = True
    options: tuple[str, ...] = ()  # ,KEY=VALUE keys after the kind
    check_options: str | None = None  # "module:function" of check(text, {key: value})
    class_names: str | None = None  # "module:function" of () -> list[str], for fixed classes

    @staticmethod
    def call(target: str, *args: Any) -> Any:
        """Import ``module:function`` and call it."""
        module, _, name = target.partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function(*args)


DATA_KINDS: Registry[DataKind] = Registry("data kind", load=load_method_packages)
"""Every data kind by name (the built-in ones below, and any a plugin registers)."""

_SPLIT = "snnconvert.data.split"
DATA_KINDS.register("digits", DataKind("digits", f"{_SPLIT}:digits_pool", f"{_SPLIT}:digits_pool_key",
                                       takes_path=False, class_names=f"{_SPLIT}:digits_classes"))
DATA_KINDS.register("imagefolder", DataKind("imagefolder:PATH", f"{_SPLIT}:imagefolder_kind_pool",
                                            "snnconvert.data.folders:folder_pool_key"))
DATA_KINDS.register("cifar10", DataKind("cifar10:PATH", f"{_SPLIT}:cifar10_kind_pool",
                                        "snnconvert.data.cifar:cifar_pool_key",
                                        class_names="snnconvert.data.cifar:cifar10_classes"))
DATA_KINDS.register("imagenet", DataKind("imagenet:PATH", f"{_SPLIT}:imagenet_kind_pool",
                                         "snnconvert.data.folders:folder_pool_key"))
DATA_KINDS.register("events", DataKind("events[,S=N]:PATH", "snnconvert.data.events:events_pool",
                                       "snnconvert.data.folders:folder_pool_key", options=("S",),
                                       check_options="snnconvert.data.specs:check_event_options"))


def data_kinds() -> dict[str, DataKind]:
    """Every data kind by name (name order)."""
    return DATA_KINDS.items()


_BUILT_IN = ("digits", "imagefolder", "cifar10", "imagenet", "events")


def spec_syntax() -> str:
    """``digits, imagefolder:PATH, ...``: how each kind is written (built-in kinds first)."""
    kinds = data_kinds()
    names = [n for n in _BUILT_IN if n in kinds] + [n for n in kinds if n not in _BUILT_IN]
    syntaxes = [kinds[n].syntax for n in names]
    return ", ".join(syntaxes[:-1]) + f" or {syntaxes[-1]}" if len(syntaxes) > 1 else "".join(syntaxes)


__all__ = ["DATA_KINDS", "DataKind", "data_kinds", "spec_syntax"]
