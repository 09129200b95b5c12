"""One generic registry for everything snnconvert extends by declaration.

A :class:`Registry` maps names to items (codings, training methods, analyses, serializable
module classes, ...). Items register themselves when their module is imported; the registry
fills itself on first read by importing every method package under :mod:`snnconvert.methods`
and every module advertised in the ``snnconvert.methods`` entry-point group (what an installed
plugin declares in its ``pyproject.toml``). Reading never runs anything else.

Core modules create registries and read them; they never import a method package, so adding a
method is one folder (see ``docs/extend.md``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from snnconvert.errors import SnnConvertError

T = TypeVar("T")

METHODS_PACKAGE = "snnconvert.methods"
"""The package whose subpackages are the built-in methods (each registers what it offers)."""

ENTRY_POINT_GROUP = "snnconvert.methods"
"""Entry-point group through which installed packages add methods."""


class _Plugins:
    """Loads the built-in method packages and the entry points once per process (a cache of
    imports, which Python keeps process-wide anyway; nothing else is global)."""

    def __init__(self) -> None:
        self.loading = False
        self.loaded = False

    def load(self) -> None:
        if self.loaded or self.loading:
            return
        self.loading = True
        try:
            package = importlib.import_module(METHODS_PACKAGE)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                importlib.import_module(f"{METHODS_PACKAGE}.{info.name}")
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                entry.load()
            self.loaded = True
        finally:
            self.loading = False


_PLUGINS = _Plugins()


def load_methods() -> None:
    """Import every built-in method package and every entry-point plugin (idempotent)."""
    _PLUGINS.load()


class Registry(Generic[T]):
    """Items of one kind by name. ``kind`` names the kind in messages ("coding", "analysis").

    Registering the same item twice is a no-op; another item under a taken name is an error
    (``same(a, b)`` decides what counts as the same declaration; default: identity).
    """

    def __init__(self, kind: str, *, same: Callable[[T, T], bool] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._same = same or (lambda a, b: a is b)

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; returns it (so it can be used as ``X = reg.register(...)``)."""
        known = self._items.get(name)
        if known is not None and not self._same(known, item):
            where = getattr(known, "__module__", None) or type(known).__module__
            raise ValueError(f"{self.kind} name {name!r} is taken by {where}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register toys clean up with this)."""
        self._items.pop(name, None)

    def items(self) -> dict[str, T]:
        """Every item by name, in registration order (after loading the method packages)."""
        load_methods()
        return dict(self._items)

    def get(self, name: str) -> T:
        """The item ``name``, or a one-line error listing the choices."""
        table = self.items()
        if name not in table:
            raise SnnConvertError(f"unknown {self.kind} {name!r}: choose one of {', '.join(sorted(table)) or 'none'}")
        return table[name]

    def __contains__(self, name: object) -> bool:
        return name in self.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self.items())


MODULE_CLASSES: Registry[type] = Registry("serializable module class")
"""Module classes (outside torch.nn) an artifact may store, by the class name it stores."""


def serializable(cls: type[T]) -> type[T]:
    """Class decorator: artifacts may store modules of ``cls`` (declared with ``serial_params``
    or ``serial_config()``/``from_serial()``, see :mod:`snnconvert.serialize`)."""
    MODULE_CLASSES.register(cls.__name__, cls)
    return cls
