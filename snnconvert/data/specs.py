"""Data specs: the ``--data`` strings that name a data set (``digits``, ``imagefolder:PATH``...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from snnconvert.errors import SnnConvertError

PATH_KINDS = ("imagefolder", "cifar10", "imagenet")
KINDS = ("digits", *PATH_KINDS)
SPEC_SYNTAX = "digits, imagefolder:PATH, cifar10:PATH or imagenet:PATH"


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec. ``path`` is None for ``digits``; ``text`` is the original string."""

    kind: str
    path: Path | None
    text: str

    def __str__(self) -> str:
        return self.text


def parse_data_spec(text: str) -> DataSpec:
    """Parse ``KIND`` or ``KIND:PATH`` (the kind is case-insensitive; ``~`` is expanded).

    Only the syntax is checked here; whether the path exists is checked when loading.
    """
    if not isinstance(text, str) or not text.strip():
        raise SnnConvertError(f"empty data spec; use one of {SPEC_SYNTAX}")
    text = text.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        hint = ""
        if not sep and Path(text).expanduser().is_dir():
            hint = f" (for a folder of class subfolders write imagefolder:{text})"
        raise SnnConvertError(f"unknown data spec {text!r}: valid kinds are {SPEC_SYNTAX}{hint}")
    if kind == "digits":
        if sep:
            raise SnnConvertError(f"data spec {text!r}: 'digits' takes no path; write just digits")
        return DataSpec("digits", None, text)
    path = rest.strip()
    if not path:
        raise SnnConvertError(f"data spec {text!r} has no path; write {kind}:PATH")
    return DataSpec(kind, Path(path).expanduser(), text)


def as_spec(spec: DataSpec | str) -> DataSpec:
    """Accept either a parsed spec or its text."""
    return spec if isinstance(spec, DataSpec) else parse_data_spec(spec)
