"""Class labels checked against the model: names, count and order.

A model's outputs are labels ``0..K-1``; a data folder's labels are the positions of its sorted
class folder names. ``match_classes`` makes sure the two mean the same thing:

- the model's class names are known (stored in the artifact, or the names of the data its
  bundled weights were trained on): the folder must hold exactly those names. Same names in
  another order are labelled by name (the model's order wins, a note says so); other names or
  another count are refused unless ``allow_mismatch`` (then a subset of the model's names is
  labelled by name, anything else by folder position, and a note says which);
- only the model's output count is known: another number of class folders is refused, and so are
  class folders named by numbers whose text order differs from their numeric order (``1, 10, 2``
  vs ``1, 2, 10``): which one the model was trained with cannot be told, so the user decides by
  zero-padding the names (``01 .. 10``: both orders agree) or passing ``allow_mismatch`` (text
  order, as torchvision's ``ImageFolder``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from snnconvert.errors import SnnConvertError
from snnconvert.limits import shorten

MAX_CLASSES = 100_000
"""Most class names an artifact may store."""
MAX_CLASS_NAME = 255
"""Longest class name an artifact may store (a file name's limit)."""
ALLOW_FLAG = "--allow-class-mismatch"


@dataclass(frozen=True)
class ClassCheck:
    """What a model expects of labelled data: its class names in label order (None: unknown) and
    its number of outputs (None: unknown)."""

    model: str
    names: tuple[str, ...] | None = None
    outputs: int | None = None
    allow_mismatch: bool = False


def shown(name: str, limit: int = 40) -> str:
    """A name from a file system for a message: one line, cut, rich markup escaped."""
    return shorten(name, limit).replace("[", "\\[")


def _listing(names: Sequence[str], most: int = 4) -> str:
    items = [shown(n) for n in names[:most]]
    return ", ".join(items) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def numeric_order_differs(names: Sequence[str]) -> bool:
    """True if every name is a decimal number and their text order is not their numeric order."""
    if len(names) < 2 or not all(n.isascii() and n.isdigit() for n in names):
        return False
    return sorted(names) != sorted(names, key=lambda n: (int(n), n))


def _by_name(found: Sequence[str], names: Sequence[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[n] for n in found], dtype=np.int64)


def match_classes(
    found: Sequence[str], check: ClassCheck, where: str
) -> tuple[np.ndarray | None, list[str], str | None]:
    """How the labels of ``found`` (sorted folder names, label = position) map to the model's.

    Returns ``(remap, class_names, note)``: ``remap[old_label]`` is the new label (None: keep),
    the class names in the new label order, and a note for the description (None: nothing to say).
    Raises a one-line ``SnnConvertError`` naming the mismatch unless ``check.allow_mismatch``.
    """
    found = list(found)
    model = shown(check.model)
    if check.names is not None:
        names = list(check.names)
        if found == names:
            return None, found, None
        if sorted(found) == sorted(names) and len(set(found)) == len(found):
            return _by_name(found, names), names, "labels follow the model's class order (by name)"
        missing = [n for n in names if n not in set(found)]
        extra = [n for n in found if n not in set(names)]
        if not check.allow_mismatch:
            detail = "; ".join(part for part in (
                f"missing {_listing(missing)}" if missing else "",
                f"not the model's: {_listing(extra)}" if extra else "") if part)
            raise SnnConvertError(
                f"{shown(where, 120)} has {len(found)} classes ({_listing(found)}) but {model} has "
                f"{len(names)} ({_listing(names)}): {detail}; give data with the model's classes "
                f"or pass {ALLOW_FLAG}")
        if not extra:
            return (_by_name(found, names), names,
                    f"{len(found)} of the model's {len(names)} classes, labelled by name ({ALLOW_FLAG})")
        return None, found, (f"classes differ from the model's ({len(extra)} not the model's): labels follow the "
                             f"folder order ({ALLOW_FLAG})")
    problem = None
    if check.outputs is not None and len(found) != check.outputs:
        problem = (f"{shown(where, 120)} has {len(found)} classes ({_listing(found)}) but {model} outputs "
                   f"{check.outputs}")
        advice = f"give data with the model's classes or pass {ALLOW_FLAG}"
        note = f"{len(found)} classes for a model of {check.outputs} outputs: labels follow the folder order"
    elif numeric_order_differs(found):
        numeric = sorted(found, key=lambda n: (int(n), n))
        problem = (f"class folders of {shown(where, 120)} are numbers whose text order ({_listing(found)}) is not "
                   f"their numeric order ({_listing(numeric)}), and the model's order is unknown")
        advice = (f"zero-pad the folder names (e.g. {numeric[0].zfill(len(numeric[-1]))}) so both orders agree, "
                  f"or pass {ALLOW_FLAG} to label them in text order (as torchvision's ImageFolder)")
        note = "numbered class folders labelled in text order"
    if problem is None:
        return None, found, None
    if not check.allow_mismatch:
        raise SnnConvertError(f"{problem}; {advice}")
    return None, found, f"{note} ({ALLOW_FLAG})"


def validate_class_names(value: object, num_classes: int) -> list[str] | None:
    """Class names read from an artifact: None (older artifacts), or ``num_classes`` distinct,
    non-empty strings of at most ``MAX_CLASS_NAME`` characters; a one-line error otherwise."""
    if value is None:
        return None
    bad = "artifact manifest field model.class_names"
    if not isinstance(value, list) or not 0 < len(value) <= MAX_CLASSES:
        raise SnnConvertError(f"{bad} must be a list of at most {MAX_CLASSES:,} class names")
    if len(value) != num_classes:
        raise SnnConvertError(f"{bad} lists {len(value)} names for a model of {num_classes} classes")
    if not all(isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME for n in value):
        raise SnnConvertError(f"{bad} must hold non-empty strings of at most {MAX_CLASS_NAME} characters")
    if len(set(value)) != len(value):
        raise SnnConvertError(f"{bad} names a class twice")
    return list(value)


def known_class_names(data: str | None) -> list[str] | None:
    """Class names of data sets whose names are fixed (``digits``, ``cifar10:PATH``), else None."""
    if not data:
        return None
    from snnconvert.data.kinds import DATA_KINDS

    name = data.strip().partition(":")[0].split(",")[0].strip().lower()
    kind = DATA_KINDS.get(name) if name in DATA_KINDS else None
    return list(kind.call(kind.class_names)) if kind is not None and kind.class_names else None
