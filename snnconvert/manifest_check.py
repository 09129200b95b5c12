"""Typed, ranged checks of an artifact's manifest, and display-safe text of untrusted strings.

:func:`validate_manifest` checks every manifest field snnconvert reads back (``kind``, ``model``,
``quantize``, ``calibration``, ``layers``, ``clip_stats``, ``accuracy``, ``qat_history``, ``snn``,
``evaluations``, ``versions``, ...) against its type and range before anything uses it: a field
that is present must be right; a missing one is reported by whoever needs it. Numbers that must
be finite are; lists are bounded before they are walked. Each problem is a one-line
:class:`SnnConvertError` that names the field, the (shortened) value and what is expected.

:func:`safe_text` makes any string from a file safe to print with rich: control characters
(newlines included) become visible escapes and rich markup is escaped, so a stored name can
neither forge an output line nor restyle one.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.limits import shorten

MAX_SEED = 1 << 64
"""Seeds are integers in ``[0, MAX_SEED)`` (numpy's and torch's generators take 64 bits)."""
MIN_PERCENTILE = 50.0
"""Smallest calibration percentile: below the median a clip range cuts most activations of every layer."""
MAX_PERCENTILE = 100.0
BITS_RANGE = (2, 16)
"""Activation and weight bits of ``quantize`` (as :class:`snnconvert.quantize.QuantizeConfig`)."""
MAX_CLASSES = 100_000
MAX_CHANNELS = 1024
MAX_SIDE = 16_384
MAX_INPUT_VALUES = 1 << 26
"""Most values (channels x height x width) of one input image."""
MAX_COUNT = 1 << 31
"""Largest image count, limit or batch count stored or given."""
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_NAME_CHARS = 512
"""Longest name (model, layer, quantizer, coding, version) in a manifest."""
MAX_TEXT_CHARS = 16_384
"""Longest free text (descriptions, data specs, paths, notes) in a manifest."""
MAX_LAYERS = 100_000
MAX_NOTES = 1_000
MAX_EVALUATIONS = 10_000
MAX_INFO_ITEMS = 200_000
"""Most scalars in a stored SNN ``info`` mapping."""

KINDS = ("quantized", "snn")
CLIP_METHODS = ("max", "percentile", "mse")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


# ----------------------------------------------------------------------------- display-safe text


def _visible(char: str) -> str:
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    if char == "\t":
        return "\\t"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _hidden(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp")


def one_line(value: object) -> str:
    """``str(value)`` with control characters, line and paragraph separators and bidi overrides
    shown as escapes (``\\n``, ``\\x1b``, ``\\u2028``): always one line, never a terminal code."""
    text = str(value)
    if not any(_hidden(c) for c in text):
        return text
    return "".join(_visible(c) if _hidden(c) else c for c in text)


def safe_text(value: object, limit: int | None = None) -> str:
    """Text of ``value`` (from a file or a manifest) to embed in rich markup: one line (see
    :func:`one_line`), markup escaped, cut to ``limit`` characters when given."""
    text = one_line(value if limit is None else shorten(value if isinstance(value, str) else str(value), limit))
    return escape(text)


# ----------------------------------------------------------------------------- typed checks


class _Checker:
    """The field checks of one manifest (``where`` prefixes every message)."""

    def __init__(self, where: str, what: str = "manifest field") -> None:
        self.where, self.what = where, what

    def fail(self, field: str, value: Any, expected: str) -> SnnConvertError:
        quoted = isinstance(value, str) and not isinstance(value, _Said)
        shown = one_line(shorten(repr(value) if quoted else value, 60))
        return SnnConvertError(f"{self.where}: {self.what} {field} = {shown} is not possible: expected "
                               f"{expected}; the artifact is damaged or not from snnconvert")

    def integer(self, field: str, value: Any, low: int, high: int, *, none: bool = False) -> None:
        if value is None and none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(field, value, f"an integer {low}..{high}" + (" or null" if none else ""))

    def number(self, field: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
               low_open: bool = False, high_open: bool = False, none: bool = False) -> None:
        if value is None and none:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
        if not ok:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            if high == math.inf:
                bounds = "" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}"
            else:
                bounds = f" in {left}{low:g}, {high:g}{right}"
            raise self.fail(field, value, f"a finite number{bounds}" + (" or null" if none else ""))

    def boolean(self, field: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise self.fail(field, value, "true or false")

    def text(self, field: str, value: Any, *, name: bool = False, none: bool = False,
             choices: tuple[str, ...] | None = None) -> None:
        """A string: a ``name`` is one line of at most MAX_NAME_CHARS, other text at most MAX_TEXT_CHARS."""
        if value is None and none:
            return
        limit = MAX_NAME_CHARS if name else MAX_TEXT_CHARS
        if not isinstance(value, str):
            raise self.fail(field, value, "a string" + (" or null" if none else ""))
        if choices is not None and value not in choices:
            raise self.fail(field, value, f"one of {', '.join(choices)}")
        if len(value) > limit:
            raise self.fail(field, value, f"at most {limit} characters")
        if name and (not value.strip() or any(_hidden(c) for c in value)):
            raise self.fail(field, value, "a non-empty one-line name without control characters")

    def mapping(self, field: str, value: Any, *, none: bool = False) -> bool:
        """Whether ``value`` is a mapping to look into (``None`` allowed with ``none``)."""
        if value is None and none:
            return False
        if not isinstance(value, dict):
            raise self.fail(field, value, "a mapping" + (" or null" if none else ""))
        return True

    def sequence(self, field: str, value: Any, limit: int) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, value, "a list")
        if len(value) > limit:
            raise self.fail(field, _Said(f"a list of {len(value)} entries"), f"at most {limit} entries")
        return value

    def digest(self, field: str, value: Any) -> None:
        if not (isinstance(value, str) and _HEX64.fullmatch(value)):
            raise self.fail(field, value, "64 lowercase hexadecimal digits (SHA-256)")

    def seed(self, field: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_SEED:
            raise self.fail(field, value, "an integer seed in [0, 2^64)")


_MISSING = object()


class _Said(str):
    """A description of a value (``a list of 5,000 entries``), shown without quotes."""


def _get(section: Mapping[str, Any], key: str) -> Any:
    return section.get(key, _MISSING)


def _each(section: Mapping[str, Any], checks: dict[str, Any]) -> None:
    """Run ``checks[key](value)`` for every key present in ``section``."""
    for key, check in checks.items():
        value = _get(section, key)
        if value is not _MISSING:
            check(value)


def _input_spec(c: _Checker, spec: Any, field: str) -> None:
    if not c.mapping(field, spec):
        return
    _each(spec, {
        "channels": lambda v: c.integer(f"{field}.channels", v, 1, MAX_CHANNELS),
        "resize": lambda v: c.integer(f"{field}.resize", v, 1, MAX_SIDE, none=True),
    })
    size = _get(spec, "size")
    if size is not _MISSING:
        if not isinstance(size, list) or len(size) != 2:
            raise c.fail(f"{field}.size", size, "[height, width]")
        for i, side in enumerate(size):
            c.integer(f"{field}.size[{i}]", side, 1, MAX_SIDE)
        channels = spec.get("channels", 1)
        if channels * size[0] * size[1] > MAX_INPUT_VALUES:
            raise c.fail(f"{field}.size", size, f"at most {MAX_INPUT_VALUES:,} values per image with "
                                                f"{channels} channel(s)")
    channels = spec.get("channels")
    for key in ("mean", "std"):
        values = _get(spec, key)
        if values is _MISSING or values is None:
            continue
        if not isinstance(values, list) or not values or len(values) > MAX_CHANNELS \
                or (isinstance(channels, int) and len(values) not in (1, channels)):
            raise c.fail(f"{field}.{key}", values, f"a list of one number per channel ({channels})")
        for i, v in enumerate(values):
            if key == "std":
                c.number(f"{field}.std[{i}]", v, 0.0, math.inf, low_open=True)
            else:
                c.number(f"{field}.mean[{i}]", v)


def _model(c: _Checker, model: Any) -> None:
    if not c.mapping("model", model):
        return
    _each(model, {
        "name": lambda v: c.text("model.name", v, name=True),
        "source": lambda v: c.text("model.source", v),
        "input_spec": lambda v: _input_spec(c, v, "model.input_spec"),
        "num_classes": lambda v: c.integer("model.num_classes", v, 1, MAX_CLASSES),
        "default_data": lambda v: c.text("model.default_data", v, none=True),
    })
    notes = _get(model, "notes")
    if notes is not _MISSING:
        for i, note in enumerate(c.sequence("model.notes", notes, MAX_NOTES)):
            c.text(f"model.notes[{i}]", note)


def _quantize(c: _Checker, q: Any) -> None:
    if not c.mapping("quantize", q):
        return
    low, high = BITS_RANGE
    _each(q, {
        "bits": lambda v: c.integer("quantize.bits", v, low, high),
        "weight_bits": lambda v: c.integer("quantize.weight_bits", v, low, high, none=True),
        "version": lambda v: c.integer("quantize.version", v, 1, 1000),
        "method": lambda v: c.text("quantize.method", v, choices=CLIP_METHODS),  # version 1
        "clip_method": lambda v: c.text("quantize.clip_method", v, choices=CLIP_METHODS),
        "percentile": lambda v: c.number("quantize.percentile", v, MIN_PERCENTILE, MAX_PERCENTILE),
        "per_channel": lambda v: c.boolean("quantize.per_channel", v),
        "calib_limit": lambda v: c.integer("quantize.calib_limit", v, 1, MAX_COUNT, none=True),
        "qat_epochs": lambda v: c.integer("quantize.qat_epochs", v, 0, MAX_EPOCHS),
        "qat_batches_per_epoch": lambda v: c.integer("quantize.qat_batches_per_epoch", v, 1, MAX_COUNT, none=True),
        "qat_lr": lambda v: c.number("quantize.qat_lr", v, 0.0, math.inf, low_open=True),
        "qat_momentum": lambda v: c.number("quantize.qat_momentum", v, 0.0, 1.0, high_open=True),
        "batch_size": lambda v: c.integer("quantize.batch_size", v, 1, MAX_BATCH),
        "seed": lambda v: c.seed("quantize.seed", v),
        "device": lambda v: c.text("quantize.device", v, name=True),
    })


def _calibration(c: _Checker, cal: Any) -> None:
    if not c.mapping("calibration", cal):
        return
    _each(cal, {
        "spec": lambda v: c.text("calibration.spec", v),
        "limit": lambda v: c.integer("calibration.limit", v, 1, MAX_COUNT, none=True),
        "seed": lambda v: c.seed("calibration.seed", v),
        "calib_split": lambda v: c.number("calibration.calib_split", v, 0.0, 1.0, low_open=True),
        "images": lambda v: c.integer("calibration.images", v, 0, MAX_COUNT),
        "description": lambda v: c.text("calibration.description", v),
        "fingerprint": lambda v: c.text("calibration.fingerprint", v),  # empty for QDQ files
    })


def _quant_ref(c: _Checker, ref: Any, field: str) -> None:
    if not c.mapping(field, ref):
        return
    _each(ref, {
        "name": lambda v: c.text(f"{field}.name", v, name=True),
        "scale": lambda v: c.number(f"{field}.scale", v, 0.0),
        "zero_point": lambda v: c.number(f"{field}.zero_point", v),
        "per_channel": lambda v: c.boolean(f"{field}.per_channel", v),
    })


def _layers(c: _Checker, layers: Any) -> None:
    for i, r in enumerate(c.sequence("layers", layers, MAX_LAYERS)):
        f = f"layers[{i}]"
        if not c.mapping(f, r):
            continue
        _each(r, {
            "name": lambda v, f=f: c.text(f"{f}.name", v, name=True),
            "op": lambda v, f=f: c.text(f"{f}.op", v, name=True),
            "weight_bits": lambda v, f=f: c.integer(f"{f}.weight_bits", v, 1, BITS_RANGE[1]),
            "weight_scale_min": lambda v, f=f: c.number(f"{f}.weight_scale_min", v, 0.0),
            "weight_scale_max": lambda v, f=f: c.number(f"{f}.weight_scale_max", v, 0.0),
            "weight_zero_point": lambda v, f=f: c.integer(f"{f}.weight_zero_point", v, -(1 << 16), 1 << 16),
            "output": lambda v, f=f: v is None or _quant_ref(c, v, f"{f}.output"),
            "act_bits": lambda v, f=f: c.integer(f"{f}.act_bits", v, 1, BITS_RANGE[1], none=True),
        })
        inputs = _get(r, "inputs")
        if inputs is not _MISSING:
            for j, ref in enumerate(c.sequence(f"{f}.inputs", inputs, MAX_LAYERS)):
                _quant_ref(c, ref, f"{f}.inputs[{j}]")


def _clip_stats(c: _Checker, stats: Any) -> None:
    for i, s in enumerate(c.sequence("clip_stats", stats, MAX_LAYERS)):
        f = f"clip_stats[{i}]"
        if not c.mapping(f, s):
            continue
        _each(s, {
            "name": lambda v, f=f: c.text(f"{f}.name", v, name=True),
            "clip_low": lambda v, f=f: c.number(f"{f}.clip_low", v),
            "clip_high": lambda v, f=f: c.number(f"{f}.clip_high", v),
            "observed_max": lambda v, f=f: c.number(f"{f}.observed_max", v),
            "clipped_share": lambda v, f=f: c.number(f"{f}.clipped_share", v, 0.0, 1.0),
            "method": lambda v, f=f: c.text(f"{f}.method", v, name=True),
        })


def _accuracy(c: _Checker, acc: Any) -> None:
    if not c.mapping("accuracy", acc, none=True):
        return
    _each(acc, {
        "float_top1": lambda v: c.number("accuracy.float_top1", v, 0.0, 1.0),
        "quantized_top1": lambda v: c.number("accuracy.quantized_top1", v, 0.0, 1.0),
        "images": lambda v: c.integer("accuracy.images", v, 0, MAX_COUNT),
        "data": lambda v: c.text("accuracy.data", v),
    })


def _qat_history(c: _Checker, history: Any) -> None:
    for i, row in enumerate(c.sequence("qat_history", history, MAX_LAYERS)):
        f = f"qat_history[{i}]"
        if not c.mapping(f, row):
            continue
        _each(row, {
            "epoch": lambda v, f=f: c.integer(f"{f}.epoch", v, 0, MAX_EPOCHS),
            "loss": lambda v, f=f: c.number(f"{f}.loss", v),
            "bn_frozen": lambda v, f=f: c.number(f"{f}.bn_frozen", v, 0.0, 1.0),
            "quant_frozen": lambda v, f=f: c.number(f"{f}.quant_frozen", v, 0.0, 1.0),
        })


def check_snn_info(info: Any, where: str, field: str = "snn.info", what: str = "manifest field") -> None:
    """Bounds of a spiking network's ``info`` (from a manifest, or a stored network's with
    ``what="stored network"``): a mapping whose numbers are all finite (energies, latencies,
    thresholds), ``latency`` and ``frames`` non-negative integers, ``warnings`` a list of text,
    every string bounded."""
    c = _Checker(where, what)
    if not c.mapping(field, info):
        return
    _each(info, {
        "coding": lambda v: c.text(f"{field}.coding", v, name=True),
        "latency": lambda v: c.integer(f"{field}.latency", v, 0, MAX_COUNT, none=True),
        "frames": lambda v: c.integer(f"{field}.frames", v, 0, MAX_COUNT, none=True),
        "latency_terms": lambda v: c.text(f"{field}.latency_terms", v),
    })
    warnings = _get(info, "warnings")
    if warnings is not _MISSING:
        for i, w in enumerate(c.sequence(f"{field}.warnings", warnings, MAX_NOTES)):
            c.text(f"{field}.warnings[{i}]", w)
    stack: list[tuple[str, Any]] = [(field, info)]
    seen = 0
    while stack:
        path, item = stack.pop()
        seen += 1
        if seen > MAX_INFO_ITEMS:
            raise c.fail(field, _Said(f"more than {MAX_INFO_ITEMS:,} values"), f"at most {MAX_INFO_ITEMS:,} values")
        if isinstance(item, dict):
            stack.extend((f"{path}.{shorten(k, 40)}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise c.fail(path, item, "a finite number")
        elif isinstance(item, str) and len(item) > MAX_TEXT_CHARS:
            raise c.fail(path, item, f"at most {MAX_TEXT_CHARS} characters")


def _snn(c: _Checker, snn: Any) -> None:
    if not c.mapping("snn", snn, none=True):
        return
    _each(snn, {
        "coding": lambda v: c.text("snn.coding", v, name=True),
        "info": lambda v: check_snn_info(v, c.where),
    })


def _evaluations(c: _Checker, evaluations: Any) -> None:
    for i, ev in enumerate(c.sequence("evaluations", evaluations, MAX_EVALUATIONS)):
        f = f"evaluations[{i}]"
        if not c.mapping(f, ev):
            continue
        _each(ev, {
            "created": lambda v, f=f: c.text(f"{f}.created", v, name=True),
            "data": lambda v, f=f: c.text(f"{f}.data", v, none=True),
            "report": lambda v, f=f: c.text(f"{f}.report", v, none=True),
        })
        top1 = _get(ev, "top1")
        if top1 is not _MISSING and c.mapping(f"{f}.top1", top1):
            if len(top1) > 16:
                raise c.fail(f"{f}.top1", _Said(f"{len(top1)} scores"), "at most 16 scores")
            for key, value in top1.items():
                c.text(f"{f}.top1 key", key, name=True)
                c.number(f"{f}.top1.{shorten(key, 40)}", value, 0.0, 1.0, none=True)


def _versions(c: _Checker, versions: Any) -> None:
    if not c.mapping("versions", versions):
        return
    if len(versions) > 64:
        raise c.fail("versions", _Said(f"{len(versions)} entries"), "at most 64 entries")
    for key, value in versions.items():
        c.text("versions key", key, name=True)
        c.text(f"versions.{shorten(key, 40)}", value, name=True)


def validate_manifest(manifest: dict[str, Any], where: str) -> None:
    """Check the type and range of every field of ``manifest`` that snnconvert reads; raise a
    one-line :class:`SnnConvertError` (``where``: the file, for the message) on the first bad one.

    Fields that are absent are not required here (a partial manifest still loads); fields that
    are present must be what snnconvert writes. Unknown top-level fields are left alone."""
    c = _Checker(where)
    if not isinstance(manifest, dict):
        raise c.fail("(root)", manifest, "a mapping")
    _each(manifest, {
        "kind": lambda v: c.text("kind", v, choices=KINDS),
        "created": lambda v: c.text("created", v, name=True),
        "versions": lambda v: _versions(c, v),
        "tensors_sha256": lambda v: c.digest("tensors_sha256", v),
        "models_sha256": lambda v: c.digest("models_sha256", v),
        "model": lambda v: _model(c, v),
        "quantize": lambda v: _quantize(c, v),
        "calibration": lambda v: _calibration(c, v),
        "layers": lambda v: _layers(c, v),
        "clip_stats": lambda v: _clip_stats(c, v),
        "accuracy": lambda v: _accuracy(c, v),
        "qat_history": lambda v: _qat_history(c, v),
        "snn": lambda v: _snn(c, v),
        "evaluations": lambda v: _evaluations(c, v),
        "converted_from": lambda v: c.text("converted_from", v),
        "finetuned_from": lambda v: c.text("finetuned_from", v),
    })


# ----------------------------------------------------------------------------- option values

MAX_ENERGY_PJ = 1e9
"""Largest energy per operation (pJ) accepted as an option."""

_OPTION_KINDS: dict[str, tuple[str, Any]] = {
    "count": (f"a positive integer (at most {MAX_COUNT:,}) or nothing",
              lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_COUNT)),
    "batch": (f"an integer 1..{MAX_BATCH:,}", lambda v: _is_int(v) and 1 <= v <= MAX_BATCH),
    "epochs": (f"an integer 0..{MAX_EPOCHS:,}", lambda v: _is_int(v) and 0 <= v <= MAX_EPOCHS),
    "seed": ("an integer in [0, 2^64)", lambda v: _is_int(v) and 0 <= v < MAX_SEED),
    "energy": (f"a finite energy in pJ, > 0 and at most {MAX_ENERGY_PJ:g}",
               lambda v: _is_real(v) and 0 < v <= MAX_ENERGY_PJ),
    "positive": ("a positive finite number", lambda v: _is_real(v) and v > 0),
    "share": ("a share in (0, 1]", lambda v: _is_real(v) and 0 < v <= 1),
}
"""What each kind of option value must be (``check_options``)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_options(config: object, spec: dict[str, str]) -> None:
    """Check the attributes of ``config`` named in ``spec`` (``{attribute: kind}``, kinds of
    ``_OPTION_KINDS``): a :class:`~snnconvert.errors.ConfigError` such as ``e_ac_pj nan is not
    possible: give a finite energy in pJ, > 0 ...`` on the first bad value."""
    for attribute, kind in spec.items():
        value = getattr(config, attribute)
        expected, ok = _OPTION_KINDS[kind]
        if not ok(value):
            raise ConfigError(config, attribute, value if isinstance(value, (int, float, str)) else one_line(
                shorten(value, 40)), f"give {expected}")
