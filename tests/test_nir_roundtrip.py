"""NIR out: what the file says (hand-derived), and the file run unedited by norse, SpikingJelly and
sinabs against snnconvert's simulator (issue 28).

The consumers are test-only dependencies (``requirements/nir-consumers.txt``, installed by ``make
test`` with ``--no-deps``); each round trip skips cleanly without its tool. Round trips run in
float64 on both sides: the simulator folds the T steps into the batch and a tool runs them one by
one, so their float32 convolutions may sum in another order on another CPU; in float64 a spike
would flip only for a membrane within ~1e-15 of its threshold, so spike counts must be equal and
logits agree to 1e-9 of their scale.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import randomize_batchnorm
from PIL import Image
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.export.nir import export_nir
from snnconvert.export.nir_consumers import run_consumer, simulator_run
from snnconvert.ingest import load_model
from snnconvert.models.cifar_resnet import cifar_resnet
from snnconvert.pipeline import QuantizedModel, quantize, to_snn
from snnconvert.quantize import QuantizeConfig

T = 32


@pytest.fixture(scope="module")
def avgpool_lenet() -> QuantizedModel:
    """The bundled LeNet-5 with average pooling (NIR has no max-pool of spike trains)."""
    model = copy.deepcopy(load_model("lenet5").module)
    model.pool1, model.pool2 = nn.AvgPool2d(2), nn.AvgPool2d(2)
    return quantize(model, data="digits", input_spec=InputSpec(1, (8, 8), None, None, None),
                    config=QuantizeConfig(calib_limit=64), eval_limit=0)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    from snnconvert.data.digits import digits_arrays

    images = digits_arrays("test")[0]
    return images[:24].float()


def _hard(q: QuantizedModel, **options):
    return to_snn(q, coding="rate", T=T, reset="zero", half_init=False, **options)


def _with_leaks(snn, per_channel: bool = False):
    """A copy with learned leaks 0.90, 0.92, ... per layer (per channel: plus 0.0001 c)."""
    snn = copy.deepcopy(snn)
    for i, (name, neuron) in enumerate(snn.neurons().items()):
        width = _out_channels(snn, name)
        neuron.make_trainable(learn_threshold=False, learn_leak=True,
                              channels=(lambda width=width: width) if per_channel else None,
                              dtype=torch.float64, device=torch.device("cpu"))
        with torch.no_grad():
            values = 0.90 + 0.02 * i + 0.0001 * torch.arange(neuron.leak.numel(), dtype=torch.float64)
            neuron.leak.copy_(values.to(neuron.leak.dtype))
    return snn


def _out_channels(snn, name: str) -> int:
    node = next(n for n in snn.body.graph.nodes if n.op == "call_module" and str(n.target) == name)
    source = snn.body.get_submodule(node.args[0].target)
    return int(source.weight.shape[0])


# ------------------------------------------------------------------------------------ what the file says


def test_the_default_rate_network_is_refused_with_both_differences_named(avgpool_lenet, tmp_path: Path) -> None:
    snn = to_snn(avgpool_lenet, coding="rate", T=T)  # reset by subtraction, membranes from theta/2
    with pytest.raises(SnnConvertError) as err:
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8))
    message = str(err.value)
    assert "relu1, relu2, relu3, relu4: reset by subtraction and start at 0.5 x threshold" in message
    assert "convert with reset=zero half_init=False" in message and "nir_inexact" in message
    assert "nir_reset=subtract" in message
    assert "\n" not in message and len(message) < 400
    assert not (tmp_path / "x.nir").exists()
    result = export_nir(snn, tmp_path / "x.nir", (1, 8, 8), inexact=True)
    import nir

    graph = nir.read(str(result.path))
    assert result.differences == ["relu1, relu2, relu3, relu4: reset by subtraction and start at 0.5 x threshold"]
    assert graph.metadata["snnconvert.differences"] == result.differences[0]


def test_a_learned_leak_is_a_lif_with_its_input_scaled_into_the_synapse(avgpool_lenet, tmp_path: Path) -> None:
    """leak 0.9 (relu1): tau = dt/(1 - 0.9) = 1e-3 s, r = 1, and conv1's weights and bias times
    1/(1 - 0.9) = 10, so a reader's v += dt/tau (I' - v) = 0.1 (10 I - v) is the simulator's
    u = 0.9 u + I."""
    import nir

    snn = _with_leaks(_hard(avgpool_lenet))
    graph = nir.read(str(export_nir(snn, tmp_path / "leak.nir", (1, 8, 8)).path))
    lif = graph.nodes["relu1"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(lif.tau, 1e-4 / (1 - 0.9), rtol=1e-6)
    assert np.all(lif.r == 1) and np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    conv1 = snn.body.conv1
    np.testing.assert_allclose(graph.nodes["conv1"].weight, conv1.weight.detach().double().numpy() * 10, rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["conv1"].bias, conv1.bias.detach().double().numpy() * 10, rtol=1e-6)


@pytest.mark.parametrize("values,cause", [((1.0097,), "outside (0, 1]"), ((1.0, 0.95), "exactly 1 in some")])
def test_leaks_no_lif_can_hold_are_refused_by_name(avgpool_lenet, tmp_path: Path, values, cause) -> None:
    snn = _with_leaks(_hard(avgpool_lenet), per_channel=len(values) > 1)
    neuron = snn.neurons()["relu2"]
    with torch.no_grad():
        neuron.leak.copy_(torch.tensor(values * (neuron.leak.numel() // len(values)), dtype=neuron.leak.dtype))
    with pytest.raises(SnnConvertError, match=r"IFNeuron: learned leak .* at relu2") as err:
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8))
    assert cause in str(err.value) and not (tmp_path / "x.nir").exists()


def test_sum_pooling_folds_its_quarter_into_the_next_synapse(avgpool_lenet, tmp_path: Path) -> None:
    import nir

    snn = _hard(avgpool_lenet)
    graph = nir.read(str(export_nir(snn, tmp_path / "sum.nir", (1, 8, 8), pool="sum").path))
    assert isinstance(graph.nodes["pool1"], nir.SumPool2d) and isinstance(graph.nodes["pool2"], nir.SumPool2d)
    np.testing.assert_allclose(graph.nodes["conv2"].weight, snn.body.conv2.weight.detach().double().numpy() / 4,
                               rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["fc1"].weight, snn.body.fc1.weight.detach().double().numpy() / 4,
                               rtol=1e-6)  # through the flatten
    np.testing.assert_allclose(graph.nodes["conv2"].bias, snn.body.conv2.bias.detach().double().numpy(), rtol=1e-6)


def test_bad_export_options_are_refused_by_name(avgpool_lenet, tmp_path: Path) -> None:
    snn = _hard(avgpool_lenet)
    with pytest.raises(SnnConvertError, match="nir_pool 'max'"):
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8), pool="max")
    with pytest.raises(SnnConvertError, match="nir_dt 0"):
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8), dt=0)
    with pytest.raises(SnnConvertError, match="nir_order 'topological'.*depth-first or plain"):
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8), order="topological")


def test_leaks_trained_under_leak_max_export_as_lif(avgpool_lenet, tmp_path: Path) -> None:
    """finetune --learn-leak moves leaks from 1 both ways (issue 28 saw 1.00002 to 1.0097, then
    written as tau = inf); with leak_max 1 every leak stays at or below 1 and the file holds them."""
    from snnconvert.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(epochs=1, max_batches_per_epoch=6, batch_size=32, lr=0.05, learn_leak=True,
                            leak_max=1.0, val_limit=0, warmup_epochs=0)
    result = finetune(avgpool_lenet, _hard(avgpool_lenet), config, data="digits")
    leaks = torch.cat([n.leak.detach().reshape(-1) for n in result.snn.neurons().values() if n.leak is not None])
    assert leaks.numel() == 4 and float(leaks.max()) <= 1.0 and float(leaks.min()) < 1.0
    export_nir(result.snn, tmp_path / "trained.nir", (1, 8, 8))


# ------------------------------------------------------------------------- a residual network, 1x1 convs


def _image_folder(root: Path, classes: int = 10, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def resnet_quantized(tmp_path_factory) -> QuantizedModel:
    """A random-weight CIFAR ResNet-20 with normalisation (a per-channel input pad), option-A
    shortcuts and global average pooling, quantized."""
    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet("resnet20")).eval()
    data = f"imagefolder:{_image_folder(tmp_path_factory.mktemp('images'))}"
    spec = InputSpec(3, (32, 32), None, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    return quantize(model, data=data, input_spec=spec, config=QuantizeConfig(calib_limit=20), eval_limit=0)


@pytest.fixture(scope="module")
def resnet_snn(resnet_quantized):
    """The ResNet-20 at rate T=32 with the hard reset (bias calibration leaves a gain after the pool)."""
    return _hard(resnet_quantized, calibrate="bias", calibrate_images=8)


def test_a_residual_network_exports_with_every_reshuffle_as_a_1x1_conv(resnet_snn, tmp_path: Path) -> None:
    import nir

    graph = nir.read(str(export_nir(resnet_snn, tmp_path / "r.nir", (3, 32, 32)).path))
    subsample, pad = graph.nodes["getitem"], graph.nodes["pad"]
    assert tuple(subsample.stride) == (2, 2) and subsample.weight.shape == (16, 16, 1, 1)
    assert np.array_equal(subsample.weight[:, :, 0, 0], np.eye(16))
    assert pad.weight.shape == (32, 16, 1, 1) and np.array_equal(pad.weight[8:24, :, 0, 0], np.eye(16))
    assert not pad.weight[:8].any() and not pad.weight[24:].any()
    assert isinstance(graph.nodes["pool"], nir.AvgPool2d) and tuple(graph.nodes["pool"].kernel_size) == (8, 8)
    values = resnet_snn.body.conv1_input_pad.values.double().numpy()
    np.testing.assert_allclose(graph.nodes["conv1_input_pad"].bias, -values, rtol=1e-6)
    assert tuple(graph.nodes["conv1"].padding) == (1, 1)
    assert sum(1 for source, target in graph.edges if target == "layer1_0_relu2") == 2  # the residual sum
    summed = nir.read(str(export_nir(resnet_snn, tmp_path / "s.nir", (3, 32, 32), pool="sum").path))
    (after,) = [target for source, target in summed.edges if source == "pool"]
    assert isinstance(summed.nodes["pool"], nir.SumPool2d)
    np.testing.assert_allclose(summed.nodes[after].weight, graph.nodes[after].weight / 64, rtol=1e-6)  # 8x8 pool


# ----------------------------------------------------------------------------------- the round trips


def _same(run, reference) -> None:
    scale = float(np.abs(reference.logits).max())
    assert np.abs(run.logits - reference.logits).max() <= 1e-9 * scale
    assert (run.logits.argmax(1) == reference.logits.argmax(1)).all()
    assert run.spike_counts == reference.spike_counts and sum(reference.spike_counts.values()) > 0


@pytest.mark.parametrize("consumer,pool", [("spikingjelly", "avg"), ("norse", "sum")])
@pytest.mark.parametrize("leaks", [False, True])
def test_norse_and_spikingjelly_run_the_file_unedited_exactly(avgpool_lenet, digits, tmp_path: Path,
                                                              consumer: str, pool: str, leaks: bool) -> None:
    pytest.importorskip(consumer if consumer != "norse" else "norse.torch")
    snn = _hard(avgpool_lenet)
    snn = _with_leaks(snn) if leaks else snn
    path = export_nir(snn, tmp_path / "n.nir", (1, 8, 8), pool=pool).path
    _same(run_consumer(consumer, path, digits, T, dtype=torch.float64), simulator_run(snn, digits, torch.float64))


def test_spikingjelly_runs_a_residual_network_exactly(resnet_snn, tmp_path: Path) -> None:
    pytest.importorskip("spikingjelly")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    path = export_nir(resnet_snn, tmp_path / "r.nir", (3, 32, 32)).path
    _same(run_consumer("spikingjelly", path, images, T, dtype=torch.float64),
          simulator_run(resnet_snn, images, torch.float64))


@pytest.mark.parametrize("consumer", ["norse", "sinabs"])
def test_depth_first_readers_run_a_residual_network_in_order(resnet_snn, tmp_path: Path, consumer: str) -> None:
    """norse and sinabs load through ``nirtorch.load``, which runs nodes depth-first: the default
    export's zero-weight ordering nodes make that order the graph's (tests/test_nir_order.py), so
    both run every residual sum after both of its branches, exactly (float64; sinabs set to the
    file's neuron)."""
    import nir

    pytest.importorskip("norse.torch" if consumer == "norse" else consumer)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    path = export_nir(resnet_snn, tmp_path / "r.nir", (3, 32, 32), pool="sum").path
    assert sum(1 for name in nir.read(str(path)).nodes if name.startswith("order_")) == 9  # one per block
    _same(run_consumer(consumer, path, images, T, dtype=torch.float64, sinabs_as_nir=True),
          simulator_run(resnet_snn, images, torch.float64))


def test_the_ordering_nodes_read_back_as_nothing(resnet_snn, tmp_path: Path) -> None:
    """snnconvert's reader drops the ordering nodes (zero weights, marked): the same synapses as
    the plain file, the same logits and spikes as the simulator."""
    from snnconvert.nir_in import load_nir
    from snnconvert.simulate.synapse import SynapseConv2d

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ordered = load_nir(export_nir(resnet_snn, tmp_path / "o.nir", (3, 32, 32)).path)
    plain = load_nir(export_nir(resnet_snn, tmp_path / "p.nir", (3, 32, 32), order="plain").path)

    def convs(snn) -> int:
        return sum(isinstance(m, SynapseConv2d) for m in snn.modules())

    assert convs(ordered) == convs(plain)
    _same(simulator_run(ordered, images, torch.float64), simulator_run(resnet_snn, images, torch.float64))


def _subtracting(q: QuantizedModel, **options):
    """The rate coding's own reset (by subtraction), membranes from 0: what ``--nir-reset subtract`` holds."""
    return to_snn(q, coding="rate", T=T, half_init=False, **options)


def test_a_subtractive_reset_is_stated_and_checked(avgpool_lenet, tmp_path: Path) -> None:
    import nir

    snn = _subtracting(avgpool_lenet)
    result = export_nir(snn, tmp_path / "s.nir", (1, 8, 8), reset="subtract")
    graph = nir.read(str(result.path))
    assert result.differences == [] and graph.metadata["reset"].startswith("subtract")
    assert graph.nodes["relu1"].metadata["reset"] == "subtract"
    assert any("v_reset = None" in line and "SingleSpike" in line for line in result.how_to_run())
    with pytest.raises(SnnConvertError) as err:  # the hard reset under the subtract convention
        export_nir(_hard(avgpool_lenet), tmp_path / "x.nir", (1, 8, 8), reset="subtract")
    assert "relu1, relu2, relu3, relu4: reset to zero" in str(err.value)
    assert "convert with reset=subtract" in str(err.value) and "nir_reset=subtract" in str(err.value)
    with pytest.raises(SnnConvertError) as err:  # the rate defaults: only the theta/2 start is left
        export_nir(to_snn(avgpool_lenet, coding="rate", T=T), tmp_path / "x.nir", (1, 8, 8), reset="subtract")
    assert "relu4: start at 0.5 x threshold (" in str(err.value) and "reset by" not in str(err.value)
    with pytest.raises(SnnConvertError, match="nir_reset 'soft'.*hard or subtract"):
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8), reset="soft")
    assert not (tmp_path / "x.nir").exists()


def test_spikingjelly_and_sinabs_run_the_subtractive_reset_exactly(avgpool_lenet, resnet_quantized, digits,
                                                                    tmp_path: Path) -> None:
    """Told the file's convention (SpikingJelly: ``v_reset = None``; sinabs set to the file's
    neuron) both reproduce the simulator's soft reset, on LeNet-5 and on a residual ResNet-20;
    norse's IF resets to a value only, so it runs the hard reset and its spikes differ."""
    pytest.importorskip("spikingjelly")
    pytest.importorskip("sinabs")
    pytest.importorskip("norse.torch")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    resnet = _subtracting(resnet_quantized, calibrate="bias", calibrate_images=8)
    for name, snn, x, shape in (("lenet", _subtracting(avgpool_lenet), digits, (1, 8, 8)),
                                ("resnet", resnet, images, (3, 32, 32))):
        reference = simulator_run(snn, x, torch.float64)
        avg = export_nir(snn, tmp_path / f"{name}.nir", shape, reset="subtract").path
        summed = export_nir(snn, tmp_path / f"{name}-sum.nir", shape, reset="subtract", pool="sum").path
        _same(run_consumer("spikingjelly", avg, x, T, dtype=torch.float64), reference)
        _same(run_consumer("sinabs", summed, x, T, sinabs_as_nir=True, dtype=torch.float64), reference)
        if name == "lenet":
            assert run_consumer("norse", summed, x, T, dtype=torch.float64).spike_counts != reference.spike_counts


def test_snnconverts_reader_takes_the_stated_reset(avgpool_lenet, digits, tmp_path: Path) -> None:
    """The graph metadata alone says subtract (node metadata removed, as another tool would write it)."""
    import nir

    from snnconvert.nir_in import nir_to_snn

    snn = _subtracting(avgpool_lenet)
    graph = nir.read(str(export_nir(snn, tmp_path / "s.nir", (1, 8, 8), reset="subtract").path))
    for node in graph.nodes.values():
        node.metadata = {}
    loaded = nir_to_snn(graph)
    assert loaded.info["reset"] == "subtract"
    _same(simulator_run(loaded, digits, torch.float64), simulator_run(snn, digits, torch.float64))


def test_spikingjelly_refuses_per_channel_leaks(avgpool_lenet, tmp_path: Path) -> None:
    """Documented refusal: SpikingJelly builds one LIFNode per layer (one tau)."""
    pytest.importorskip("spikingjelly")
    snn = _with_leaks(_hard(avgpool_lenet), per_channel=True)
    path = export_nir(snn, tmp_path / "c.nir", (1, 8, 8)).path
    with pytest.raises(ValueError, match="uniform"):
        run_consumer("spikingjelly", path, torch.rand(1, 1, 8, 8), T)


def test_sinabs_runs_its_own_neuron_unless_set_to_the_files(avgpool_lenet, digits, tmp_path: Path) -> None:
    """sinabs reads every IF as a multi-spike neuron (floor(v/theta) spikes a step) reset by
    subtraction: with inputs above threshold its first layer fires more than one spike a step,
    so its counts exceed the file's. Set to one spike a step, the file's reset and no lower
    bound, it reproduces the simulator, for the hard reset and (written inexact) the soft one."""
    pytest.importorskip("sinabs")
    snn = _hard(avgpool_lenet)
    path = export_nir(snn, tmp_path / "s.nir", (1, 8, 8), pool="sum").path
    reference = simulator_run(snn, digits)
    as_read = run_consumer("sinabs", path, digits, T)
    assert as_read.spike_counts["relu1"] > 1.1 * reference.spike_counts["relu1"]  # measured: 75,827 vs 65,446
    _same(run_consumer("sinabs", path, digits, T, sinabs_as_nir=True, dtype=torch.float64),
          simulator_run(snn, digits, torch.float64))
    soft = to_snn(avgpool_lenet, coding="rate", T=T, half_init=False)
    path = export_nir(soft, tmp_path / "soft.nir", (1, 8, 8), pool="sum", inexact=True).path
    _same(run_consumer("sinabs", path, digits, T, sinabs_as_nir=True, dtype=torch.float64),
          simulator_run(soft, digits, torch.float64))


def test_sinabs_runs_in_passes_of_bounded_frames(avgpool_lenet, digits, tmp_path: Path, monkeypatch) -> None:
    """sinabs folds the steps into the batch: 24 images run as passes of 5 images (160 frames),
    with the logits and spike counts of one pass."""
    pytest.importorskip("sinabs")
    from snnconvert.export import nir_consumers

    snn = _hard(avgpool_lenet)
    path = export_nir(snn, tmp_path / "s.nir", (1, 8, 8), pool="sum").path
    whole = run_consumer("sinabs", path, digits, T, sinabs_as_nir=True, dtype=torch.float64)
    monkeypatch.setattr(nir_consumers, "SINABS_FRAMES", 5 * T)
    passes = run_consumer("sinabs", path, digits, T, sinabs_as_nir=True, dtype=torch.float64)
    assert np.array_equal(passes.logits, whole.logits) and passes.spike_counts == whole.spike_counts


def test_sinabs_cannot_read_a_lif_with_per_neuron_arrays(avgpool_lenet, tmp_path: Path) -> None:
    """Documented refusal: sinabs 3.1.3's from_nir tests ``any(node.v_leak) != 0`` on the array."""
    pytest.importorskip("sinabs")
    path = export_nir(_with_leaks(_hard(avgpool_lenet)), tmp_path / "l.nir", (1, 8, 8), pool="sum").path
    with pytest.raises(ValueError, match="truth value of an array"):
        run_consumer("sinabs", path, torch.rand(1, 1, 8, 8), T)


def test_cli_export_writes_the_file_and_says_how_to_run_it(avgpool_lenet, tmp_path: Path) -> None:
    import nir
    from typer.testing import CliRunner

    from snnconvert.cli.app import app
    from snnconvert.pipeline import save

    artifact = save(tmp_path / "hard.snnc", avgpool_lenet, _hard(avgpool_lenet))
    result = CliRunner().invoke(app, ["export", "--input", str(artifact), "--format", "nir", "--nir-pool", "sum",
                                      "--nir-dt", "0.001", "--out", str(tmp_path / "hard.nir")])
    assert result.exit_code == 0, result.output
    assert "T = 32 steps of dt = 0.001 s" in result.output and "from_nir(graph, dt=0.001)" in result.output
    graph = nir.read(str(tmp_path / "hard.nir"))
    assert graph.metadata["dt"] == 0.001 and np.allclose(graph.nodes["relu1"].r, 1000.0)
    assert isinstance(graph.nodes["pool1"], nir.SumPool2d)


def test_a_pool_nir_cannot_hold_is_named_once(avgpool_lenet, tmp_path: Path) -> None:
    snn = _hard(avgpool_lenet)
    snn.body.pool1.ceil_mode = True  # geometry checked when planning sum pooling and again when writing the node
    with pytest.raises(SnnConvertError) as err:
        export_nir(snn, tmp_path / "x.nir", (1, 8, 8), pool="sum")
    assert str(err.value).count("pool1") == 1 and "ceil_mode" in str(err.value)
