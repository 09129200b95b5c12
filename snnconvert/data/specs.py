"""Data specs: the ``--data`` strings that name a data set (``digits``, ``imagefolder:PATH``...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from snnconvert.data.kinds import DATA_KINDS, spec_syntax
from snnconvert.errors import SnnConvertError
from snnconvert.limits import shorten

MAX_LANES = 16  # most lanes S of an events spec (events,S=N:PATH)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec. ``path`` is None for ``digits``; ``text`` is the original string;
    ``options`` the ``(KEY, VALUE)`` pairs given after the kind (``events,S=3:PATH``)."""

    kind: str
    path: Path | None
    text: str
    options: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.text


def parse_data_spec(text: str) -> DataSpec:
    """Parse ``KIND``, ``KIND:PATH`` or ``KIND,KEY=VALUE,...:PATH`` (the kind is
    case-insensitive, one of :data:`snnconvert.data.kinds.DATA_KINDS`; ``~`` is expanded; the
    options are the kind's own: ``events`` takes ``S``).

    Only the syntax is checked here; whether the path exists is checked when loading.
    """
    if not isinstance(text, str) or not text.strip():
        raise SnnConvertError(f"empty data spec; use one of {spec_syntax()}")
    text = text.strip()
    kind, sep, rest = text.partition(":")
    kind, *option_texts = kind.split(",")
    kind = kind.strip().lower()
    if kind not in DATA_KINDS:
        hint = ""
        if not sep and _is_dir(text):
            hint = f" (for a folder of class subfolders write imagefolder:{text})"
        raise SnnConvertError(f"unknown data spec {shorten(text)!r}: valid kinds are {spec_syntax()}{hint}")
    options = _parse_options(text, kind, option_texts)
    if not DATA_KINDS.get(kind).takes_path:
        if sep:
            raise SnnConvertError(f"data spec {shorten(text)!r}: '{kind}' takes no path; write just {kind}")
        return DataSpec(kind, None, text, options)
    path = rest.strip()
    if not path:
        raise SnnConvertError(f"data spec {shorten(text)!r} has no path; write {kind}:PATH")
    return DataSpec(kind, _expand(path), text, options)


def _expand(text: str) -> Path:
    """``~``/``~user`` expanded; a ``~name`` of no known user stays as written."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def _is_dir(text: str) -> bool:
    try:
        return _expand(text).is_dir()
    except (OSError, ValueError):  # too long, NUL bytes...
        return False


def _parse_options(text: str, kind: str, option_texts: list[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` options after the kind; keys are checked here, values by the kind's loader."""
    declared = DATA_KINDS.get(kind)
    allowed = declared.options
    options = []
    for item in option_texts:
        key, eq, value = (part.strip() for part in item.partition("="))
        match = next((a for a in allowed if a.lower() == key.lower()), None)
        if not allowed:
            raise SnnConvertError(f"data spec {shorten(text)!r}: {kind} takes no ,KEY=VALUE options")
        if match is None or not eq or not value:
            raise SnnConvertError(
                f"data spec {shorten(text)!r}: bad option {item.strip()!r}; {kind} accepts "
                + ", ".join(f"{a}=VALUE" for a in allowed)
            )
        options.append((match, value))
    if declared.check_options is not None:
        declared.call(declared.check_options, text, dict(options))
    return tuple(options)


def check_event_options(text: str, options: dict[str, str]) -> int:
    """The lane count ``S`` of an events spec (default 1); one-line error if it is not 1..16."""
    value = options.get("S", "1")
    try:
        lanes = int(value)
    except ValueError:
        lanes = 0
    if not 1 <= lanes <= MAX_LANES:
        raise SnnConvertError(
            f"data spec {shorten(text)!r}: S={value} is not possible; give an integer 1..{MAX_LANES}"
        )
    return lanes


def as_spec(spec: DataSpec | str) -> DataSpec:
    """Accept either a parsed spec or its text."""
    return spec if isinstance(spec, DataSpec) else parse_data_spec(spec)
