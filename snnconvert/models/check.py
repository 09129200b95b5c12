"""``snnconvert models --check``: which architectures convert, per coding (random weights, no
downloads, a tiny input).

Each model is first prepared on the ``meta`` device (no memory, no arithmetic), which finds
unsupported operations in a fraction of a second even for the largest networks; only models that
pass are built with random weights, quantized on a few random images and converted with each
coding, and the SNN is run on one image. Results are cached per snnconvert/torch/torchvision
version in ``$XDG_CACHE_HOME/snnconvert/`` (``~/.cache``); ``refresh=True`` recomputes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

CHECK_SIZE = 32
"""Side of the square input used for the check (models that need more get their own size)."""
CHECK_CODINGS = ("rate", "sws")
SMALL_SETTINGS: dict[str, dict[str, object]] = {
    "rate": {"T": 2}, "sws": {"Tc": 8, "Ts": 0}, "mlif": {"T": 1}, "multibit": {"T": 1},
}
"""Cheap settings per coding: conversion succeeds or fails the same way at any T."""


@dataclass
class ConversionCheck:
    """One architecture: whether it prepares (support check, quantization) and converts per coding."""

    name: str
    family: str
    prepares: bool
    codings: dict[str, str] = field(default_factory=dict)  # coding -> "yes" or the one-line reason
    reason: str | None = None  # why preparation failed (a grouped summary)
    seconds: float = 0.0

    def converts(self, coding: str) -> bool:
        return self.codings.get(coding) == "yes"


def cache_path(codings: Iterable[str]) -> Path:
    """Where results for this snnconvert / torch / torchvision and coding list are cached."""
    import torch
    import torchvision

    from snnconvert._version import __version__

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snnconvert"
    key = f"snnconvert{__version__}-torch{torch.__version__}-tv{torchvision.__version__}-{'-'.join(codings)}"
    return base / f"models-check-{key.replace('+', '_')}.json"


def _reason(exc: BaseException) -> str:
    summary = getattr(exc, "summary", None)
    if summary:
        return str(summary)[:300]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _random_batches(spec, n: int = 2, batches: int = 2):
    import torch

    generator = torch.Generator().manual_seed(0)
    return [(torch.rand((n, *spec.example_shape(1)[1:]), generator=generator), torch.zeros(n, dtype=torch.long))
            for _ in range(batches)]


def meta_support(name: str, spec, native) -> tuple[bool | None, str | None]:
    """Prepare ``name`` on the meta device (at ``spec``, then at its own size ``native``):
    ``(True, None)`` when it prepares, ``(False, reason)`` when the support check refuses it,
    ``(None, error)`` when the meta device cannot tell (the real run decides)."""
    import torch

    from snnconvert.errors import UnsupportedGraphError
    from snnconvert.graph import prepare
    from snnconvert.ingest import load_model

    error = None
    for size in (spec.size, native.size):
        try:
            with torch.device("meta"):
                prepare(load_model(name, "random").module, replace(spec, size=size))
        except UnsupportedGraphError as exc:
            return False, _reason(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. too small an input: try the model's own size
            error = _reason(exc)
            continue
        return True, None
    return None, error


def check_model(name: str, codings: Iterable[str] = CHECK_CODINGS, *, size: int = CHECK_SIZE) -> ConversionCheck:
    """Prepare, quantize and convert ``name`` with random weights on a ``size`` x ``size`` input."""
    import torch

    from snnconvert.codings import ConversionInputs, build_config, get_coding
    from snnconvert.data import InputSpec
    from snnconvert.errors import SnnConvertError
    from snnconvert.graph import prepare
    from snnconvert.ingest import load_model
    from snnconvert.quantize import QuantizeConfig, quantize_graph
    from snnconvert.stages import convert_with

    start = time.perf_counter()
    codings = tuple(codings)
    try:
        with torch.device("meta"):
            probe = load_model(name, "random")
    except Exception:  # noqa: BLE001 - a builder that computes with tensors (RegNet): build it for real
        probe = load_model(name, "random")
    family = "bundled" if probe.source.startswith("bundled") else "torchvision"
    native: InputSpec = probe.input_spec
    del probe
    spec = replace(native, size=(min(size, native.size[0]), min(size, native.size[1])), resize=None)
    supported, reason = meta_support(name, spec, native)
    if supported is False:
        return ConversionCheck(name, family, False, {c: "no" for c in codings}, reason,
                               time.perf_counter() - start)
    torch.manual_seed(0)
    loaded = load_model(name, "random")
    try:
        try:
            float_gm = prepare(loaded.module, spec)
        except SnnConvertError as exc:
            if "does not run on an input" not in str(exc) or spec == native:
                raise
            spec = replace(native, resize=None)  # too small for this network: its own size
            float_gm = prepare(loaded.module, spec)
        batches = _random_batches(spec)
        config = QuantizeConfig(bits=8, calib_limit=4, batch_size=2)
        quantized = quantize_graph(float_gm, batches, config, example_shape=spec.example_shape(2)).model
    except Exception as exc:  # noqa: BLE001 - recorded as the reason
        return ConversionCheck(name, family, False, {c: "no" for c in codings}, _reason(exc),
                               time.perf_counter() - start)
    result = ConversionCheck(name, family, True)
    image = batches[0][0][:1]
    for coding in codings:
        try:
            entry = get_coding(coding)
            cfg = build_config(entry, None, **SMALL_SETTINGS.get(coding, {}))
            snn = convert_with(ConversionInputs(float_gm, quantized, spec, batches), coding, cfg)
            with torch.no_grad():
                out = snn(image)
            if tuple(out.shape) != (1, loaded.num_classes) or not bool(torch.isfinite(out).all()):
                raise SnnConvertError(f"the SNN gives output {tuple(out.shape)} (finite: "
                                      f"{bool(torch.isfinite(out).all())})")
            result.codings[coding] = "yes"
        except Exception as exc:  # noqa: BLE001 - recorded as the reason
            result.codings[coding] = _reason(exc)
    result.seconds = time.perf_counter() - start
    return result


def cached_checks(codings: Iterable[str] = CHECK_CODINGS) -> dict[str, ConversionCheck]:
    """The results a previous check cached for this version (nothing is computed)."""
    path = cache_path(tuple(codings))
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return {name: ConversionCheck(**entry) for name, entry in data.items()}
    except (OSError, ValueError, TypeError):
        return {}


def check_models(names: Iterable[str] | None = None, codings: Iterable[str] = CHECK_CODINGS, *,
                 refresh: bool = False, use_cache: bool = True,
                 on_model: Callable[[int, int, str], None] | None = None) -> list[ConversionCheck]:
    """:func:`check_model` for ``names`` (default: every model ``snnconvert models`` lists), reusing
    cached results unless ``refresh``. ``on_model(i, n, name)`` hears each model start."""
    from snnconvert.atomic import write_json_atomically
    from snnconvert.ingest import list_models

    codings = tuple(codings)
    names = list(names) if names is not None else [e.name for e in list_models()]
    path = cache_path(codings)
    cached: dict[str, dict] = {}
    if use_cache and not refresh and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cached = {}
    results = []
    for i, name in enumerate(names):
        if on_model is not None:
            on_model(i + 1, len(names), name)
        if name in cached and isinstance(cached[name], dict):
            try:
                results.append(ConversionCheck(**cached[name]))
                continue
            except TypeError:
                pass
        check = check_model(name, codings)
        results.append(check)
        cached[name] = asdict(check)
        if use_cache:
            try:
                write_json_atomically(path, cached)  # after each model: an interrupted check keeps its work
            except OSError:
                use_cache = False
    return results
