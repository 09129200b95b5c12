"""ONNX float ingest: torch -> ONNX -> snnconvert gives the torch logits; malformed files get one-line errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision
from helpers import randomize_batchnorm, reference_session
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from snnconvert.errors import SnnConvertError, UnsupportedGraphError
from snnconvert.ingest import load_model
from snnconvert.ingest.onnx import META_MEAN, META_STD, load_onnx


def export(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int = 17) -> Path:
    """Export with the TorchScript exporter and a dynamic batch axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(shape), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    return path


def _check_equivalent(model: nn.Module, shape: tuple[int, ...], path: Path, atol: float = 1e-5,
                      opset: int = 17) -> None:
    export(model, shape, path, opset)
    loaded = load_onnx(path)
    x = torch.rand(3, *shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        got = loaded.module(x)
    assert loaded.input_spec.size == tuple(shape[2:])
    assert loaded.num_classes == ref.shape[1]
    tol = atol * max(1.0, float(ref.abs().max()))  # 1e-5 relative to the logits' scale (float32 sums)
    torch.testing.assert_close(got, ref, atol=tol, rtol=0)
    out = reference_session(path).run(None, {"x": x.numpy()})[0]  # unfused: the graph as written
    np.testing.assert_allclose(out, got.numpy(), atol=tol, rtol=0)


@pytest.mark.parametrize("name,shape", [("lenet5", (1, 1, 8, 8)), ("resnet20", (1, 3, 32, 32))])
def test_bundled_models_same_logits(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    model = randomize_batchnorm(load_model(name, "random").module)
    _check_equivalent(model, shape, tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("opset", [11, 13])
def test_older_opsets(tmp_path: Path, opset: int) -> None:
    """Opset 11 (the oldest read) and 13 spell Pad/Slice/Clip/Flatten differently than 17."""
    model = randomize_batchnorm(load_model("resnet20", "random").module)
    _check_equivalent(model, (1, 3, 32, 32), tmp_path / "r.onnx", opset=opset)
    torch.manual_seed(0)
    _check_equivalent(_Ops().eval(), (1, 3, 8, 8), tmp_path / "ops.onnx", opset=opset)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_models_same_logits(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.get_model(name, num_classes=10))
    _check_equivalent(model, (1, 3, 64, 64), tmp_path / f"{name}.onnx")


@pytest.mark.slow
def test_vgg16_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.vgg16(num_classes=10).eval()
    _check_equivalent(model, (1, 3, 224, 224), tmp_path / "vgg16.onnx", atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet32", "resnet44", "resnet56"])
def test_deeper_cifar_resnets_same_logits(tmp_path: Path, name: str) -> None:
    model = randomize_batchnorm(load_model(name, "random").module)
    _check_equivalent(model, (1, 3, 32, 32), tmp_path / f"{name}.onnx")


class _Ops(nn.Module):
    """Every op of the importer's list that the bundled models do not use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=(1, 2), bias=False)
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.clamp(self.conv(x), 0, 6)[:, :, :, 1:-1]  # Clip(0, 6), Slice
        b = nn.functional.pad(a, (1, 1, 1, 1)) * 0.5  # Pad, Mul by a constant
        c = torch.cat([b, nn.functional.avg_pool2d(b, 3, 1, 1, count_include_pad=False)], 1)  # Concat, AvgPool
        d = torch.relu(self.conv2(c))
        e = nn.functional.max_pool2d(d, 5).reshape(x.shape[0], -1)  # MaxPool, Reshape
        return e @ self.fc.weight.t() + self.fc.bias  # MatMul + Add


def test_other_ops_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _check_equivalent(_Ops().eval(), (1, 3, 8, 8), tmp_path / "ops.onnx")


def test_quantize_accepts_onnx_path(tmp_path: Path) -> None:
    from snnconvert.pipeline import quantize
    from snnconvert.quantize import QuantizeConfig

    model = load_model("lenet5").module
    path = export(model, (1, 1, 8, 8), tmp_path / "lenet.onnx")
    proto = onnx.load(str(path))
    spec = load_model("lenet5").input_spec
    helper.set_model_props(proto, {META_MEAN: ",".join(map(str, spec.mean)), META_STD: ",".join(map(str, spec.std))})
    onnx.save(proto, str(path))
    q = quantize(str(path), data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=200)
    assert q.info.source.startswith("onnx:") and q.info.input_spec.mean == spec.mean
    assert q.accuracy is not None and q.accuracy.float_top1 > 0.9  # the bundled weights came through
    assert abs(q.accuracy.quantized_top1 - q.accuracy.float_top1) <= 0.03


def _graph(nodes: list, inits: list, out_shape: list[int], opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32) * 0.1, "w")
    return _graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c"], ["r"], name="relu"),
                   helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
                   helper.make_node("Flatten", ["p"], ["y"], name="flat")], [w], [1, 2])


def test_unsupported_ops_listed_together(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    model = _graph([
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="product"),
        helper.make_node("LeakyRelu", ["m"], ["l"], name="leaky"),
        helper.make_node("Flatten", ["l"], ["f"], name="flat"),
        helper.make_node("Softmax", ["f"], ["y"], name="probs"),
    ], [w], [1, 72])
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(UnsupportedGraphError) as err:
        load_onnx(tmp_path / "bad.onnx")
    text = str(err.value)
    for fragment in ("Sigmoid 'gate'", "Mul 'product'", "LeakyRelu 'leaky'", "Softmax 'probs'"):
        assert fragment in text
    assert len(err.value.problems) == 4 and "Conv 'conv'" not in text


def _one_line_error(path: Path) -> str:
    with pytest.raises(SnnConvertError) as err:
        load_onnx(path)
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


def test_malformed_files_one_line_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    onnx.save(_conv_model(), str(good))
    assert load_onnx(good).num_classes == 2
    data = good.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _one_line_error(tmp_path / "trunc.onnx")
    flipped = bytearray(data)
    flipped[0] ^= 0xFF
    (tmp_path / "flip.onnx").write_bytes(bytes(flipped))
    _one_line_error(tmp_path / "flip.onnx")
    for i in range(1, len(data), max(1, len(data) // 40)):  # any flip: a model or one clean line
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        (tmp_path / "flip.onnx").write_bytes(bytes(flipped))
        try:
            load_onnx(tmp_path / "flip.onnx")
        except SnnConvertError as exc:
            assert "\n" not in str(exc) or isinstance(exc, UnsupportedGraphError)
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty.onnx")
    assert "does not exist" in _one_line_error(tmp_path / "missing.onnx")

    old = _conv_model()
    old.opset_import[0].version = 9
    onnx.save(old, str(tmp_path / "old.onnx"))
    assert "opset 9" in _one_line_error(tmp_path / "old.onnx")
    new = _conv_model()
    new.opset_import[0].version = onnx.defs.onnx_opset_version() + 5
    onnx.save(new, str(tmp_path / "new.onnx"))
    assert "opset" in _one_line_error(tmp_path / "new.onnx")

    missing = _conv_model()
    del missing.graph.initializer[:]
    onnx.save(missing, str(tmp_path / "noinit.onnx"))
    _one_line_error(tmp_path / "noinit.onnx")


def test_external_data_confined_to_model_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    model = _conv_model()
    onnx.external_data_helper.convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                                             location="weights.bin", size_threshold=0)
    onnx.save(model, str(folder / "m.onnx"))
    assert load_onnx(folder / "m.onnx").num_classes == 2  # next to the file: read
    (tmp_path / "evil.bin").write_bytes((folder / "weights.bin").read_bytes())
    for location in ("../evil.bin", str(tmp_path / "evil.bin")):
        proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(proto, str(folder / "escape.onnx"))
        assert "outside the model's folder" in _one_line_error(folder / "escape.onnx")
    (folder / "weights.bin").unlink()
    assert "missing" in _one_line_error(folder / "m.onnx")
