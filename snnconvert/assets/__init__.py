"""Files shipped inside the package (bundled weights, the demo recipe), read via ``importlib.resources``.

They live next to this module so that an installed wheel carries them; nothing here looks at the
source checkout.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

DEMO_RECIPE = "demo.yaml"
LENET5_DIGITS = "lenet5-digits.pt"

_extracted = ExitStack()  # temporary copies made when the package is not on the file system (zip)
atexit.register(_extracted.close)


def asset(name: str) -> Traversable:
    """The bundled resource ``name`` (it may not exist)."""
    return files(__name__) / name


def asset_names() -> list[str]:
    """Names of the bundled files (no Python sources)."""
    return sorted(
        entry.name for entry in files(__name__).iterdir()
        if entry.is_file() and not entry.name.endswith((".py", ".pyc"))
    )


def read_bytes(name: str) -> bytes:
    """The content of the bundled file ``name``; ``FileNotFoundError`` if it is not bundled."""
    return asset(name).read_bytes()


@cache
def asset_path(name: str) -> Path:
    """A real file-system path of the bundled file ``name`` (may not exist).

    For a normal install this is the file inside the package; for a zipped package a temporary
    copy that lives until the interpreter exits.
    """
    resource = asset(name)
    if isinstance(resource, Path):
        return resource
    if not resource.is_file():
        return Path(str(resource))
    return _extracted.enter_context(as_file(resource))


def assets_dir() -> Path:
    """The directory of the bundled files (inside the archive if the package is zipped)."""
    root = files(__name__)
    return root if isinstance(root, Path) else Path(str(root))


def demo_recipe_path() -> Path:
    """File-system path of the demo recipe (``snnconvert demo``)."""
    return asset_path(DEMO_RECIPE)


def demo_recipe_text() -> str:
    """The demo recipe's YAML text."""
    return read_bytes(DEMO_RECIPE).decode("utf-8")
