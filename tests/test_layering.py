"""Import layering: no core module names a method package; no import cycle; the lower packages never
reach up into codings, pipeline, evaluate, cli or the
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


# --------------------------------------------------------------------------- methods and cycles

METHODS = PACKAGE_ROOT / "methods"


def test_core_never_imports_a_method_package() -> None:
    """A method is one folder under snnconvert/methods: no module outside it names one (they reach
    core code through the registries and the neuron protocol)."""
    assert len([p for p in METHODS.iterdir() if (p / "__init__.py").is_file()]) >= 6
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if METHODS in path.parents:
            continue
        for line, module, text in imported_modules(path):
            if module.startswith("snnconvert.methods."):
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {text}")
    assert not found, "core modules import method packages:\n" + "\n".join(sorted(set(found)))


def test_neurons_package_holds_only_the_protocol() -> None:
    """The neuron modules left in snnconvert/neurons are the protocol and its helpers only."""
    left = sorted(p.stem for p in (PACKAGE_ROOT / "neurons").glob("*.py"))
    assert left == ["__init__", "base", "surrogates", "trainable"]


def _import_graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]], dict[str, Path]]:
    """Every snnconvert module's top-level imports and its function-level ones ``(line, module)``,
    of snnconvert modules only (``if TYPE_CHECKING:`` blocks are annotations, not imports)."""
    files = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    top: dict[str, set[str]] = {}
    nested: dict[str, list[tuple[int, str]]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top[name], nested[name] = set(), []

        def visit(node: ast.AST, in_function: bool, name: str = name, package: str = package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.Import | ast.ImportFrom):
                    if isinstance(child, ast.Import):
                        targets = [a.name for a in child.names]
                    else:
                        base = child.module or ""
                        if child.level:
                            parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                            base = ".".join(parts + ([child.module] if child.module else []))
                        targets = [f"{base}.{a.name}" for a in child.names]
                    for target in targets:
                        found = resolve(target) if target.startswith("snnconvert") else None
                        if found and found != name:
                            if in_function:
                                nested[name].append((child.lineno, found))
                            else:
                                top[name].add(found)
                visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

        visit(tree, False)
    return top, nested, files


def _reachable(top: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += sorted(top.get(module, ()))
    return seen


def test_no_import_cycles_and_no_function_level_import_hides_one() -> None:
    """No module reaches itself through top-level imports, and no import inside a function only
    hides a cycle (moving it to the top would close one): 0 of each. Function-level imports that
    stay are there to keep torch out of the CLI's start or to load optional extras."""
    top, nested, files = _import_graph()
    assert len(files) > 100 and sum(map(len, nested.values())) > 50  # the scan sees the real tree
    cycles = sorted(f"{a} -> {b}" for a, deps in top.items() for b in deps if a in _reachable(top, b))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
    hiding = sorted(f"{files[a].relative_to(PACKAGE_ROOT.parent)}:{line}: {a} -> {b}"
                    for a, found in nested.items() for line, b in found if a in _reachable(top, b))
    assert not hiding, "function-level imports that hide a cycle:\n" + "\n".join(hiding)


def test_pipeline_orchestrates_and_the_stages_are_peers() -> None:
    """pipeline imports evaluate, finetune and recipe at the top; none of them imports pipeline."""
    top, _, _ = _import_graph()
    assert {"snnconvert.evaluate", "snnconvert.finetune", "snnconvert.recipe"} <= top["snnconvert.pipeline"]
    for stage in ("snnconvert.evaluate", "snnconvert.finetune", "snnconvert.recipe", "snnconvert.stages",
                  "snnconvert.core"):
        assert "snnconvert.pipeline" not in _reachable(top, stage), stage


def test_cycle_scan_finds_a_planted_cycle() -> None:
    """The reachability the cycle test relies on: a -> b -> a is found, a -> b alone is not."""
    assert "a" in _reachable({"a": {"b"}, "b": {"a"}}, "b")
    assert "a" not in _reachable({"a": {"b"}, "b": set()}, "b")
