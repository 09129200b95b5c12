"""Command-line flags generated from a config dataclass, and the config built back from them.

Every field of the config whose metadata does not say ``cli: False`` becomes one flag: its name
(``max_batches_per_epoch`` -> ``--max-batches-per-epoch``, or the ``flag`` metadata), its help
text, its default (shown in the help) and its type: a ``bool`` is an on/off pair
(``--augment/--no-augment``), anything else is text read by the field's type
(:func:`snnconvert.options.parse_typed`: ``none`` for an optional field, ``1,2,3`` for a list)
or by the field's own ``parse`` metadata. A flag left out keeps the config's default (or the
``cli_default`` metadata); ``cli_required`` makes it mandatory. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.limits import shorten
from snnconvert.options import cli_fields, cli_flag, flag_name, parse_typed


@dataclass(frozen=True)
class ConfigFlag:
    """One generated flag: the config field it sets and how it reads."""

    field: str
    flag: str  # "--lr"
    is_bool: bool
    help: str
    default: Any
    required: bool
    annotation: Any  # the field's type
    parse: Callable[[str], Any] | None = None
    aliases: tuple[str, ...] = ()  # older names the flag still answers to


def _default(f: dataclasses.Field) -> Any:
    if "cli_default" in f.metadata:
        return f.metadata["cli_default"]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_flags(config: type, flag_prefix: str = "") -> list[ConfigFlag]:
    """The flags of ``config``'s command-line fields, in declaration order (``--<flag_prefix><field>``
    unless the field names its own flag)."""
    hints = typing.get_type_hints(config)
    flags = []
    for f in cli_fields(config):
        is_bool = hints[f.name] is bool
        flags.append(ConfigFlag(f.name, f.metadata.get("flag") or f"--{flag_prefix}{flag_name(f.name)}", is_bool,
                                f.metadata.get("help", ""), _default(f), bool(f.metadata.get("cli_required")),
                                hints[f.name], f.metadata.get("parse"), tuple(f.metadata.get("aliases", ()))))
    return flags


def parameters(flags: list[ConfigFlag], prefix: str, panel: str | None = None) -> list[inspect.Parameter]:
    """Typer parameters (keyword-only, named ``prefix + field``) of ``flags``; a flag not given
    arrives as None."""
    params = []
    for flag in flags:
        text = flag.help if flag.required else f"{flag.help} (default: {_shown(flag.default)})"
        if flag.is_bool:
            negative = f"--no-{flag.flag.removeprefix('--')}"
            option = typer.Option(None, f"{flag.flag}/{negative}", help=text, rich_help_panel=panel,
                                  show_default=False)
            annotation: Any = bool | None
        else:
            option = typer.Option(... if flag.required else None, flag.flag, *flag.aliases, help=text,
                                  rich_help_panel=panel, show_default=False, metavar="VALUE")
            annotation = str if flag.required else str | None
        params.append(inspect.Parameter(prefix + flag.field, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation))
    return params


def cli_message(exc: Exception) -> str:
    """An error as the command line shows it: a config error names the field by its flag."""
    if isinstance(exc, ConfigError):
        return exc.render(cli_flag(exc.config, exc.field), cli=True)
    return str(getattr(exc, "cli_text", exc))


def read_flag(flag: ConfigFlag, text: str) -> Any:
    """The value of ``flag`` given as ``text`` (a one-line error naming the flag when it cannot be read)."""
    if flag.parse is not None:
        return flag.parse(text)
    try:
        return parse_typed(text, flag.annotation)
    except ValueError:
        shown = str(flag.annotation).replace("typing.", "").replace("NoneType", "none").replace("<class '", "") \
            .replace("'>", "")
        raise SnnConvertError(f"{flag.flag} {shorten(text, 60)!r} is not possible: expected {shown}") from None


def config_from_flags(config: type, flags: list[ConfigFlag], given: dict[str, Any], **fixed: Any) -> Any:
    """``config`` built from the flags ``given`` (field -> text or bool; None: not given, so the
    command-line default), and ``fixed`` fields set by the command itself."""
    values: dict[str, Any] = {}
    for flag in flags:
        value = given.get(flag.field)
        if value is None:
            values[flag.field] = flag.default
        elif flag.is_bool:
            values[flag.field] = bool(value)
        else:
            values[flag.field] = read_flag(flag, str(value))
    return config(**values, **fixed)


class ConfigCommand:
    """A Typer callback whose signature is ``base``'s own parameters plus the generated flags of
    each source ``sources()`` returns (name -> a function returning its :class:`ConfigFlag` list;
    both read each time the CLI is built; parameter prefix ``<name>__``, help panel ``panels[name]``). ``base``
    receives its own parameters and, as ``given``, each source's flags by field (None: not given)."""

    def __init__(self, base: Callable[..., None], sources: Callable[[], dict[str, Callable[[], list[ConfigFlag]]]],
                 panels: dict[str, str] | None = None) -> None:
        self.base = base
        self.sources = sources
        self.panels = panels or {}
        self.__doc__ = base.__doc__
        self.__name__ = base.__name__
        self.__annotations__: dict[str, Any] = {}

    def flags(self) -> dict[str, list[ConfigFlag]]:
        return {name: source() for name, source in self.sources().items()}

    @property
    def __signature__(self) -> inspect.Signature:  # read by inspect.signature (Typer)
        own = [p for p in inspect.signature(self.base, eval_str=True).parameters.values() if p.name != "given"]
        generated = [p for name, flags in self.flags().items()
                     for p in parameters(flags, f"{name}__", self.panels.get(name, name))]
        return inspect.Signature(own + generated)

    def __call__(self, **kwargs: Any) -> None:
        own = {k: v for k, v in kwargs.items() if "__" not in k}
        given: dict[str, dict[str, Any]] = {name: {} for name in self.sources()}
        for key, value in kwargs.items():
            if "__" in key:
                name, field = key.split("__", 1)
                given[name][field] = value
        self.base(**own, given=given)
