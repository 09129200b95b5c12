"""Import layering: the lower packages never reach up into codings, pipeline, evaluate, cli or the
package root, and ``data.specs`` / ``data.events`` import each other in one direction only.

Every import counts, including those inside functions and ``importlib.import_module("...")``
calls with a literal name; failures list ``file:line: import``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "snnconvert"
LOWER_PACKAGES = ("graph", "neurons", "simulate", "quantize", "data", "ingest")
UPPER_MODULES = ("snnconvert.codings", "snnconvert.pipeline", "snnconvert.evaluate", "snnconvert.cli")


def module_name(path: Path) -> str:
    """Dotted name of the module in ``path`` (``snnconvert/data/specs.py`` -> ``snnconvert.data.specs``)."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> list[tuple[int, str, str]]:
    """``(line, module, source text)`` of every import in ``path`` (module ``name``, by default
    derived from the path), relative imports resolved.

    ``from X import a`` yields ``X`` and ``X.a`` (``a`` may be a submodule).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else (name or module_name(path)).rpartition(".")[0]
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ast.unparse(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module, ast.unparse(node)))
            found += [(node.lineno, f"{module}.{alias.name}", ast.unparse(node)) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value, ast.unparse(node)))
    return found


def lower_modules() -> list[Path]:
    """Every module of the lower packages."""
    files = [path for package in LOWER_PACKAGES for path in sorted((PACKAGE_ROOT / package).rglob("*.py"))]
    assert len(files) >= 2 * len(LOWER_PACKAGES), f"too few modules found under {PACKAGE_ROOT}"
    return files


def offences(forbidden: tuple[str, ...], *, root: bool) -> list[str]:
    """``file:line: import`` of each import in the lower packages that names a module in ``forbidden``
    (or a submodule of one), or the package root itself when ``root``."""
    found = []
    for path in lower_modules():
        for line, module, text in imported_modules(path):
            bad = any(module == f or module.startswith(f + ".") for f in forbidden) or (root and module == "snnconvert")
            if bad:
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {text}")
    return sorted(set(found))


def test_import_scanner_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The scanner itself: nested, relative and import_module imports are all reported."""
    source = (
        "import os\n"
        "def f():\n"
        "    from snnconvert.codings import sws\n"
        "from .. import pipeline\n"
        "from . import modules\n"
        "importlib.import_module('snnconvert.cli.app')\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    found = imported_modules(probe, "snnconvert.graph.probe")
    modules = {module for _, module, _ in found}
    assert {"os", "snnconvert.codings", "snnconvert", "snnconvert.pipeline", "snnconvert.graph.modules",
            "snnconvert.cli.app"} <= modules
    assert (3, "snnconvert.codings", "from snnconvert.codings import sws") in found
    # on the real tree the scan reports real imports, with file and line
    assert any(o.startswith("snnconvert/data/events.py:") for o in offences(("snnconvert.data.specs",), root=False))


def test_lower_packages_do_not_import_upper_layers() -> None:
    """graph/neurons/simulate/quantize/data/ingest import neither codings, pipeline, evaluate, cli
    nor ``snnconvert`` itself."""
    found = offences(UPPER_MODULES, root=True)
    assert not found, "lower packages import upper layers:\n" + "\n".join(found)


def test_lower_packages_do_not_import_serialize() -> None:
    """Serialization knows the lower packages, not the other way round."""
    found = offences(("snnconvert.serialize",), root=False)
    assert not found, "lower packages import snnconvert.serialize:\n" + "\n".join(found)


def internal_imports(path: Path) -> set[str]:
    """The ``snnconvert`` modules ``path`` imports (existing modules only)."""
    result = set()
    for _, module, _ in imported_modules(path):
        parts = module.split(".")
        candidate = PACKAGE_ROOT.parent.joinpath(*parts)
        exists = candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()
        if parts[0] == "snnconvert" and exists:
            result.add(module)
    return result


def test_data_specs_and_events_have_no_import_cycle() -> None:
    """events imports specs; specs must not import events, directly or through another module."""
    data = PACKAGE_ROOT / "data"
    assert "snnconvert.data.specs" in internal_imports(data / "events.py")
    seen: set[str] = set()
    todo = ["snnconvert.data.specs"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        path = PACKAGE_ROOT.parent.joinpath(*parts).with_suffix(".py")
        if not path.is_file():
            path = PACKAGE_ROOT.parent.joinpath(*parts, "__init__.py")
        todo += sorted(internal_imports(path) - seen)
    assert "snnconvert.data.events" not in seen, "snnconvert.data.specs imports snnconvert.data.events"
