"""Device selection for every stage: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""

from __future__ import annotations

import re

import torch

from snnconvert.errors import SnnConvertError


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``; ``auto`` is CUDA when available, else the CPU.

    Raises ``SnnConvertError`` for an unknown name or an unavailable device."""
    text = (name or "").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise SnnConvertError(f"device {name!r} is not possible: give auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise SnnConvertError(f"device {name!r} is not available: this machine has no CUDA device (use cpu)")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise SnnConvertError(f"device {name!r} is not available: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)
