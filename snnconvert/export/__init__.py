"""Export of converted networks: one registry of formats, ONNX
(:func:`~snnconvert.export.onnx.export_onnx`) and NIR (:func:`~snnconvert.export.nir.export_nir`).

A format is an :class:`ExportFormat` registered with :func:`register_export_format` (the two
built-in modules register on first use; a plugin registers the same way from its method
package); ``snnconvert export --format NAME`` looks it up and prints what ``write`` returns."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnconvert.options import option
from snnconvert.registry import Registry, load_methods

BUILT_IN = ("onnx", "nir")


@dataclass(frozen=True)
class ExportRequest:
    """What the command line asks of a format: the per-image input shape and the ONNX options
    (a format ignores what it has no use for); ``export``'s flags are generated from the options."""

    image_shape: tuple[int, ...] = option((), cli=False, help="Per-image input shape (C, H, W).")
    mode: str = option("unrolled", help="ONNX: unrolled (one graph over all time steps) or step (one time step, "
                                        "state in and state out; rate/IF, M-LIF and neurons with a one-step update).")
    spikes: bool = option(False, help="ONNX: add every neuron layer's spike frames as outputs.")
    nir_dt: float = option(1e-4, help="NIR: the time step the file states, in seconds (IF r = 1/dt; the default "
                                      "is SpikingJelly's; pass the same dt to the tool that reads the file).")
    nir_pool: str = option("avg", help="NIR: average pooling as avg (AvgPool2d: SpikingJelly) or sum (SumPool2d "
                                       "with 1/k^2 folded into the next layer: norse, sinabs).")
    nir_reset: str = option("hard", help="NIR: what a spike does to a membrane in the file: hard (NIR's IF/LIF: "
                                         "set to 0; convert with --reset zero) or subtract (subtract the threshold, "
                                         "the rate coding's default reset, stated in the file's metadata: "
                                         "SpikingJelly and sinabs run it when told, norse's IF cannot).")
    nir_order: str = option("depth-first", help="NIR: depth-first (zero-weight nodes that make tools running the "
                                                "graph depth-first, norse and sinabs, run a residual network's "
                                                "branches in order; one per branch) or plain (the graph alone).")
    nir_inexact: bool = option(False, help="NIR: write neurons NIR's IF/LIF would run differently (reset by "
                                           "subtraction, start at theta/2) anyway; the file's metadata lists how.")


@dataclass(frozen=True)
class ExportFormat:
    """``write(snn, path, request)`` writes ``path`` atomically and returns a JSON-compatible
    summary with at least ``path`` and ``nodes``; ``describe(info)`` is the terminal's short
    account of it (e.g. ``"42 nodes"``)."""

    name: str
    summary: str
    write: Callable[[Any, Path, ExportRequest], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]


@functools.cache
def _load_formats() -> None:
    for name in BUILT_IN:
        importlib.import_module(f"{__name__}.{name}")
    load_methods()


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", load=_load_formats)
"""Every export format by name."""


def register_export_format(fmt: ExportFormat) -> ExportFormat:
    """Add ``fmt`` to the table; returns it."""
    return EXPORT_FORMATS.register(fmt.name, fmt)
