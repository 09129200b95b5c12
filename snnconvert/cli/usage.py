"""``to-snn`` usage errors without torch: the coding table read from source.

The coding modules import torch, which takes seconds to load; ``to-snn`` needs them for its
generated flags. Before that, :func:`precheck_to_snn` reads each module of the
:mod:`snnconvert.codings` package with :mod:`ast` (never importing it): the coding's ``name``,
its ``config`` dataclass and its ``parsers``. It then runs those definitions alone (and what
they use), with only torch-free imports: the standard library, :mod:`snnconvert.errors`,
:mod:`snnconvert.limits`, and names from other snnconvert modules read from their source in
turn. It builds the config from the command line and calls the config's own ``validate()``:
the same code, so the same one-line errors, in a fraction of a second.

Whatever this cannot decide (a coding from a plugin, a definition that needs torch, an argument
it does not understand) is left to the normal path, which loads torch and reports any problem
the same way. A usage error is never invented here: only the real validation code raises.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from snnconvert.errors import SnnConvertError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
CODINGS_DIR = PACKAGE_DIR / "codings"
METHODS_DIR = PACKAGE_DIR / "methods"
TORCH_FREE = frozenset({"snnconvert.errors", "snnconvert.limits"})
"""snnconvert modules a definition may import here (they never load torch)."""
VALUE_OPTIONS = frozenset({"--input", "--coding", "--set", "--device", "--out"})
FLAG_OPTIONS = frozenset({"--json", "--help"})
"""``to-snn``'s own options (the CLI passes the ones its signature declares)."""
SOURCE_PREFIX = "snnconvert._from_source_."
"""Names under which the definitions are held in ``sys.modules`` while the pre-check runs."""


class UsageProblem(SnnConvertError):
    """An option ``to-snn`` does not have (exit status 2, like other usage errors)."""

    exit_code = 2


class _Undecided(Exception):
    """The pre-check cannot tell: the normal path decides."""


class _TorchName:
    """Stands for a torch attribute (``torch.float32``) in a definition read from source: it can be
    named, compared and used as a dict key; anything else (a call, arithmetic, truth) is
    :class:`_Undecided`, so code that needs torch itself is left to the normal path."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> _TorchName:
        if name.startswith("__"):
            raise AttributeError(name)
        return _TorchName(f"{self._path}.{name}")

    def __repr__(self) -> str:
        return self._path

    def _undecided(self, *args: Any, **kwargs: Any) -> Any:
        raise _Undecided(self._path)

    __call__ = __bool__ = __iter__ = __len__ = __getitem__ = __add__ = __mul__ = __lt__ = __gt__ = _undecided
    __le__ = __ge__ = __index__ = __int__ = __float__ = __contains__ = __mro_entries__ = _undecided


@dataclasses.dataclass
class StaticCoding:
    """A coding as its source declares it; once :meth:`build` ran, what :func:`parse_option`
    reads of a coding (``name``, ``config``, ``parsers``, ``options()``)."""

    name: str
    path: Path
    config_name: str | None
    parser_names: dict[str, str | None]  # field -> function name (None: not a plain name)
    flags: dict[str, bool]  # the config's command-line fields -> whether it is an on/off flag
    config: Any = None
    parsers: dict[str, Callable[[str], Any] | None] = dataclasses.field(default_factory=dict)

    def options(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.config) if f.metadata.get("cli", True)]

    def build(self, trees: dict[Path, ast.Module]) -> bool:
        """Run the config class and parsers (and what they use) from source; False if impossible."""
        if self.config_name is None or None in self.parser_names.values():
            return False
        wanted = {self.config_name, *(n for n in self.parser_names.values() if n)}
        namespace = _definitions(self.path, wanted, trees)
        self.config = namespace.get(self.config_name)
        self.parsers = {k: namespace.get(v) if v else None for k, v in self.parser_names.items()}
        return dataclasses.is_dataclass(self.config) and None not in self.parsers.values()


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    return module in TORCH_FREE or (top in sys.stdlib_module_names and top != "__future__")


def _tree(path: Path, trees: dict[Path, ast.Module]) -> ast.Module:
    if path not in trees:
        trees[path] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return trees[path]


def _source_of(module: str) -> Path | None:
    """The source file of ``snnconvert.<module>`` (never imported)."""
    base = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _definitions(path: Path, wanted: set[str], trees: dict[Path, ast.Module], depth: int = 0) -> dict[str, Any]:
    """The top-level definitions ``wanted`` of the module at ``path``, and those they use, executed
    from source in order: allowed imports, imports from other snnconvert modules (the names
    resolved from their source in turn), assignments without calls, functions and classes. A
    statement that fails (it needs something unavailable here) is skipped: using its name fails
    later, and the caller leaves the decision to the normal path."""
    tree = _tree(path, trees)
    defined: dict[str, ast.stmt] = {}
    for node in tree.body:
        for name in _bound_names(node):
            defined[name] = node
    chosen: set[int] = set()
    stack = list(wanted)
    while stack:
        node = defined.get(stack.pop())
        if node is None or id(node) in chosen:
            continue
        chosen.add(id(node))
        if not isinstance(node, ast.Import | ast.ImportFrom):
            stack.extend(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    holder = types.ModuleType(f"{SOURCE_PREFIX}{depth}.{path.stem}")  # dataclasses look their module up
    sys.modules[holder.__name__] = holder
    namespace: dict[str, Any] = holder.__dict__
    flags = __future__.annotations.compiler_flag
    for node in tree.body:
        if id(node) not in chosen:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("snnconvert.") \
                and node.module not in TORCH_FREE:
            source = _source_of(node.module or "")
            if source is not None and source != path and depth < 3:
                found = _definitions(source, {a.name for a in node.names}, trees, depth + 1)
                namespace.update({a.asname or a.name: found[a.name] for a in node.names if a.name in found})
            continue
        if isinstance(node, ast.ImportFrom) and (node.level or node.module == "__future__"):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if all(m == "torch" or m.startswith("torch.") for m in modules):
                for alias in node.names:  # names only: using torch for real is left to the normal path
                    bound = (alias.asname or alias.name).split(".")[0]
                    where = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                    namespace[bound] = _TorchName(where.split(".")[0] if alias.asname is None
                                                  and isinstance(node, ast.Import) else where)
                continue
            if not all(_allowed(m) for m in modules):
                continue
        elif isinstance(node, ast.Assign | ast.AnnAssign) and any(isinstance(n, ast.Call) for n in ast.walk(node)):
            continue
        try:
            code = compile(ast.Module([node], type_ignores=[]), str(path), "exec", flags=flags, dont_inherit=True)
            exec(code, namespace)  # noqa: S102 - this package's own source, torch-free statements only
        except Exception:  # noqa: BLE001, S112 - needs torch or a skipped name: left to the normal path
            continue
    return namespace


def _calls(tree: ast.Module, function: str) -> list[ast.Call]:
    """Calls of ``function`` (a plain or dotted name) in the module's top-level statements."""
    found = []
    for statement in tree.body:
        if not isinstance(statement, ast.Assign | ast.AnnAssign | ast.Expr):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name == function:
                    found.append(node)
    return found


def _declaration(tree: ast.Module) -> ast.Call | None:
    """The top-level ``Coding(...)`` call of a coding module (inside ``register_coding``); a
    module that registers a coding some other way cannot be read here (:class:`_Undecided`)."""
    declared = [c for c in _calls(tree, "Coding") if any(k.arg == "name" for k in c.keywords)]
    registers = _calls(tree, "register_coding")
    if len(declared) > 1 or len(registers) > len(declared):
        raise _Undecided
    return declared[0] if declared else None


def _static_flags(tree: ast.Module, config_name: str) -> dict[str, bool]:
    """The command-line fields of class ``config_name`` in ``tree``, each with whether it is typed ``bool``."""
    flags: dict[str, bool] = {}
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == config_name):
            continue
        for item in node.body:
            if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                continue
            annotation = ast.unparse(item.annotation)
            if "ClassVar" in annotation:
                continue
            value = item.value
            if isinstance(value, ast.Call) and any(k.arg == "cli" and isinstance(k.value, ast.Constant)
                                                   and k.value.value is False for k in value.keywords):
                continue
            flags[item.target.id] = annotation == "bool"
    return flags


def static_codings(trees: dict[Path, ast.Module] | None = None) -> dict[str, StaticCoding]:
    """Every coding the package's source declares, by name (nothing is imported or run)."""
    trees = {} if trees is None else trees
    table: dict[str, StaticCoding] = {}
    for path in sorted(METHODS_DIR.glob("*/coding.py")):
        if path.stem.startswith("_") or "Coding(" not in path.read_text(encoding="utf-8"):
            continue  # no declaration (read without parsing: most of the time goes to parsing)
        tree = _tree(path, trees)
        call = _declaration(tree)
        if call is None:
            continue
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        name, config = keywords.get("name"), keywords.get("config")
        if not isinstance(name, ast.Constant) or not isinstance(name.value, str):
            raise _Undecided  # a computed name: only the loaded table knows it
        config_name = config.id if isinstance(config, ast.Name) else None
        parsers: dict[str, str | None] = {}
        parser_node = keywords.get("parsers")
        if isinstance(parser_node, ast.Dict):
            for key, value in zip(parser_node.keys, parser_node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    parsers[key.value] = value.id if isinstance(value, ast.Name) else None
        elif parser_node is not None:
            config_name = None  # parsers built some other way: this coding is left to the normal path
        flags = _static_flags(tree, config_name) if config_name else {}
        table[name.value] = StaticCoding(name.value, path, config_name, parsers, flags)
    if not table:
        raise _Undecided  # no sources (a build without .py files): only the loaded table knows
    return table


def _parse_arguments(args: list[str], bool_flags: dict[str, tuple[str, bool]], value_flags: dict[str, str],
                     value_options: frozenset[str], flag_options: frozenset[str],
                     ) -> tuple[str, dict[str, Any], list[str]]:
    coding, given, sets = "sws", {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise _Undecided
        flag, has_value, inline = arg.partition("=")
        if flag in value_options or flag in value_flags:
            if has_value:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise _Undecided  # click says the value is missing
            if flag == "--coding":
                coding = value
            elif flag == "--set":
                sets.append(value)
            elif flag in value_flags:
                given[value_flags[flag]] = value
        elif flag in bool_flags and not has_value:
            field_name, value = bool_flags[flag]
            given[field_name] = value
        elif flag in flag_options and not has_value:
            pass
        else:
            raise UsageProblem(f"to-snn has no option {flag[:60]}; see `snnconvert to-snn --help` (each coding's "
                               "options are listed there)")
        i += 1
    return coding, given, sets


def _check(args: list[str], value_options: frozenset[str], flag_options: frozenset[str]) -> None:
    if any(a in ("--help", "-h") for a in args) or not {"--coding", "--set"} <= value_options:
        raise _Undecided
    trees: dict[Path, ast.Module] = {}
    table = static_codings(trees)
    registry = _definitions(CODINGS_DIR / "registry.py", {"parse_option", "flag_name"}, trees)
    parse_option, flag_name = registry.get("parse_option"), registry.get("flag_name")
    if parse_option is None or flag_name is None:
        raise _Undecided
    bool_flags: dict[str, tuple[str, bool]] = {}
    value_flags: dict[str, str] = {}
    for coding in table.values():
        if coding.config_name is None:
            raise _Undecided  # its flags are unknown here
        for field_name, is_bool in coding.flags.items():
            flag = f"--{flag_name(field_name)}"
            if is_bool:
                bool_flags[flag] = (field_name, True)
                bool_flags[f"--no-{flag_name(field_name)}"] = (field_name, False)
            else:
                value_flags[flag] = field_name
    try:
        coding_name, given, sets = _parse_arguments(args, bool_flags, value_flags, value_options, flag_options)
    except UsageProblem:
        if _has_plugins():
            raise _Undecided from None  # a plugin coding may have that flag
        raise
    if coding_name not in table:
        if _has_plugins():
            raise _Undecided
        raise SnnConvertError(f"unknown coding {coding_name!r}: choose one of {', '.join(sorted(table))}")
    coding = table[coding_name]
    if not coding.build(trees):
        raise _Undecided
    options = _options(coding, given, sets, parse_option, flag_name)
    config = coding.config(**options)
    config.validate()


def _options(coding: StaticCoding, given: dict[str, Any], sets: list[str], parse_option: Callable[..., Any],
             flag_name: Callable[[str], str]) -> dict[str, Any]:
    """What :func:`snnconvert.cli.coding_options.coding_options` makes of the flags and ``--set`` items."""
    from snnconvert.cli.coding_options import merge_coding_options

    return merge_coding_options(coding, given, sets, parse_option, flag_name)


def _has_plugins() -> bool:
    from importlib.metadata import entry_points

    return bool(entry_points(group="snnconvert.codings"))


def precheck_to_snn(args: list[str], *, value_options: Iterable[str] = VALUE_OPTIONS,
                    flag_options: Iterable[str] = FLAG_OPTIONS) -> None:
    """Raise the one-line error ``to-snn`` would give for a usage problem in ``args`` (the words
    after ``to-snn``: an unknown coding or option, a value of the wrong type or out of range),
    without importing torch; ``value_options`` and ``flag_options`` are the command's own options
    besides the coding flags. Returns quietly when the arguments pass or when it cannot tell."""
    try:
        _check(args, frozenset(value_options), frozenset(flag_options))
    except SnnConvertError:
        raise
    except Exception:  # noqa: BLE001 - undecided (or a bug here): the normal path checks everything
        return
    finally:
        for name in [n for n in sys.modules if n.startswith(SOURCE_PREFIX)]:
            del sys.modules[name]
