"""``to-snn`` usage errors without torch.

Each method package declares its coding's options in a torch-free ``config`` module
(:class:`snnconvert.options.CodingOptions`). Before torch loads, :func:`precheck_to_snn` imports
those (:func:`snnconvert.options.coding_options`), reads the command line with the same flags the
CLI generates, builds the config and calls its ``validate()``: the same code as the conversion, so
the same one-line errors, in a fraction of a second.

What it cannot decide (a flag or coding that only an installed plugin may know, an argument form
it does not read) is left to the normal path, which loads torch and reports any problem the same
way. A usage error is never invented here: only the real validation code raises.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

from snnconvert.errors import SnnConvertError
from snnconvert.options import CodingOptions, coding_options, flag_name

VALUE_OPTIONS = frozenset({"--input", "--coding", "--set", "--device", "--out"})
FLAG_OPTIONS = frozenset({"--json", "--help"})
"""``to-snn``'s own options (the CLI passes the ones its signature declares)."""
DEFAULT_CODING = "sws"


class UsageProblem(SnnConvertError):
    """An option ``to-snn`` does not have (exit status 2, like other usage errors)."""

    exit_code = 2


class _Undecided(Exception):
    """The pre-check cannot tell: the normal path decides."""


def _coding_flags(table: dict[str, CodingOptions]) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
    """On/off flags (``--per-channel`` / ``--no-per-channel``: field, value) and value flags
    (``--Tc``: field) of every coding, as the CLI generates them."""
    bool_flags: dict[str, tuple[str, bool]] = {}
    value_flags: dict[str, str] = {}
    for coding in table.values():
        hints = typing.get_type_hints(coding.config)
        for f in coding.options():
            flag = f"--{flag_name(f.name)}"
            if hints[f.name] is bool:
                bool_flags[flag] = (f.name, True)
                bool_flags[f"--no-{flag_name(f.name)}"] = (f.name, False)
            else:
                value_flags[flag] = f.name
    return bool_flags, value_flags


def _parse_arguments(args: list[str], bool_flags: dict[str, tuple[str, bool]], value_flags: dict[str, str],
                     value_options: frozenset[str], flag_options: frozenset[str],
                     ) -> tuple[str, dict[str, Any], list[str]]:
    coding, given, sets = DEFAULT_CODING, {}, []
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


def _has_plugins() -> bool:
    from importlib.metadata import entry_points

    from snnconvert.registry import ENTRY_POINT_GROUP

    return bool(entry_points(group=ENTRY_POINT_GROUP))


def _check(args: list[str], value_options: frozenset[str], flag_options: frozenset[str]) -> None:
    if any(a in ("--help", "-h") for a in args) or not {"--coding", "--set"} <= value_options:
        raise _Undecided
    table = coding_options()
    bool_flags, value_flags = _coding_flags(table)
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
    coding.build(None, **coding.from_command_line(given, sets))


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
