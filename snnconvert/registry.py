"""One generic registry for everything snnconvert extends by declaration.

A :class:`Registry` maps names to items (codings and their options, training methods, analyses,
serializable module classes, ...). Items register themselves when their module is imported; a
registry fills itself on first read by importing every method package under
:mod:`snnconvert.methods` (each package's ``__init__`` is torch-free and lists the modules that
register the rest in ``REGISTERS``) and every module advertised in the ``snnconvert.methods``
entry-point group (what an installed plugin declares in its ``pyproject.toml``). Reading never
runs anything else.

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
    """Loads the method packages and the entry points once per process (a cache of imports, which
    Python keeps process-wide anyway; nothing else is global). ``packages``: the built-in packages
    alone (torch-free: their ``config`` modules) and the entry-point plugins; ``everything``: also
    each built-in package's ``REGISTERS`` modules (its coding, neurons, training hooks and
    reports; these import torch)."""

    def __init__(self) -> None:
        self.loading: set[str] = set()
        self.loaded: set[str] = set()

    def load(self, what: str) -> None:
        if what in self.loaded or what in self.loading:
            return
        self.loading.add(what)
        try:
            package = importlib.import_module(METHODS_PACKAGE)
            names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
            modules = [importlib.import_module(f"{METHODS_PACKAGE}.{name}") for name in names]
            if what == "packages":
                for entry in entry_points(group=ENTRY_POINT_GROUP):
                    modules.append(entry.load())
            else:
                for module in modules:
                    for part in getattr(module, "REGISTERS", ()):
                        importlib.import_module(f"{module.__name__}.{part}")
            self.loaded.add(what)
        finally:
            self.loading.discard(what)


_PLUGINS = _Plugins()


def load_method_packages() -> None:
    """Import every built-in method package without its torch modules (what registers the codings'
    options: each package's ``config`` module), and every entry-point plugin. Idempotent."""
    _PLUGINS.load("packages")


def load_methods() -> None:
    """Import every method package with the modules it lists in ``REGISTERS``, and every
    entry-point plugin (idempotent)."""
    _PLUGINS.load("packages")
    _PLUGINS.load("everything")


class Registry(Generic[T]):
    """Items of one kind by name. ``kind`` names the kind in messages ("coding", "analysis").

    Registering the same item twice is a no-op; another item under a taken name is an error
    (``same(a, b)`` decides what counts as the same declaration; default: identity).
    """

    def __init__(self, kind: str, *, same: Callable[[T, T], bool] | None = None,
                 load: Callable[[], None] = load_methods) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._same = same or (lambda a, b: a is b)
        self._load = load

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
        """Every item by name, in name order (after loading the method packages)."""
        self._load()
        return dict(sorted(self._items.items()))

    def get(self, name: str) -> T:
        """The item ``name``, or a one-line error listing the choices."""
        self._load()
        item = self._items.get(name)
        if item is None:
            raise SnnConvertError(f"unknown {self.kind} {name!r}: choose one of {', '.join(self.items()) or 'none'}")
        return item

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

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
