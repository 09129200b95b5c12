"""User-facing errors: one line that names the problem and what to do about it."""

from __future__ import annotations

import re

_REF = re.compile("\ue000([^\ue001]*)\ue001([^\ue002]*)\ue002")


def option_ref(api: str, cli: str) -> str:
    """An option named inside an error message, in both spellings: ``api`` (the field or
    parameter name) and ``cli`` (its flag). :class:`SnnConvertError` keeps both texts; use
    :func:`snnconvert.options.opt` to build one from a config field."""
    return f"\ue000{api}\ue001{cli}\ue002"


class SnnConvertError(Exception):
    """An error caused by user input (bad file, option, recipe, model); printed as one line.

    Options named with :func:`option_ref` read as field names in ``str()`` (the API) and as
    flags in ``cli_text`` (what the command line prints)."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str) and "\ue000" in args[0]:
            self.cli_text = _REF.sub(r"\2", args[0])
            args = (_REF.sub(r"\1", args[0]), *args[1:])
        super().__init__(*args)


class UnsupportedGraphError(SnnConvertError):
    """The model contains operations a pass cannot handle; lists every offending node."""

    def __init__(self, problems: list[str], hint: str = "") -> None:
        self.problems = problems
        lines = [f"{len(problems)} unsupported node(s) in the model graph:"]
        lines += [f"  - {p}" for p in problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class ConfigError(SnnConvertError):
    """A config field that cannot take a value, kept as data: the config class, the field, the
    value and what the field takes. Each surface names the field its own way: ``str()`` (the
    API) by field name, the command line by its flag (:func:`snnconvert.options.cli_flag`), a
    recipe by its key and line."""

    def __init__(self, config: object, field: str, value: object, expected: str) -> None:
        self.config: type = config if isinstance(config, type) else type(config)
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(self.render(field))  # str(): the API's field names

    def render(self, name: str, *, cli: bool = False) -> str:
        """The one-line message with the field called ``name`` (options named in ``expected``
        as flags when ``cli``)."""
        shown = repr(self.value) if isinstance(self.value, str) else str(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return _REF.sub(r"\2" if cli else r"\1", f"{name} {shown} is not possible: {self.expected}")
