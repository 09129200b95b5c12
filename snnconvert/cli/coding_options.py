"""``to-snn`` flags generated from the coding table.

Every registered coding's config fields become flags (``bits_spike`` -> ``--bits-spike``,
``Tc`` stays ``--Tc``), with the field's help text, grouped in one help panel per coding.
A field name several codings share is one flag that each coding reads with its own type.
The command's signature is computed each time the CLI is built, so a coding registered
after import (a plugin, a test) gets its flags too.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer

from snnconvert.options import CodingOptions, flag_name

if typing.TYPE_CHECKING:
    from snnconvert.codings import Coding

PREFIX = "coding_option_"  # keeps generated parameter names apart from the command's own


@dataclasses.dataclass
class _Flag:
    name: str  # the config field
    is_bool: bool
    help: str
    owners: list[str]


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _flags(table: dict[str, CodingOptions]) -> list[_Flag]:
    flags: dict[str, _Flag] = {}
    for coding in table.values():
        hints = typing.get_type_hints(coding.config)
        for f in coding.options():
            text = f.metadata.get("help", "")
            known = flags.get(f.name)
            if known is None:
                flags[f.name] = _Flag(f.name, _is_bool(hints[f.name]), text, [coding.name])
            else:
                known.owners.append(coding.name)
                known.is_bool = known.is_bool and _is_bool(hints[f.name])
    return list(flags.values())


def _parameter(flag: _Flag) -> inspect.Parameter:
    owners = ", ".join(flag.owners)
    panel = f"{flag.owners[0]} options" if len(flag.owners) == 1 else "options of several codings"
    help_text = f"{flag.help} (codings: {owners})" if len(flag.owners) > 1 else flag.help
    name = f"--{flag_name(flag.name)}"
    if flag.is_bool:
        option = typer.Option(None, f"{name}/--no-{flag_name(flag.name)}", help=help_text, rich_help_panel=panel,
                              show_default=False)
        annotation: Any = bool | None
    else:
        option = typer.Option(None, name, help=help_text, rich_help_panel=panel, show_default=False,
                              metavar="VALUE")
        annotation = str | None
    return inspect.Parameter(PREFIX + flag.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


class DynamicCommand:
    """A Typer callback whose signature is ``base``'s parameters plus one per coding option.

    ``base`` takes its own parameters plus ``coding_options: dict[str, Any]`` (field name ->
    the text or bool given on the command line; flags not given are left out). With
    ``generate`` False the signature is ``base``'s alone: the CLI sets that when another command
    runs, so that loading the coding table (and torch) is not needed for it."""

    def __init__(self, base: Callable[..., None]) -> None:
        self.generate = True
        self.base = base
        self.__doc__ = base.__doc__
        self.__name__ = base.__name__
        self.__annotations__: dict[str, Any] = {}

    @property
    def __signature__(self) -> inspect.Signature:  # read by inspect.signature (Typer)
        own = [p for p in inspect.signature(self.base, eval_str=True).parameters.values()
               if p.name != "coding_options"]
        if not self.generate:
            return inspect.Signature(own)
        from snnconvert.options import coding_options as table  # torch-free

        generated = [_parameter(f) for f in _flags(table())]
        return inspect.Signature(own + generated)

    def __call__(self, **kwargs: Any) -> None:
        given = {k.removeprefix(PREFIX): v for k, v in kwargs.items() if k.startswith(PREFIX) and v is not None}
        own = {k: v for k, v in kwargs.items() if not k.startswith(PREFIX)}
        self.base(**own, coding_options=given)


def coding_options(coding: Coding, given: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Typed options for ``coding`` from the generated flags (``given``) and ``--set KEY=VALUE``
    items; a flag of another coding is an error that lists this coding's options."""
    return coding.option_set().from_command_line(given, extra)
