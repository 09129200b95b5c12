"""QDQ ingest: models quantized by onnxruntime become quantized artifacts that match onnxruntime,
and their SWS networks at Ts = Tc reproduce them exactly in float64."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import randomize_batchnorm, reference_session
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from torch import nn

from snnconvert.errors import SnnConvertError
from snnconvert.ingest import load_model
from snnconvert.pipeline import quantized_from_onnx, to_snn
from snnconvert.quantize import ActQuant, QConv2d, QLinear
from snnconvert.quantize.quantizer import INPUT_QUANT

logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's quantizer logs a pre-processing advice

# Teacher-forced comparison with onnxruntime's reference QDQ path.
#
# onnxruntime's default session fuses DQ -> op -> Q into int8 kernels (QLinearConv, QLinearAdd, ...) whose
# arithmetic differs by CPU (VNNI / AVX2 u8s8 with int16 saturation / SSE, and their requantization), so
# it is compared through ORT_DISABLE_ALL: every Q/DQ node runs as written (DequantizeLinear -> float32 op
# -> QuantizeLinear, ONNX semantics). What then still differs from snnconvert is float32 arithmetic
# (MLAS sums in a CPU-dependent order, with or without FMA) and the rounding of exact ties (ONNX to even,
# snnconvert half up). Both only move a value across a rounding boundary when it lies next to one, so a
# code can differ by one step there and nowhere else. End to end, such flips are chaotic: a flipped
# activation changes whole receptive fields downstream, and 19 random layers turn 1e-5 of the first
# layer's outputs into steps on the logits (which outputs flip depends on the CPU; seen: 2-3 logit steps
# and 1 in 300 argmaxes). So each quantizer is checked on onnxruntime's own inputs (teacher forcing):
# snnconvert's quantizers are fed onnxruntime's codes from the layer before, and must then agree with
# onnxruntime's next codes exactly, but for a step at a near-tie.
#
# The tie tolerance TIE_STEPS bounds |t_ours - t_ort|, t being a quantizer's input in steps of its scale
# (x / C + Z'). Both sides compute the same real number in float32 from identical codes, scales and
# weights; only the order of summing the n <= 577 products (3 x 3 x 64 weights and a bias), FMA or not,
# and the roundings of the residual Add, the zero-point shift and the division by C differ. The worst
# case n * 2^-24 * sum|terms| / C per side (sum|terms| / C reaches 1800 steps in these nets: 0.06 steps)
# takes every rounding error maximal and of one sign; they add like a random walk instead,
# sqrt(n) * 2^-24 * sum|terms| / C = 2.6e-3 steps at that extreme. TIE_STEPS = 2^-8 (3.9e-3 steps) covers
# that; the gaps measured are <= 2e-4 steps (AVX-512 here) and the check passes on SSE-only kernels
# (tests/portable/run_generic_kernels.sh). Real mistakes are far above it: a wrong zero point or bias
# moves codes by whole steps, a scale off by 1e-4 moves code 255 by 0.025 steps.
TIE_STEPS = 2.0**-8


class _Reader(CalibrationDataReader):
    def __init__(self, images: np.ndarray) -> None:
        self.batches = iter([{"x": images[i:i + 16]} for i in range(0, len(images), 16)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def _export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(shape), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    return path


def ort_quantize(float_path: Path, out: Path, shape: tuple[int, ...], *, method: CalibrationMethod,
                 activations: QuantType = QuantType.QUInt8, **extra) -> Path:
    """Quantize with onnxruntime (QDQ, per-channel int8 weights). ``reduce_range`` (7-bit weights)
    keeps onnxruntime's fused u8s8 kernels from saturating on CPUs without VNNI (its default session;
    the comparisons below use the unfused reference path, which follows the QDQ semantics anyway)."""
    calib = torch.rand(64, *shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
    options = {"CalibPercentile": 99.9} if method == CalibrationMethod.Percentile else {}
    quantize_static(str(float_path), str(out), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8, calibrate_method=method,
                    reduce_range=True, extra_options=options, **extra)
    return out


_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


@dataclass(frozen=True)
class _Quantizer:
    """An activation QuantizeLinear: its float input, its integer output and its parameters."""

    source: str
    codes: str
    scale: float
    zero_point: int
    qmin: int
    qmax: int
    elem: int  # the ONNX element type of the codes


def _quantizers(model: onnx.ModelProto) -> list[_Quantizer]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:  # weights are stored quantized
            zp = inits[node.input[2]]
            qmin, qmax = _RANGES[zp.dtype.name]
            found.append(_Quantizer(node.input[0], node.output[0], float(inits[node.input[1]]), int(zp), qmin, qmax,
                                    onnx.helper.np_dtype_to_tensor_dtype(zp.dtype)))
    return found


def _with_outputs(model: onnx.ModelProto, extra: list[tuple[str, int]]) -> bytes:
    """``model`` with the tensors ``extra`` (name, ONNX element type) as graph outputs too."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, elem, None)
                              for name, elem in extra if name not in known)
    return model.SerializeToString()


def _module_for(q, model: onnx.ModelProto, source: str) -> tuple[str, nn.Module] | None:
    """snnconvert's quantizer for an ONNX one (named after its source tensor, see the ingest's builder)."""
    modules = dict(q.model.named_modules())
    if source == model.graph.input[0].name:
        return INPUT_QUANT, modules[INPUT_QUANT]
    base = re.sub(r"\W+", "_", source).strip("_").lower()
    for name in (f"{base}_quant", f"{base}_input_pad"):
        if name in modules:
            return name, modules[name]
    return None  # a Q/DQ pair on an already quantized tensor (max-pool, flatten): snnconvert drops it


def _compare_forced(path: Path, q, x: torch.Tensor) -> dict[str, int]:
    """Feed snnconvert's quantizers onnxruntime's codes and check each layer's codes against onnxruntime's:
    equal but for one step where the input lies within TIE_STEPS of a rounding tie. Returns the number
    of codes that differ per quantizer."""
    model = onnx.load(str(path))
    quants = _quantizers(model)
    extra = [(qz.source, onnx.TensorProto.FLOAT) for qz in quants]
    extra += [(qz.codes, qz.elem) for qz in quants]
    ref = reference_session(_with_outputs(model, extra))
    ref_out = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, {"x": x.numpy()}), strict=True))
    pre: dict[str, torch.Tensor] = {}
    got: dict[str, torch.Tensor] = {}
    hooks, checked = [], []
    for qz in quants:
        found = _module_for(q, model, qz.source)
        if found is None:
            continue
        name, module = found
        # the integer code snnconvert's module stands for is round(out / C) + zp, zp its own zero point
        zp = float(module.zero_point) if isinstance(module, ActQuant) else qz.zero_point - qz.qmin
        codes = torch.from_numpy(ref_out[qz.codes].astype(np.float32) - qz.qmin)
        forced = (codes - zp) * torch.tensor(qz.scale, dtype=torch.float32)

        def replace(_m, _i, out, name=name, forced=forced, zp=zp, scale=qz.scale):
            got[name] = torch.round(out.detach().double() / scale) + zp
            return forced

        hooks.append(module.register_forward_hook(replace))
        if isinstance(module, ActQuant):
            def record(m, args, name=name):
                pre[name] = (args[0].detach() / m.scale.detach()).double() + m.zero_point.double()

            hooks.append(module.register_forward_pre_hook(record))
        checked.append((name, qz, codes.double()))
    try:
        with torch.no_grad():
            q.model(x)
    finally:
        for h in hooks:
            h.remove()
    flips = {}
    for name, qz, codes in checked:
        top = qz.qmax - qz.qmin
        source = torch.from_numpy(ref_out[qz.source])
        t_ref = torch.clamp((source / torch.tensor(qz.scale)).double() + (qz.zero_point - qz.qmin), 0, top)
        if name in pre:
            gap = (torch.clamp(pre[name], 0, top) - t_ref).abs().max().item()
            assert gap <= TIE_STEPS, (name, gap)
        diff = got[name] - codes
        assert diff.abs().max().item() <= 1, name
        near_tie = ((t_ref - torch.floor(t_ref)) - 0.5).abs() <= TIE_STEPS
        assert bool(near_tie[diff != 0].all()), name
        flips[name] = int((diff != 0).sum())
        # a band of 2 TIE_STEPS around the ties holds that share of evenly spread values: far fewer flips
        assert flips[name] <= 2 * TIE_STEPS * diff.numel(), name
    return flips


def _compare_with_ort(path: Path, q, shape: tuple[int, ...], images: int = 500) -> None:
    x = torch.rand(images, *shape[1:], generator=torch.Generator().manual_seed(5))
    flips = _compare_forced(path, q, x)
    assert len(flips) >= len(q.layers)  # every layer's output quantizer was checked
    # End to end (not forced) the flips compound into a few logit steps, and an argmax changes only
    # where the top two logits are that close: 1 image in 300 on the pretrained ResNet-20, none elsewhere.
    ours = q.model(x).detach().numpy()
    theirs = reference_session(path).run(None, {"x": x.numpy()})[0]
    assert float((ours.argmax(1) == theirs.argmax(1)).mean()) >= 0.99


def _sws_exact(q, shape: tuple[int, ...]) -> None:
    snn = to_snn(q, coding="sws", Tc=8, Ts=8)
    x = torch.rand(8, *shape[1:], generator=torch.Generator().manual_seed(7)).double()
    with torch.no_grad():
        expected = q.model.double()(x)
        got = snn(x)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


@pytest.fixture(scope="module")
def lenet_float(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lenet")
    torch.manual_seed(0)
    return _export(randomize_batchnorm(load_model("lenet5", "random").module), (1, 1, 8, 8), folder / "lenet.onnx")


@pytest.mark.parametrize("method", [CalibrationMethod.MinMax, CalibrationMethod.Percentile])
def test_lenet5_qdq_matches_onnxruntime_and_sws_is_exact(lenet_float: Path, method: CalibrationMethod) -> None:
    shape = (1, 1, 8, 8)
    path = ort_quantize(lenet_float, lenet_float.parent / f"lenet_{method.name}.onnx", shape, method=method)
    q = quantized_from_onnx(path, eval_limit=0)
    layers = [m for m in q.model.modules() if isinstance(m, (QConv2d, QLinear))]
    assert len(layers) == 5 and len(q.layers) == 5
    assert all(m.w_scale.numel() == m.weight.shape[0] and m.w_scale_frozen for m in layers)  # per channel
    assert q.layers[0].inputs[0].name == "input_quant"
    _compare_with_ort(path, q, shape)
    _sws_exact(q, shape)


def test_resnet20_signed_activations_exact(tmp_path: Path) -> None:
    """int8 activations: zero points are not 0 and values are signed; SWS stays exact."""
    shape = (1, 3, 32, 32)
    torch.manual_seed(0)
    model = randomize_batchnorm(load_model("resnet20", "random").module)
    float_path = _export(model, shape, tmp_path / "resnet20.onnx")
    path = ort_quantize(float_path, tmp_path / "resnet20_q.onnx", shape, method=CalibrationMethod.MinMax,
                        activations=QuantType.QInt8)
    q = quantized_from_onnx(path, eval_limit=0)
    # Layer by layer (teacher forced) the codes are onnxruntime's but for ~1e-5 near-ties. End to end,
    # random weights amplify such flips through 19 layers (seed 0: up to 3 logit steps, no argmax
    # changed; some other seeds change a few % of the argmaxes).
    _compare_with_ort(path, q, shape, images=300)
    _sws_exact(q, shape)


def test_cli_pipeline_on_qdq_file(lenet_float: Path, tmp_path: Path) -> None:
    from snnconvert.pipeline import load, quantize, save

    path = ort_quantize(lenet_float, tmp_path / "lenet_q.onnx", (1, 1, 8, 8), method=CalibrationMethod.MinMax)
    q = quantize(str(path), data="digits", eval_limit=100)  # a QDQ file: no re-calibration
    assert q.info.source.startswith("onnx:") and q.accuracy is not None and q.accuracy.images == 100
    snn = to_snn(q, coding="sws", Tc=8, Ts=2)
    saved = save(tmp_path / "run.snnc", q, snn)
    q2, snn2 = load(saved)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(q2.model(x), q.model(x))
    torch.testing.assert_close(snn2(x), snn(x))


def test_unquantized_input_is_refused(lenet_float: Path, tmp_path: Path) -> None:
    model = onnx.load(str(lenet_float))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    path = ort_quantize(lenet_float, tmp_path / "partial.onnx", (1, 1, 8, 8), method=CalibrationMethod.MinMax,
                        nodes_to_exclude=[first_conv])
    with pytest.raises(SnnConvertError, match="does not quantize its input"):
        quantized_from_onnx(path, eval_limit=0)
    with pytest.raises(SnnConvertError, match="float model"):
        quantized_from_onnx(lenet_float, eval_limit=0)


class _FakeQuant(nn.Module):
    """A model with torch's own fake quantization (exported as QuantizeLinear/DequantizeLinear)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, 1 / 255, 0, 0, 255)
        scale = self.conv.weight.detach().abs().amax((1, 2, 3)) / 127
        w = torch.fake_quantize_per_channel_affine(self.conv.weight, scale, torch.zeros(4, dtype=torch.int32), 0,
                                                   -128, 127)
        y = torch.relu(nn.functional.conv2d(x, w, self.conv.bias, padding=1))
        y = torch.fake_quantize_per_tensor_affine(y, 0.01, 0, 0, 255)
        y = nn.functional.max_pool2d(y, 2).flatten(1)
        return self.fc(y)


def test_torch_fake_quant_export(tmp_path: Path) -> None:
    model = _FakeQuant().eval()
    path = _export(model, (1, 1, 8, 8), tmp_path / "fq.onnx")
    q = quantized_from_onnx(path, eval_limit=0)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(q.model(x), model(x), atol=1e-5, rtol=0)
    _sws_exact(q, (1, 1, 8, 8))


class _SubPadAdd(nn.Module):
    """A per-channel border as ONNX Sub -> Pad -> Add (how a folded normalization pads)."""

    def __init__(self, padding: tuple[int, ...], values: torch.Tensor) -> None:
        super().__init__()
        self.padding = padding
        self.register_buffer("values", values.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x - self.values, self.padding) + self.values


@pytest.mark.slow
def test_pretrained_resnet20_with_mean_border(shared_data: Path, tmp_path: Path) -> None:
    """The shared ResNet-20 taking raw pixels (normalization folded, mean border as Sub/Pad/Add,
    left in float by onnxruntime): the border becomes input_quant -> PadWithValues, exactly."""
    from snnconvert.graph import prepare
    from snnconvert.graph.modules import PadWithValues

    loaded = load_model("resnet20", str(shared_data / "resnet20-cifar10.th"))
    gm = prepare(loaded.module, loaded.input_spec)
    for name, module in list(gm.named_children()):
        if isinstance(module, PadWithValues):
            setattr(gm, name, _SubPadAdd(module.padding, module.values))
    shape = (1, 3, 32, 32)
    float_path = _export(gm, shape, tmp_path / "resnet20.onnx")
    border = [n.name for n in onnx.load(str(float_path)).graph.node if "input_pad" in n.name]
    path = ort_quantize(float_path, tmp_path / "resnet20_q.onnx", shape, method=CalibrationMethod.MinMax,
                        nodes_to_exclude=border)
    q = quantized_from_onnx(path, eval_limit=0)
    pads = [m for m in q.model.modules() if isinstance(m, PadWithValues)]
    assert len(pads) == 1 and q.layers[0].inputs[0].name == "input_quant"
    # teacher forced, codes differ at ~1e-5 near-ties only; end to end they compound into <= 2-3 logit
    # steps, which turns 1 argmax in 300 (a top-two margin under 2 steps; which image depends on the CPU)
    _compare_with_ort(path, q, shape, images=300)
    _sws_exact(q, shape)
