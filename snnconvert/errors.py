"""User-facing errors: one line that names the problem and what to do about it."""

from __future__ import annotations


class SnnConvertError(Exception):
    """An error caused by user input (bad file, option, recipe, model); printed as one line."""


class UnsupportedGraphError(SnnConvertError):
    """The model contains operations a pass cannot handle; lists every offending node."""

    def __init__(self, problems: list[str], hint: str = "") -> None:
        self.problems = problems
        lines = [f"{len(problems)} unsupported node(s) in the model graph:"]
        lines += [f"  - {p}" for p in problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))
