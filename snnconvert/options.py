"""Options as data, without torch: config fields, their text form, and each coding's options.

A coding's options are a dataclass whose fields are made with :func:`option` (help text, CLI
visibility, a CLI-only default). :class:`CodingOptions` names the dataclass, the coding and its
text parsers; each method package declares one in its torch-free ``config`` module, so the CLI
can build and check a config (``to-snn --Tc 0`` answers in a fraction of a second) before torch
loads, with the very ``validate()`` the conversion runs. The rest of a coding (its conversion,
reports, ...) is declared in :mod:`snnconvert.codings` with the same ``CodingOptions``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snnconvert.errors import ConfigError, SnnConvertError, option_ref
from snnconvert.limits import shorten
from snnconvert.registry import Registry, load_method_packages

DTYPE_NAMES = ("float32", "float64")
"""Simulation precisions a coding's ``dtype`` option takes."""

CALIBRATION_MODES = ("none", "bias", "layerwise")
"""none: no calibration; bias: threshold scale and bias correction; layerwise: also a least-squares weight fit."""


def option(default: Any = dataclasses.MISSING, *, help: str, cli: bool = True,  # noqa: A002 - the CLI's word
           default_factory: Any = dataclasses.MISSING, cli_default: Any = dataclasses.MISSING,
           flag: str | None = None, parse: Callable[[str], Any] | None = None,
           aliases: tuple[str, ...] = ()) -> Any:
    """A config field with its help text (shown by ``--help``); ``cli=False`` keeps it out of the
    command line (recipes and the API still take it); ``cli_default`` is the value the command
    line uses when the flag is not given (the API keeps ``default``); ``flag`` names its flag
    when the field's own name is not the one (``--t-max`` for a method's ``t_max``); ``parse``
    reads its command-line text when the field's type alone does not say how; ``aliases`` are
    older flag names the command line still accepts."""
    meta: dict[str, Any] = {"help": help, "cli": cli}
    if cli_default is not dataclasses.MISSING:
        meta["cli_default"] = cli_default
    if flag is not None:
        meta["flag"] = flag
    if parse is not None:
        meta["parse"] = parse
    if aliases:
        meta["aliases"] = tuple(aliases)
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def config_version(config: type) -> int:
    """A config class's ``VERSION`` (1 when it declares none)."""
    return int(getattr(config, "VERSION", 1))


def renamed_fields(config: type) -> dict[str, str]:
    """Every older field name of ``config`` and the field it is now (its ``RENAMED``: ``{version:
    {old: new}}``, the renames that took version ``v`` to ``v + 1``, followed through to today)."""
    names: dict[str, str] = {}
    for version in sorted(getattr(config, "RENAMED", {}), reverse=True):
        for old, new in config.RENAMED[version].items():
            names[old] = names.get(new, new)
    return names


def stored_config(config: Any) -> dict[str, Any]:
    """A config as stored (artifacts, checkpoints, logs): its fields and its ``version``."""
    return {**dataclasses.asdict(config), "version": config_version(type(config))}


def config_from_stored(config: type, data: dict[str, Any], where: str = "") -> Any:
    """``config`` built from stored values of any version up to its own: the ``RENAMED`` fields of
    each older version are migrated in order; a newer version or an unknown field is a one-line
    error naming ``where``."""
    data = dict(data)
    version = data.pop("version", 1)
    current = config_version(config)
    prefix = f"{where}: " if where else ""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= current:
        raise SnnConvertError(f"{prefix}{config.__name__} version {shorten(version, 20)} is not one this snnconvert "
                              f"reads (1..{current}); upgrade snnconvert")
    renames = getattr(config, "RENAMED", {})
    for step in range(version, current):
        for old, new in renames.get(step, {}).items():
            if old in data:
                data[new] = data.pop(old)
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SnnConvertError(f"{prefix}{config.__name__} has no field(s) {shorten(', '.join(unknown), 80)}")
    return config(**data)


def check_calibration(mode: object, seconds: object, images: object, owner: object = None) -> None:
    """Raise a one-line error for an impossible calibration mode, time budget or image count."""
    if mode not in CALIBRATION_MODES:
        raise ConfigError(owner or CalibrationOptions, "calibrate", mode, f"choose {', '.join(CALIBRATION_MODES)}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(owner or CalibrationOptions, "calibrate_seconds", seconds, "give a number of seconds > 0")
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ConfigError(owner or CalibrationOptions, "calibrate_images", images, "give an integer >= 2")


@dataclass
class CalibrationOptions:
    """The layer-wise calibration options of a coding's config (mixed into it: ``class
    MLIFConfig(CalibrationOptions)``); :mod:`snnconvert.calibrate` reads them."""

    calibrate: str = option("none", cli_default="layerwise",
                            help="Layer-wise calibration against the ANN after conversion: none, bias (threshold "
                                 "scale + bias per layer) or layerwise (also the weights, in closed form); "
                                 "to-snn: layerwise.")
    calibrate_seconds: float = option(300.0, help="Time budget of the calibration (seconds).")
    calibrate_images: int = option(512, help="Calibration images fitted (as many more are held out for the proxy).")

    def check_calibration(self) -> None:
        """One-line errors for impossible calibration options."""
        check_calibration(self.calibrate, self.calibrate_seconds, self.calibrate_images, self)


# ---------------------------------------------------------------------------- text -> value


def flag_name(field_name: str) -> str:
    """``bits_spike`` -> ``bits-spike``; ``Tc`` stays ``Tc``."""
    return field_name.replace("_", "-")


def _scalar(text: str, kind: Any) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(text)
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:
        return text
    if kind is type(None):
        if text.strip().lower() in ("none", "null"):
            return None
        raise ValueError(text)
    raise ValueError(text)


def parse_typed(text: str, annotation: Any) -> Any:
    """``text`` read as ``annotation`` (``int | list[int] | str`` reads ``3``, ``1,2,3`` and
    ``auto``); ValueError when it cannot be."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        # str last: "3" is the int 3 for `int | str`; None first: "none" is None for `int | None`
        ordered = sorted(members, key=lambda a: (a is not type(None), a is str))
        for member in ordered:
            try:
                return parse_typed(text, member)
            except ValueError:
                continue
        raise ValueError(text)
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (str,)
        parts = [p.strip() for p in text.strip().strip("[]").split(",") if p.strip()]
        if not parts:
            raise ValueError(text)
        return [parse_typed(p, item) for p in parts]
    return _scalar(text, annotation)


# ---------------------------------------------------------------------------- a coding's options


def cli_fields(config: type) -> list[dataclasses.Field]:
    """The fields of ``config`` the command line offers: its own in declaration order, then those it
    inherits (a mixin such as :class:`CalibrationOptions`)."""
    own = config.__dict__.get("__annotations__", {})
    offered = [f for f in dataclasses.fields(config) if f.metadata.get("cli", True)]
    return [f for f in offered if f.name in own] + [f for f in offered if f.name not in own]


def _same_options(a: CodingOptions, b: CodingOptions) -> bool:
    return a.config is b.config


@dataclass(frozen=True)
class CodingOptions:
    """A coding's name and summary, its config dataclass (with a ``validate()`` that raises
    :class:`~snnconvert.errors.SnnConvertError`) and the parsers of fields whose type alone does
    not say how to read them (e.g. SWS ``--Ts 1,2,2`` or ``auto``)."""

    name: str
    summary: str
    config: type
    parsers: dict[str, Callable[[str], Any]] = field(default_factory=dict)

    def options(self) -> list[dataclasses.Field]:
        """The config fields the command line offers (:func:`cli_fields`)."""
        return cli_fields(self.config)

    def parse(self, name: str, text: str) -> Any:
        """Read the command-line text of config field ``name`` (a declared parser, else the
        field's type)."""
        if name in self.parsers:
            return self.parsers[name](text)
        hints = typing.get_type_hints(self.config)
        if name not in hints:
            valid = ", ".join(f.name for f in self.options())
            raise SnnConvertError(f"{name} is not an option of coding {self.name} (its options: {valid})")
        try:
            return parse_typed(text, hints[name])
        except ValueError:
            shown = re.sub(r"<class '(\w+)'>", r"\1", str(hints[name]).replace("typing.", "")).replace("NoneType",
                                                                                                         "none")
            raise SnnConvertError(f"--{flag_name(name)} {shorten(text, 60)!r} is not possible for coding "
                                  f"{self.name}: expected {shown}") from None

    def build(self, config: Any = None, **options: Any) -> Any:
        """A validated config: a copy of ``config`` (or the defaults) with ``options`` applied.
        The caller's config object is never changed."""
        names = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise SnnConvertError(f"unknown option(s) for coding {self.name}: {', '.join(unknown)} "
                                  f"(valid: {', '.join(sorted(names))})")
        if config is None:
            config = self.config(**options)
        elif not isinstance(config, self.config):
            raise SnnConvertError(f"coding {self.name} takes a {self.config.__name__}, not a "
                                  f"{type(config).__name__}")
        else:
            config = dataclasses.replace(config, **options)
        config.validate()
        return config

    def from_command_line(self, given: dict[str, Any], extra: list[str]) -> dict[str, Any]:
        """Typed options from flags (``given``: field name -> the text, or a bool for on/off
        flags) and ``--set KEY=VALUE`` items, with the command line's own defaults
        (``cli_default``) for fields not given; a field of another coding is an error that lists
        this coding's options."""
        fields = {f.name for f in dataclasses.fields(self.config)}
        valid = ", ".join(f"--{flag_name(f.name)}" for f in self.options())
        options: dict[str, Any] = {}
        for key, value in given.items():
            if key not in fields:
                raise SnnConvertError(f"--{flag_name(key)} is not an option of coding {self.name} "
                                      f"(its options: {valid})")
            options[key] = value if isinstance(value, bool) else self.parse(key, value)
        for item in extra:
            if "=" not in item:
                raise SnnConvertError(f"--set {item!r}: write KEY=VALUE")
            key, value = item.split("=", 1)
            key = key.strip().replace("-", "_")
            if key not in fields:
                raise SnnConvertError(f"--set {key}: not an option of coding {self.name} (its options: {valid})")
            options[key] = self.parse(key, value)
        for f in dataclasses.fields(self.config):
            if "cli_default" in f.metadata and f.name not in options:
                options[f.name] = f.metadata["cli_default"]
        return options


CODING_OPTIONS: Registry[CodingOptions] = Registry("coding", same=_same_options, load=load_method_packages)
"""Every coding's options by coding name; filled by importing the method packages, without torch."""


def coding_options() -> dict[str, CodingOptions]:
    """Every coding's options by name (name order), torch-free."""
    return dict(sorted(CODING_OPTIONS.items().items()))


# ---------------------------------------------------------------------------- a training method's options


@dataclass(frozen=True)
class MethodOptions:
    """A training method's name, summary and config dataclass (torch-free: the ``finetune``
    command generates the method's flags from it before torch loads)."""

    name: str
    summary: str
    config: type


TRAINING_OPTIONS: Registry[MethodOptions] = Registry("training method", same=lambda a, b: a.config is b.config,
                                                     load=load_method_packages)
"""Every training method's options by name; filled by importing the method packages, without torch."""


def training_options() -> dict[str, MethodOptions]:
    """Every training method's options by name (name order), torch-free."""
    return TRAINING_OPTIONS.items()


def cli_flag(config: type, field_name: str) -> str:
    """The command-line flag of ``config.field_name``: its ``flag`` metadata, else ``--field-name``
    (``--<method>-field-name`` for a training method's option), as the generated flags name it."""
    known = {f.name: f for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
    f = known.get(field_name)
    if f is not None and f.metadata.get("flag"):
        return str(f.metadata["flag"])
    prefix = next((f"{flag_name(name)}-" for name, m in training_options().items() if m.config is config), "")
    return f"--{prefix}{flag_name(field_name)}"


def opt(owner: type | str, field_name: str, *, assign: bool = False) -> str:
    """An option named in an error message: the API reads ``field_name``, the command line its
    flag. ``owner`` is the config class of the field, or the name of the API function whose
    parameter it is (``opt("quantize", "data")`` reads ``data`` / ``--data``). With ``assign``
    a value follows: ``weights=`` / ``--weights `` (write ``{opt(..., assign=True)}FILE``)."""
    cli = cli_flag(owner, field_name) if isinstance(owner, type) else f"--{flag_name(field_name)}"
    return option_ref(f"{field_name}=", f"{cli} ") if assign else option_ref(field_name, cli)
