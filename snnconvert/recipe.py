"""YAML recipes: the pipeline's typed config written down, validated key by key.

A recipe is the same configuration the CLI options build (see ``recipes/*.yaml``)::

    model: lenet5            # name (bundled or torchvision)
    weights: null            # default, "random", an enum name or a checkpoint file
    data: digits             # calibration data (evaluation uses its held-out part by default)
    quantize: {bits: 8, method: percentile, percentile: 99.99}
    convert: {coding: sws, Tc: 8, Ts: 2}
    finetune: {data: digits, epochs: 2}   # optional: BPTT fine-tuning of the SNN
    evaluate: {limit: 500, reports: [all]}

Unknown keys and wrong types are errors that name the key and its line.

Recipes are untrusted input and bounded before anything is built from them: a regular file of
at most ``limits.MAX_RECIPE_BYTES``, UTF-8, nesting at most ``limits.MAX_NESTING`` deep, at most
``limits.MAX_YAML_NODES`` nodes and ``limits.MAX_YAML_BYTES`` characters of text with every alias
counted at each use (alias bombs, aliases of long strings), no duplicate
keys and only the plain YAML tags (``!!python/...`` and other tags are refused, never run).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snnconvert.codings import build_config, codings, get_coding
from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.evaluate import EvaluateConfig
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.limits import (
    MAX_NESTING,
    MAX_RECIPE_BYTES,
    MAX_YAML_BYTES,
    MAX_YAML_NODES,
    require_regular_file,
    shorten,
)
from snnconvert.options import renamed_fields
from snnconvert.quantize import QuantizeConfig


@dataclass
class ConvertSection:
    coding: str = "sws"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneSection:
    """``finetune:`` of a recipe: the training data and the :class:`FinetuneConfig` fields."""

    data: str
    val_data: str | None = None
    config: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class Recipe:
    """A whole pipeline run."""

    model: str
    weights: str | None = None
    num_classes: int | None = None
    data: str = "digits"
    calib_split: float = 0.2
    out: str | None = None
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    convert: ConvertSection | None = field(default_factory=ConvertSection)
    finetune: FinetuneSection | None = None
    evaluate: EvaluateConfig | None = field(default_factory=EvaluateConfig)

    def validate(self) -> None:
        """Check every section (the API boundary of :func:`snnconvert.pipeline.run`)."""
        if not isinstance(self.model, str) or not self.model:
            raise SnnConvertError("a recipe needs a model name")
        if not 0 < self.calib_split < 1:
            raise SnnConvertError(f"calib_split {self.calib_split} is not possible: give a share in (0, 1)")
        self.quantize.validate()
        if self.convert is not None:
            build_config(get_coding(self.convert.coding), **self.convert.options)
        if self.finetune is not None:
            if self.convert is None:
                raise SnnConvertError("a recipe's finetune section needs a convert section (an SNN to train)")
            self.finetune.config.validate()
        if self.evaluate is not None:
            self.evaluate.validate()


_SECTIONS = ("quantize", "convert", "finetune", "evaluate")
_TOP_LEVEL = {"model", "weights", "num_classes", "data", "calib_split", "out", *_SECTIONS}


def _valid_keys(key: str, names: list[str], shown: int = 12) -> str:
    """The closest valid keys first (a typo's fix), at most ``shown`` of them: one short line."""
    import difflib

    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    rest = [n for n in names if n not in close]
    listed = close + rest[: max(shown - len(close), 0)]
    more = f", and {len(names) - len(listed)} more" if len(names) > len(listed) else ""
    lead = f"did you mean '{close[0]}'? " if close else ""
    return f"{lead}valid: {', '.join(listed)}{more}"


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _located(path: Path, node: yaml.Node, section: str, exc: SnnConvertError) -> SnnConvertError:
    """A section's validation error with its line: a config error names its key (``finetune.lr``,
    ``finetune.methods.dtss.t_max``) at the line of the key's value when the recipe sets it."""
    if not isinstance(exc, ConfigError):
        return SnnConvertError(f"{_where(path, node)}: {exc}")
    from snnconvert.options import training_options

    method = next((name for name, m in training_options().items() if m.config is exc.config), None)
    keys = ["methods", method, exc.field] if method else [exc.field]
    where = node
    for key in keys:
        child = next((v for k, v in where.value if k.value == key), None) \
            if isinstance(where, yaml.MappingNode) else None
        if child is None:
            break
        where = child
    return SnnConvertError(f"{_where(path, where)}: {exc.render('.'.join([section, *keys]))}")


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _section(path: Path, node: yaml.Node, cls: type, name: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check one mapping against dataclass ``cls``; returns the validated keyword arguments."""
    if not isinstance(node, yaml.MappingNode):
        raise SnnConvertError(f"{_where(path, node)}: '{name}' must be a mapping of options")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    values: dict[str, Any] = {}
    renamed = renamed_fields(cls)
    for key_node, value_node in node.value:
        key = renamed.get(key_node.value, key_node.value)  # an older name of a field reads as the field
        if key not in names:
            raise SnnConvertError(f"{_where(path, key_node)}: unknown key '{name}.{shorten(key)}' "
                                  f"({_valid_keys(str(key), names)})")
        value = _value(path, value_node)
        if not _matches(value, hints[key]):
            raise SnnConvertError(
                f"{_where(path, value_node)}: '{name}.{key}' must be {_type_name(hints[key])}, "
                f"got {shorten(repr(value))}"
            )
        values[key] = value
    return values


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                      "timestamp", "binary")}


def _value(path: Path, node: yaml.Node) -> Any:
    """The Python value of a checked node (plain tags only, size bounded by :func:`_check_tree`)."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        raise SnnConvertError(f"{_where(path, node)}: value cannot be read ({shorten(str(exc).splitlines()[0])})") \
            from None


def _read_text(path: Path) -> str:
    require_regular_file(path, "recipe")
    try:
        with open(path, "rb") as handle:  # the size of what was opened, and never more than the cap read
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_RECIPE_BYTES:
                raise SnnConvertError(f"recipe {path} is {size} bytes; recipes are at most {MAX_RECIPE_BYTES} bytes")
            data = handle.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise SnnConvertError(f"recipe {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise SnnConvertError(f"recipe {path} is more than {MAX_RECIPE_BYTES} bytes; recipes are at most "
                              f"{MAX_RECIPE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SnnConvertError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from None


def _check_depth(path: Path, text: str) -> None:
    """Nesting depth from the token stream (the scanner does not recurse; the composer does)."""
    depth = 0
    starts = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
              yaml.BlockMappingStartToken)
    ends = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, starts):
            depth += 1
            if depth > MAX_NESTING:
                raise SnnConvertError(f"{path}:{token.start_mark.line + 1}: nested deeper than {MAX_NESTING} "
                                      "levels; a recipe is a few flat sections")
        elif isinstance(token, ends):
            depth -= 1


def _check_tree(path: Path, root: yaml.Node) -> None:
    """Tags, duplicate keys and the expanded size (aliases counted at every use, cycles refused)."""
    sizes: dict[int, int] = {}
    chars: dict[int, int] = {}  # characters of scalar text, expanded
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            active.discard(id(node))
            children = _children(node)
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            chars[id(node)] = len(node.value) if isinstance(node, yaml.ScalarNode) else \
                sum(chars[id(c)] for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise SnnConvertError(f"{_where(path, node)}: expands to more than {MAX_YAML_NODES} values "
                                      "(aliases repeated); a recipe is a few flat sections")
            if chars[id(node)] > MAX_YAML_BYTES:
                raise SnnConvertError(f"{_where(path, node)}: expands to more than {MAX_YAML_BYTES} characters "
                                      "(aliases of long values repeated); a recipe is a few flat sections")
            continue
        if id(node) in sizes:
            continue
        if id(node) in active:
            raise SnnConvertError(f"{_where(path, node)}: an alias refers to itself; remove the recursion")
        if node.tag not in _PLAIN_TAGS:
            raise SnnConvertError(f"{_where(path, node)}: the tag {shorten(node.tag, 60)} is not allowed in a "
                                  "recipe (only plain values, lists and mappings; nothing is ever run)")
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SnnConvertError(f"{_where(path, key_node)}: keys must be plain names")
                if key_node.value in seen:
                    raise SnnConvertError(f"{_where(path, key_node)}: duplicate key '{shorten(key_node.value)}'; "
                                          "give each key once")
                seen.add(key_node.value)
        active.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe file (bounded first: see the module docstring)."""
    path = Path(path)
    text = _read_text(path)
    try:
        _check_depth(path, text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = shorten(str(getattr(exc, "problem", None) or exc).splitlines()[0])
        raise SnnConvertError(f"{path}{line}: not valid YAML ({problem})") from None
    except RecursionError:
        raise SnnConvertError(f"{path}: nested too deeply to read; a recipe is a few flat sections") from None
    except (OverflowError, ValueError, UnicodeError) as exc:  # the YAML reader's own failures on odd bytes
        raise SnnConvertError(f"{path}: not valid YAML ({shorten(str(exc) or type(exc).__name__)})") from None
    if root is None:
        raise SnnConvertError(f"{path}: the recipe is empty; it needs at least 'model'")
    _check_tree(path, root)
    if not isinstance(root, yaml.MappingNode):
        raise SnnConvertError(f"{path}: a recipe is a mapping with at least 'model'")
    top: dict[str, Any] = {}
    nodes: dict[str, yaml.Node] = {}
    for key_node, value_node in root.value:
        key = key_node.value
        if key not in _TOP_LEVEL:
            valid = ", ".join(sorted(_TOP_LEVEL))
            raise SnnConvertError(f"{_where(path, key_node)}: unknown key '{shorten(key)}' (valid: {valid})")
        nodes[key] = value_node
    if "model" not in nodes:
        raise SnnConvertError(f"{path}: the recipe needs a 'model'")
    scalar = _section(path, yaml.MappingNode("tag:yaml.org,2002:map", [
        (k, v) for k, v in root.value if k.value not in _SECTIONS
    ], root.start_mark, root.end_mark), Recipe, "recipe", skip=_SECTIONS)
    top.update(scalar)
    recipe = Recipe(**top)
    if "quantize" in nodes:
        recipe.quantize = QuantizeConfig(**_section(path, nodes["quantize"], QuantizeConfig, "quantize"))
        try:
            recipe.quantize.validate()
        except SnnConvertError as exc:
            raise _located(path, nodes["quantize"], "quantize", exc) from exc
    if "convert" in nodes:
        recipe.convert = _convert_section(path, nodes["convert"])
    if "finetune" in nodes:
        recipe.finetune = _finetune_section(path, nodes["finetune"])
    if "evaluate" in nodes:
        recipe.evaluate = _evaluate_section(path, nodes["evaluate"])
    return recipe  # sections were checked above, with their lines; pipeline.run checks the whole


def _finetune_section(path: Path, node: yaml.Node) -> FinetuneSection | None:
    if isinstance(node, yaml.ScalarNode) and node.value in ("null", "~", ""):
        return None
    if not isinstance(node, yaml.MappingNode):
        raise SnnConvertError(f"{_where(path, node)}: 'finetune' must be a mapping with 'data' and training options")
    own = {"data", "val_data"}
    data_nodes = {k.value: v for k, v in node.value if k.value in own}
    if "data" not in data_nodes:
        raise SnnConvertError(f"{_where(path, node)}: 'finetune' needs 'data' (the training images)")
    values = _section(path, yaml.MappingNode("tag:yaml.org,2002:map", [(k, v) for k, v in node.value
                                                                      if k.value not in own],
                                             node.start_mark, node.end_mark), FinetuneConfig, "finetune")
    config = FinetuneConfig(**values)
    try:
        config.validate()
    except SnnConvertError as exc:
        raise _located(path, node, "finetune", exc) from exc
    data = {k: _value(path, v) for k, v in data_nodes.items()}
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise SnnConvertError(f"{_where(path, data_nodes[key])}: 'finetune.{key}' must be a data spec string")
    return FinetuneSection(data["data"], data.get("val_data"), config)


def _convert_section(path: Path, node: yaml.Node) -> ConvertSection | None:
    if isinstance(node, yaml.ScalarNode) and node.value in ("null", "~", ""):
        return None
    if not isinstance(node, yaml.MappingNode):
        raise SnnConvertError(f"{_where(path, node)}: 'convert' must be a mapping with 'coding' and its options")
    coding_node = next((v for k, v in node.value if k.value == "coding"), None)
    if coding_node is not None and not isinstance(coding_node, yaml.ScalarNode):
        raise SnnConvertError(f"{_where(path, coding_node)}: 'convert.coding' must be a coding name")
    coding = coding_node.value if coding_node is not None else "sws"
    table = codings()
    if coding not in table:
        raise SnnConvertError(f"{_where(path, coding_node)}: unknown coding '{shorten(coding)}' "
                              f"(valid: {', '.join(table)})")
    options_node = yaml.MappingNode("tag:yaml.org,2002:map", [(k, v) for k, v in node.value if k.value != "coding"],
                                    node.start_mark, node.end_mark)
    entry = get_coding(coding)
    options = _section(path, options_node, entry.config, f"convert ({coding})")
    try:
        build_config(entry, **options)
    except SnnConvertError as exc:
        raise _located(path, node, "convert", exc) from exc
    return ConvertSection(coding, options)


def _evaluate_section(path: Path, node: yaml.Node) -> EvaluateConfig | None:
    if isinstance(node, yaml.ScalarNode) and node.value in ("null", "~", ""):
        return None
    values = _section(path, node, EvaluateConfig, "evaluate")
    reports = values.get("reports")
    if isinstance(reports, str):
        reports = [r.strip() for r in reports.split(",")]
    if reports is not None:
        values["reports"] = tuple(reports)
    config = EvaluateConfig(**values)
    try:
        config.validate()
    except SnnConvertError as exc:
        raise _located(path, node, "evaluate", exc) from exc
    return config
