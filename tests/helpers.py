"""Helpers shared by test modules (import with ``from helpers import ...``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import fx, nn

SHARED_DATA = Path(os.environ.get("SNNCONVERT_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch-norm non-trivial statistics (random-weight models are otherwise identity-BN)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = m.num_features
            m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(n, generator=g) - 0.3) * 0.4)
    return model.eval()


def quantize_random(model: nn.Module, spec, bits: int = 8, images: int = 32, seed: int = 0) -> fx.GraphModule:
    """Prepare and post-training quantize ``model`` on uniform random images."""
    from snnconvert.graph import prepare
    from snnconvert.quantize import QuantizeConfig, quantize_graph

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(images, *spec.example_shape(1)[1:], generator=g)
    calib = [(x[i:i + 16], torch.zeros(len(x[i:i + 16]), dtype=torch.long)) for i in range(0, images, 16)]
    return quantize_graph(prepare(model, spec), calib, QuantizeConfig(bits=bits, clip_method="max"),
                          example_shape=spec.example_shape(2)).model


def reference_session(model: str | Path | bytes):
    """An onnxruntime CPU session on its reference path, for comparisons that must hold on any x86-64 CPU.

    With graph optimization off, onnxruntime runs the graph as written: no Conv+BN/ReLU fusion, no
    NCHWc layout whose blocking depends on the vector width, and Q/DQ pairs stay DequantizeLinear ->
    float op -> QuantizeLinear instead of fused int8 kernels (whose u8s8 products, saturation and
    requantization differ between VNNI, AVX2 and SSE). Only float32 summation order still varies.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def cli_ok(args: list[str]) -> str:
    """Run ``snnconvert ARGS`` in process (wide columns); assert it succeeded; its output."""
    from typer.testing import CliRunner

    from snnconvert.cli.app import app

    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def sws_against_exact(model: nn.Module, spec, images: int = 4) -> float:
    """SWS at Ts = Tc (every layer emits the quantized ANN's integer): the largest logit difference
    from the exact integer reference, relative to the logit scale."""
    from snnconvert.codings import ConversionInputs, build_config, get_coding
    from snnconvert.evaluate.run import in_dtype
    from snnconvert.graph import prepare
    from snnconvert.quantize.exact import exact_logits
    from snnconvert.stages import convert_with

    q = quantize_random(model, spec)
    x = torch.rand(16, *spec.example_shape(1)[1:], generator=torch.Generator().manual_seed(1))
    snn = convert_with(ConversionInputs(prepare(model, spec), q, spec, [(x, torch.zeros(16, dtype=torch.long))]),
                       "sws", build_config(get_coding("sws"), None, Tc=8, Ts=8))
    test = torch.rand(images, *spec.example_shape(1)[1:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = in_dtype(snn, torch.float64)(test.double())
    expected = exact_logits(q, test)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    return float((got - expected).abs().max() / expected.abs().max())
