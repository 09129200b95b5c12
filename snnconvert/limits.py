"""Bounds on untrusted input, in one place: file kinds, sizes, nesting, strings in messages,
time steps and memory estimates. Every check raises a one-line :class:`SnnConvertError`."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from snnconvert.errors import SnnConvertError

MAX_SHOWN_CHARS = 80
"""Longest user-given string echoed in an error message (longer ones are cut with '...')."""

MAX_RECIPE_BYTES = 1 << 20
"""Largest recipe file read (1 MiB): recipes are a few hundred bytes."""
MAX_YAML_NODES = 20_000
"""Most YAML nodes a recipe may compose to, aliases counted at every use (alias bombs)."""
MAX_YAML_BYTES = 4 * MAX_RECIPE_BYTES
"""Most characters of scalar text a recipe may expand to, aliases counted at every use (aliases of
long strings); a recipe without aliases never comes near it."""
MAX_NESTING = 32
"""Deepest nesting of YAML mappings/lists and of artifact JSON specs."""

MAX_ZIP_MEMBERS = 100_000
"""Most members of a torch.save zip (one per tensor storage plus a few records)."""
MAX_ZIP_DIRECTORY_BYTES = 64 << 20
"""Largest central directory of a torch.save zip read before any member."""
MAX_ZIP_RATIO = 100
"""Largest ratio of a compressed member's size to its stored size (torch.save never compresses;
real weights deflate by less than 2x, a zip bomb by 1000x)."""
MAX_PICKLE_BYTES = 64 << 20
"""Largest pickle record (``data.pkl``, the structure that names the tensors) of a torch file."""
MAX_ONNX_BYTES = (2 << 30) - 1
"""Largest ``.onnx`` file (protobuf's limit; larger weights live in external data files)."""

MAX_MANIFEST_ITEMS = 10_000
"""Most entries of one list or mapping in an artifact's manifest (notes, records, metrics)."""
MAX_MANIFEST_VALUES = 200_000
"""Most values (lists, mappings and scalars together) in an artifact's manifest."""
MAX_MANIFEST_STR = 1 << 16
"""Longest string in an artifact's manifest (characters)."""

MAX_CONFIG_INT = 1 << 31
"""Largest magnitude of an integer in an artifact's module config."""
MAX_CONFIG_STR = 1 << 22
"""Longest string in an artifact's module config (characters)."""
MAX_EXTRA_BUFFER_BYTES = 256 << 20
"""Memory a stored module may allocate beyond its stored tensors (statistics buffers)."""

MAX_TIME_STEPS = 4096
"""Most time steps of any coding option (T, Tc, Ts, steps)."""
MAX_RANGE_BITS = 120
"""Most bits of dynamic range beta^(Tc+Ts) may span (float32 overflows at 2^128)."""
MAX_WEIGHT_MAGNITUDE = 1e8
"""Largest absolute weight accepted from a checkpoint; larger ones overflow activations."""
MEMORY_SHARE = 0.8
"""Share of the available memory a simulation estimate may claim."""


def shorten(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr``-like text of ``value`` for an error message, at most ``limit`` characters, one line."""
    text = value if isinstance(value, str) else bounded_repr(value, 4 * limit)
    if len(text) > 4 * limit:  # never format more than needed (a 10 MB string or list)
        text = text[: 4 * limit]
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CONTAINERS = {list: ("[", "]"), tuple: ("(", ")"), set: ("{", "}"), frozenset: ("frozenset({", "})"),
               dict: ("{", "}")}


def bounded_repr(value: Any, budget: int, _depth: int = 0) -> str:
    """``repr(value)`` where it is at most ``budget`` characters; for longer values a text that
    starts like it and is longer than ``budget``, built without formatting the whole value (a list
    of a million long strings, a nested alias bomb, an integer of 100,000 digits)."""
    kind, budget = type(value), max(budget, 0)
    if kind in (str, bytes, bytearray):
        return repr(value[: budget + 1]) if len(value) > budget else repr(value)
    if kind is int and value.bit_length() > 12_000:  # over ~3,600 digits: repr() is slow or refuses
        return f"<an integer of {value.bit_length()} bits>"
    if kind not in _CONTAINERS:
        return repr(value)
    opening, closing = _CONTAINERS[kind]
    if not value:
        return {set: "set()", frozenset: "frozenset()"}.get(kind, opening + closing)
    if _depth > MAX_NESTING:
        return opening + "..." * budget
    parts, used = [], len(opening)
    items = value.items() if kind is dict else value
    for item in items:
        if kind is dict:
            key = bounded_repr(item[0], budget - used, _depth + 1)
            part = key + ": " + bounded_repr(item[1], max(budget - used - len(key), 0), _depth + 1)
        else:
            part = bounded_repr(item, budget - used, _depth + 1)
        parts.append(part)
        used += len(part) + 2
        if used > budget:
            break
    else:
        if kind is tuple and len(parts) == 1:
            return f"({parts[0]},)"
    return opening + ", ".join(parts) + closing


def file_kind(mode: int) -> str:
    """A word for a file type in messages."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_regular_file(path: str | Path, what: str, hint: str = "") -> Path:
    """``path`` if it is a regular file (symlinks followed); never opens it, so a named pipe or a
    device cannot block. Raises a one-line error naming ``what`` otherwise."""
    path = Path(path)
    shown = shorten(str(path), 200)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SnnConvertError(f"{what} not found: {shown}{'; ' + hint if hint else ''}") from None
    except (OSError, ValueError) as exc:
        raise SnnConvertError(f"{what} {shown} cannot be read ({shorten(exc.__class__.__name__)})") from None
    if not stat.S_ISREG(mode):
        raise SnnConvertError(f"{what} {shown} is {file_kind(mode)}, not a regular file; pass the file itself")
    return path


def check_nesting(value: Any, what: str, limit: int = MAX_NESTING) -> None:
    """Raise if lists/dicts in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        if depth >= limit:
            raise SnnConvertError(f"{what} nests deeper than {limit} levels; the file is damaged or not "
                                  "from snnconvert")
        stack.extend((c, depth + 1) for c in children)


def check_manifest_sizes(manifest: Any, what: str) -> None:
    """Bound a manifest read from a file before anything walks, prints or copies it: at most
    :data:`MAX_MANIFEST_ITEMS` entries in any list or mapping (a ``notes`` list of a million
    lines), :data:`MAX_MANIFEST_STR` characters in any string or key and
    :data:`MAX_MANIFEST_VALUES` values in all. Iterative; the message names the field."""
    stack: list[tuple[Any, str]] = [(manifest, "")]
    count = 0
    while stack:
        item, where = stack.pop()
        count += 1
        if count > MAX_MANIFEST_VALUES:
            raise SnnConvertError(f"{what} holds more than {MAX_MANIFEST_VALUES} values; the artifact is damaged "
                                  "or not from snnconvert")
        if isinstance(item, str):
            if len(item) > MAX_MANIFEST_STR:
                raise SnnConvertError(f"{what}: field '{shorten(where or '.', 60)}' is a string of {len(item)} "
                                      f"characters (at most {MAX_MANIFEST_STR}); the artifact is damaged or not "
                                      "from snnconvert")
            continue
        if not isinstance(item, (dict, list, tuple)):
            continue
        if len(item) > MAX_MANIFEST_ITEMS:
            kind = "mapping" if isinstance(item, dict) else "list"
            raise SnnConvertError(f"{what}: field '{shorten(where or '.', 60)}' is a {kind} of {len(item)} entries "
                                  f"(at most {MAX_MANIFEST_ITEMS}); the artifact is damaged or not from snnconvert")
        if isinstance(item, dict):
            for key, value in item.items():
                label = f"{where}.{key}" if where else str(key)
                if len(label) > 4 * MAX_SHOWN_CHARS:
                    label = label[: 4 * MAX_SHOWN_CHARS]
                stack.append((key, label))
                stack.append((value, label))
        else:
            stack.extend((value, f"{where}[{index}]") for index, value in enumerate(item))


def check_config_values(value: Any, what: str) -> None:
    """Bound every scalar of a stored config: finite-size integers and short strings."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int) and abs(item) > MAX_CONFIG_INT:
            raise SnnConvertError(f"{what} holds the integer {shorten(item, 40)}, beyond {MAX_CONFIG_INT}; "
                                  "the artifact is damaged or not from snnconvert")
        elif isinstance(item, str) and len(item) > MAX_CONFIG_STR:
            raise SnnConvertError(f"{what} holds a string of {len(item)} characters; "
                                  "the artifact is damaged or not from snnconvert")


def check_time_steps(value: Any, owner: object, field: str, *, minimum: int = 1) -> int:
    """An integer number of time steps in ``[minimum, MAX_TIME_STEPS]`` (else a
    :class:`~snnconvert.errors.ConfigError` for ``owner.field``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_TIME_STEPS:
        from snnconvert.errors import ConfigError

        raise ConfigError(owner, field, value, f"give an integer {minimum}..{MAX_TIME_STEPS} time steps")
    return value


def finite_number(value: Any) -> bool:
    """True for an int or float (not bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def available_memory_bytes() -> int | None:
    """Memory the process may still use (``MemAvailable``; None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_estimate(needed_bytes: float, what: str, hint: str,
                          available: int | None = None) -> None:
    """Refuse work whose memory estimate exceeds :data:`MEMORY_SHARE` of the available memory."""
    available = available_memory_bytes() if available is None else available
    if available is None or needed_bytes <= MEMORY_SHARE * available:
        return
    raise SnnConvertError(f"{what} needs about {_gib(needed_bytes)} of memory but {_gib(available)} is "
                          f"available; {hint}")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


TIME_KEYS = ("T", "Tc", "Ts", "steps", "steps_in", "steps_out")
"""Config fields that count time steps (in coding configs and stored module configs)."""
def time_steps_of(config: Any) -> int:
    """Time steps a coding config asks for: the sum, over its time fields (``T``, ``Tc``, ``Ts``...),
    of the largest value each gives (an integer or a per-layer list); 1 when none is set."""
    total = 0
    for key in TIME_KEYS:
        value = getattr(config, key, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        total += max(ints, default=0)
    return max(total, 1)
