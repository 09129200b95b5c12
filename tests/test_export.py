"""SNN -> ONNX (run in onnxruntime against the simulator) and SNN -> NIR export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import reference_session

from snnconvert.errors import SnnConvertError
from snnconvert.export.onnx import export_onnx
from snnconvert.pipeline import QuantizedModel, quantize, to_snn
from snnconvert.quantize import QuantizeConfig


@pytest.fixture(scope="module")
def lenet_q() -> QuantizedModel:
    return quantize("lenet5", data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=0)


def _simulate(snn, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    net = snn.float().eval()
    captured: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.numpy()))
             for name, m in net.neurons().items()]
    try:
        with torch.no_grad():
            logits = net(x).numpy()
    finally:
        for h in hooks:
            h.remove()
    return logits, captured


@pytest.mark.parametrize("coding,options", [("rate", {"T": 8}), ("sws", {"Tc": 8, "Ts": 2}),
                                            ("mlif", {"T": 3, "S": 3})])
def test_unrolled_onnx_matches_simulator(lenet_q: QuantizedModel, tmp_path: Path, coding: str, options: dict) -> None:
    snn = to_snn(lenet_q, coding=coding, **options)
    result = export_onnx(snn, tmp_path / f"{coding}.onnx", example=torch.rand(2, 1, 8, 8), spikes=True)
    assert result.neuron_layers == list(snn.neurons())
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # another batch size than exported
    outputs = reference_session(result.path).run(None, {"images": x.numpy()})
    logits, spikes = _simulate(snn, x)
    np.testing.assert_allclose(outputs[0], logits, atol=1e-5 * max(1.0, float(np.abs(logits).max())), rtol=0)
    for name, frames in zip(result.neuron_layers, outputs[1:], strict=True):
        assert frames.shape == spikes[name].shape
        if coding == "sws":
            # float32 sums in another order can flip a signed digit at an exact tie: the spike train
            # then spells the same value another way (e.g. +1 -1 vs 0 +1); allow 1 in 10^4.
            assert float((frames != spikes[name]).mean()) <= 1e-4, name
        else:
            np.testing.assert_array_equal(frames, spikes[name], err_msg=name)


@pytest.mark.parametrize("coding,options", [("rate", {"T": 6}), ("mlif", {"T": 3, "S": 3})])
def test_step_onnx_over_T_steps_matches_simulator(lenet_q: QuantizedModel, tmp_path: Path, coding: str,
                                                  options: dict) -> None:
    snn = to_snn(lenet_q, coding=coding, **options)
    result = export_onnx(snn, tmp_path / f"{coding}-step.onnx", mode="step", example=torch.rand(2, 1, 8, 8))
    assert result.mode == "step" and result.inputs[0] == "images" and result.inputs[-1] == "readout"
    session = reference_session(result.path)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    state = [np.full((4, *result.initial_state[n][0]), result.initial_state[n][1], np.float32)
             for n in result.inputs[1:]]
    for _ in range(result.steps):
        outputs = session.run(None, {"images": x.numpy(), **dict(zip(result.inputs[1:], state, strict=True))})
        state = outputs[1:]
    logits, _ = _simulate(snn, x)
    np.testing.assert_allclose(outputs[0], logits, atol=1e-5 * max(1.0, float(np.abs(logits).max())), rtol=0)


def test_step_mode_refuses_sws(lenet_q: QuantizedModel, tmp_path: Path) -> None:
    snn = to_snn(lenet_q, coding="sws", Tc=8, Ts=2)
    with pytest.raises(SnnConvertError, match="TSANeuron") as err:
        export_onnx(snn, tmp_path / "s.onnx", mode="step", example=torch.rand(1, 1, 8, 8))
    assert "\n" not in str(err.value) and not (tmp_path / "s.onnx").exists()
    with pytest.raises(SnnConvertError, match="--mode"):
        export_onnx(snn, tmp_path / "s.onnx", mode="loop", example=torch.rand(1, 1, 8, 8))


def _avgpool_lenet() -> QuantizedModel:
    """LeNet-5 with average pooling and no folded normalization (NIR has no max-pool and no
    per-channel border pad)."""
    import copy

    from torch import nn

    from snnconvert.data import InputSpec
    from snnconvert.ingest import load_model

    model = copy.deepcopy(load_model("lenet5").module)
    model.pool1, model.pool2 = nn.AvgPool2d(2), nn.AvgPool2d(2)
    return quantize(model, data="digits", input_spec=InputSpec(1, (8, 8), None, None, None),
                    config=QuantizeConfig(calib_limit=64), eval_limit=0)


def test_nir_rate_lenet5_round_trip(tmp_path: Path) -> None:
    import nir

    from snnconvert.export.nir import export_nir

    snn = to_snn(_avgpool_lenet(), coding="rate", T=8, reset="zero", half_init=False)
    result = export_nir(snn, tmp_path / "lenet.nir", (1, 8, 8))
    graph = nir.read(str(result.path))
    assert graph.metadata["T"] == 8 and graph.metadata["dt"] == 1e-4 and result.differences == []
    assert np.all(graph.nodes["relu1"].r == 1e4) and np.all(graph.nodes["relu1"].v_reset == 0)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {"input": "Input", "conv1": "Conv2d", "relu1": "IF", "pool1": "AvgPool2d", "conv2": "Conv2d",
                     "relu2": "IF", "pool2": "AvgPool2d", "flatten": "Flatten", "fc1": "Affine", "relu3": "IF",
                     "fc2": "Affine", "relu4": "IF", "fc3": "Affine", "output": "Output"}
    chain = ["input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2",
             "relu4", "fc3", "output"]
    assert sorted(graph.edges) == sorted(zip(chain[:-1], chain[1:], strict=True))
    body = snn.body
    np.testing.assert_allclose(graph.nodes["conv1"].weight, body.conv1.weight.detach().float().numpy())
    np.testing.assert_allclose(graph.nodes["fc3"].bias, (body.fc3.bias * body.fc3.frame_bias_gain[0]).detach()
                               .float().numpy(), rtol=1e-6)
    assert np.all(graph.nodes["relu1"].v_threshold == 1.0) and graph.nodes["relu1"].v_threshold.shape == (16, 8, 8)
    assert tuple(graph.nodes["output"].output_type["output"]) == (10,)


@pytest.mark.parametrize("coding,options,neuron", [("sws", {"Tc": 8, "Ts": 2}, "TSANeuron"),
                                                   ("mlif", {"T": 2, "S": 3}, "MLIFNeuron"),
                                                   ("multibit", {}, "MultiBit")])
def test_nir_refuses_non_primitive_neurons(lenet_q: QuantizedModel, tmp_path: Path, coding: str, options: dict,
                                           neuron: str) -> None:
    from snnconvert.export.nir import export_nir

    snn = to_snn(lenet_q, coding=coding, **options)
    with pytest.raises(SnnConvertError, match=neuron) as err:
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8))
    assert "\n" not in str(err.value) and not (tmp_path / "x.nir").exists()


def test_nir_refuses_max_pooling(lenet_q: QuantizedModel, tmp_path: Path) -> None:
    from snnconvert.export.nir import export_nir

    with pytest.raises(SnnConvertError, match="RateMaxPool"):
        export_nir(to_snn(lenet_q, coding="rate", T=4), tmp_path / "x.nir", (1, 8, 8))


def test_cli_export(lenet_q: QuantizedModel, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from snnconvert.cli.app import app
    from snnconvert.pipeline import save

    artifact = save(tmp_path / "snn-rate.snnc", lenet_q, to_snn(lenet_q, coding="rate", T=4))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--input", str(artifact), "--format", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["mode"] == "unrolled" and Path(info["path"]).is_file() and info["outputs"] == ["logits"]
    x = torch.rand(3, 1, 8, 8)
    out = reference_session(info["path"]).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(out, _simulate(to_snn(lenet_q, coding="rate", T=4), x)[0], atol=1e-4, rtol=0)
    result = runner.invoke(app, ["export", "--input", str(artifact), "--format", "nir"])
    assert result.exit_code != 0 and "RateMaxPool" in result.output and not artifact.with_suffix(".nir").exists()
    assert "--reset zero" in result.output and "--no-half-init" in result.output and "0x" not in result.output
    result = runner.invoke(app, ["export", "--input", str(artifact), "--format", "tflite"])
    assert result.exit_code != 0 and "--format" in result.output
