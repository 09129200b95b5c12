"""ONNX from torch's default exporter (``dynamo=True``): ReduceMean as global average pooling, n-ary
Sum, and refusals grouped by cause (issue 28, item 4)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from helpers import randomize_batchnorm
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from torch import nn

from snnconvert.errors import UnsupportedGraphError
from snnconvert.ingest.onnx import load_onnx

pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (the dev extra)")

LOGIT_TOLERANCE = 1e-5
"""Float32 logits of two implementations of the same graph differ by summation order only: a
few ulps per accumulation, far below 1e-5 of the logits' scale for these depths."""


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's logits with graph optimizations off (its reference kernels, no fusions)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _dynamo_export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (torch.zeros(shape),), dynamo=True, verbose=False)
    program.save(str(path))
    return path


def _check_logits(model: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    loaded = load_onnx(path)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = loaded.module(x)
        ref = model(x)
    scale = max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(got, ref, atol=LOGIT_TOLERANCE * scale, rtol=0)
    for i in range(len(x)):  # the exporter fixes the batch at 1
        np.testing.assert_allclose(_reference(path, x[i:i + 1].numpy()), got[i:i + 1].numpy(),
                                   atol=LOGIT_TOLERANCE * scale, rtol=0)


class _SmallCNN(nn.Module):
    """Conv-BN-ReLU, a residual add, global average pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.stem(x)
        y = torch.relu(self.block(y) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def test_a_dynamo_export_with_reduce_mean_imports_with_the_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(_SmallCNN()).eval()
    path = _dynamo_export(model, (1, 3, 16, 16), tmp_path / "small.onnx")
    assert "ReduceMean" in {n.op_type for n in onnx.load(str(path)).graph.node}  # what the exporter writes
    _check_logits(model, (4, 3, 16, 16), path)


def _model(nodes: list, inits: list, out_shape: list[int], opset: int = 17,
           in_shape: tuple[int, ...] = (1, 3, 4, 4)) -> onnx.ModelProto:
    """``nodes`` computing "y" of ``out_shape``, then a Flatten to "logits" (a classifier's N x K)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    flat = [out_shape[0], int(np.prod(out_shape[1:]))]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, flat)
    nodes = [*nodes, helper.make_node("Flatten", ["y"], ["logits"], name="flatten")]
    graph = helper.make_graph(nodes, "g", [x], [logits], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(proto: onnx.ModelProto, path: Path) -> Path:
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("opset,keepdims,axes_as_input", [(13, 1, False), (13, 0, False), (18, 1, True),
                                                          (18, 0, True)])
def test_reduce_mean_over_the_spatial_axes(tmp_path: Path, opset: int, keepdims: int, axes_as_input: bool) -> None:
    inits, inputs, attrs = [], ["x"], {"keepdims": keepdims}
    if axes_as_input:
        inits.append(numpy_helper.from_array(np.array([-2, -1], np.int64), "axes"))
        inputs.append("axes")
    else:
        attrs["axes"] = [2, 3]
    out_shape = [1, 3, 1, 1] if keepdims else [1, 3]
    path = _save(_model([helper.make_node("ReduceMean", inputs, ["y"], name="mean", **attrs)], inits, out_shape,
                        opset), tmp_path / "m.onnx")
    x = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
    got = load_onnx(path).module(torch.from_numpy(x)).detach().numpy()
    expected = x.mean(axis=(2, 3))  # channel c: 16c + 7.5
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.reshape(-1).tolist() == [7.5, 23.5, 39.5]
    np.testing.assert_allclose(_reference(path, x), got, rtol=0, atol=1e-6)


def test_reduce_mean_over_channels_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = _save(_model([helper.make_node("ReduceMean", ["x"], ["y"], name="chmean", axes=[1], keepdims=1)], [],
                        [1, 1, 4, 4], 13), tmp_path / "c.onnx")
    with pytest.raises(UnsupportedGraphError) as info:
        load_onnx(path)
    assert "ReduceMean 'chmean': a mean over axes [1]" in str(info.value)


def test_an_n_ary_sum_of_activations(tmp_path: Path) -> None:
    w = [numpy_helper.from_array(np.full((3, 3, 1, 1), v, np.float32), f"w{i}") for i, v in enumerate((1, 2, -1))]
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], name=f"conv{i}") for i in range(3)]
    nodes.append(helper.make_node("Sum", ["c0", "c1", "c2"], ["y"], name="sum"))
    path = _save(_model(nodes, w, [1, 3, 4, 4]), tmp_path / "s.onnx")
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    got = load_onnx(path).module(torch.from_numpy(x)).detach().numpy()
    expected = np.broadcast_to(2 * x.sum(axis=1, keepdims=True), (1, 3, 4, 4)).reshape(1, -1)  # (1+2-1) * sum
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_reference(path, x), got, rtol=0, atol=1e-5)


def test_refusals_are_grouped_by_cause_in_one_line(tmp_path: Path) -> None:
    nodes, previous = [], "x"
    for i in range(5):
        nodes.append(helper.make_node("Sigmoid", [previous], [f"s{i}"], name=f"sig{i}"))
        previous = f"s{i}"
    nodes += [helper.make_node("Tanh", [previous], ["t0"], name="tanh0"),
              helper.make_node("Tanh", ["t0"], ["y"], name="tanh1")]
    path = _save(_model(nodes, [], [1, 3, 4, 4]), tmp_path / "g.onnx")
    with pytest.raises(UnsupportedGraphError) as info:
        load_onnx(path)
    summary = info.value.summary
    assert "\n" not in summary
    assert summary.startswith("7 unsupported nodes for ONNX import of g.onnx: 5 Sigmoid (")
    assert "2 Tanh (operator not supported by snnconvert)" in summary
    assert len(info.value.problems) == 7  # -v still lists every node


def test_a_file_name_that_is_no_identifier_still_imports(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    path = _save(_model(nodes, [], [1, 3, 4, 4]), tmp_path / "1 my-model (copy).onnx")
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(load_onnx(path).module(x), torch.relu(x).flatten(1))


# ---------------------------------------------------------------------------- torchvision, then SWS


def _image_folder(root: Path, classes: int = 10, per_class: int = 6, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1"])
def test_dynamo_exported_torchvision_cnns_import_with_the_same_logits(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.get_model(name, num_classes=10)).eval()
    _check_logits(model, (2, 3, 32, 32), _dynamo_export(model, (1, 3, 32, 32), tmp_path / f"{name}.onnx"))


@pytest.mark.slow
def test_a_dynamo_exported_resnet18_converts_exactly_with_sws(tmp_path: Path) -> None:
    """Tc=8, Ts=8 in float64: every layer's integer arrives before its silent period ends, so the
    SNN's argmax equals the quantized ANN's on every image (issue 27 measured the same on
    torchvision models)."""
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.pipeline import quantize, to_snn
    from snnconvert.quantize import QuantizeConfig

    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.get_model("resnet18", num_classes=10)).eval()
    path = _dynamo_export(model, (1, 3, 32, 32), tmp_path / "resnet18.onnx")
    data = f"imagefolder:{_image_folder(tmp_path / 'images', per_class=10)}"
    q = quantize(str(path), data=data, config=QuantizeConfig(calib_limit=20), eval_limit=0)
    snn = to_snn(q, "sws", Tc=8, Ts=8)
    report = evaluate(q, snn, EvaluateConfig(data=data, limit=50, reports=("accuracy",), dtype="float64"))
    assert report.accuracy.images == 50
    assert report.accuracy.agreement_snn_quantized == 1.0
