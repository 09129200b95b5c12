"""NIR in: a NIR graph as snnconvert's own spiking network (``snnconvert.nir_in``).

Expectations are derived by hand from NIR's equations (``v += dt r I``, fire at the threshold,
reset to 0; ``v <- (1 - dt/tau) v + dt r / tau I`` for LIF), or taken from running the same
network in SpikingJelly step by step; tolerances are stated at each assertion.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

nir = pytest.importorskip("nir")

from snnconvert import nir_in as nir_graph  # noqa: E402
from snnconvert.cli.app import app  # noqa: E402
from snnconvert.errors import SnnConvertError  # noqa: E402
from snnconvert.nir_in import load_nir, nir_input, nir_to_snn, read_nir  # noqa: E402

runner = CliRunner()


def _write(graph, path: Path) -> Path:
    nir.write(path, graph)
    return path


def _spike_train(snn, images: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """(T, B, ...) output frames of neuron layer ``layer`` while ``snn`` runs ``images``."""
    name = snn.info["neuron_layers"][layer]
    seen = []
    hook = snn.body.get_submodule(name).register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            snn(images)
    finally:
        hook.remove()
    frames = torch.cat(seen)  # (T*B, ...): time-major, possibly in time chunks
    return frames.reshape(snn.info["T"], images.shape[0], *frames.shape[1:])


# ---------------------------------------------------------------------------- 1. hand-computed networks


def _affine_if_affine(dt: float, r: float) -> nir.NIRGraph:
    """Input (2,) -> Affine -> IF (threshold 2) -> Affine -> Output. For x = (1, 1) the first Affine
    gives (1.5, 0.8): with dt r = 1 and threshold 2, the normalised currents 0.75 and 0.4."""
    w1 = np.array([[1.5, 0.0], [0.4, 0.4]], np.float32)
    w2 = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    return nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([2])}),
               "fc1": nir.Affine(weight=w1, bias=np.zeros(2, np.float32)),
               "if1": nir.IF(r=np.full(2, r), v_threshold=np.full(2, 2.0), v_reset=np.zeros(2)),
               "fc2": nir.Affine(weight=w2, bias=np.array([0.5, 0.0], np.float32)),
               "y": nir.Output(output_type={"output": np.array([2])})},
        edges=[("x", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "y")])


@pytest.mark.parametrize(("dt", "r"), [(1e-4, 1e4), (1e-3, 1e3), (1.0, 1.0)])
def test_if_spikes_and_output_by_hand(dt: float, r: float) -> None:
    """v += dt r I with dt r = 1, threshold 2, hard reset to 0, T = 6:
    neuron 0 (I = 1.5): v = 1.5, 3 -> spike, 0 -> 1.5, 3 -> spike, ...: spikes at steps 2, 4, 6;
    neuron 1 (I = 0.8): v = 0.8, 1.6, 2.4 -> spike, 0 -> ...: spikes at steps 3 and 6 (a soft reset
    would keep 0.4 and fire at steps 3 and 5).
    Output per step: (s0 + 0.5, 2 s1); mean over 6 steps: (3/6 + 0.5, 2 * 2/6) = (1, 2/3)."""
    snn = nir_to_snn(_affine_if_affine(dt, r), T=6, dt=dt)
    x = torch.ones(1, 2)
    spikes = _spike_train(snn, x)[:, 0]
    expected = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=spikes.dtype)
    assert torch.equal(spikes, expected)
    with torch.no_grad():
        out = snn(x)
    assert torch.allclose(out, torch.tensor([[1.0, 2.0 / 3.0]]), rtol=0, atol=1e-6)
    assert snn.info["coding"] == "rate" and snn.info["source"] == "nir" and snn.info["T"] == 6
    assert snn.info["reset"] == "zero" and snn.info["neuron_layers"] == ["if1"]


def test_lif_by_hand() -> None:
    """LIF with dt/tau = 1/2 and r = 2: v <- v/2 + I (input factor dt r / tau = 1), threshold 1,
    I = 0.6: v = 0.6, 0.9, 1.05 -> spike, 0 -> 0.6, 0.9, 1.05 -> spike: every third step; the
    output Affine (weight 3, bias 0) averages to 3 * 2/6 = 1 over T = 6."""
    dt = 1e-3
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([1])}),
               "fc": nir.Affine(weight=np.array([[0.6]], np.float32), bias=np.zeros(1, np.float32)),
               "lif": nir.LIF(tau=np.full(1, 2 * dt), r=np.full(1, 2.0), v_leak=np.zeros(1),
                              v_threshold=np.ones(1), v_reset=np.zeros(1)),
               "out": nir.Linear(weight=np.array([[3.0]], np.float32)),
               "y": nir.Output(output_type={"output": np.array([1])})},
        edges=[("x", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "y")])
    snn = nir_to_snn(graph, T=6, dt=dt)
    x = torch.ones(1, 1)
    spikes = _spike_train(snn, x)[:, 0, 0]
    assert spikes.tolist() == [0, 0, 1, 0, 0, 1]
    with torch.no_grad():
        assert abs(float(snn(x)) - 1.0) < 1e-6


def _cubalif_graph(dt: float, weight: float) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([1])}),
               "fc": nir.Affine(weight=np.array([[weight]], np.float32), bias=np.zeros(1, np.float32)),
               "cuba": nir.CubaLIF(tau_syn=np.full(1, 2 * dt), tau_mem=np.full(1, 2 * dt), r=np.full(1, 2.0),
                                   v_leak=np.zeros(1), v_threshold=np.ones(1), v_reset=np.zeros(1), w_in=np.ones(1)),
               "out": nir.Linear(weight=np.array([[3.0]], np.float32)),
               "y": nir.Output(output_type={"output": np.array([1])})},
        edges=[("x", "fc"), ("fc", "cuba"), ("cuba", "out"), ("out", "y")])


def test_cubalif_by_hand() -> None:
    """CubaLIF with dt/tau_syn = dt/tau_mem = 1/2, w_in = 1, r = 2, threshold 1, input 0.8:
    I <- I/2 + 0.4: 0.4, 0.6, 0.7, 0.75, 0.775, 0.7875; v <- v/2 + I (input factor dt r / tau_mem = 1):
    0.4, 0.8, 1.1 -> spike, 0 -> 0.75, 1.15 -> spike, 0 -> 0.7875: spikes at steps 3 and 5; the
    output Linear (weight 3) averages to 3 * 2/6 = 1 over T = 6."""
    dt = 1e-3
    snn = nir_to_snn(_cubalif_graph(dt, 0.8), T=6, dt=dt)
    x = torch.ones(1, 1)
    assert _spike_train(snn, x)[:, 0, 0].tolist() == [0, 0, 1, 0, 1, 0]
    with torch.no_grad():
        assert abs(float(snn(x)) - 1.0) < 1e-6
    assert snn.info["neuron_kinds"] == {"CubaLIF": 1}


def test_cubalif_at_the_edges_reads_as_far_as_it_writes(tmp_path: Path) -> None:
    """tau_syn = dt (no current memory: the current is the input) reads and writes back as a
    CubaLIF that reads back to the same outputs; an infinite tau_syn is refused by name."""
    from snnconvert.export.nir import export_nir

    dt = 1e-3
    graph = _cubalif_graph(dt, 0.8)
    graph.nodes["cuba"].tau_syn = np.full(1, dt)
    snn = nir_to_snn(graph, T=6, dt=dt)
    written = tmp_path / "edge.nir"
    export_nir(snn, written, (1,), dt=dt)
    x = torch.ones(1, 1)
    with torch.no_grad():
        assert torch.equal(load_nir(written, T=6, dt=dt)(x), snn(x))
    graph.nodes["cuba"].tau_syn = np.full(1, np.inf)
    with pytest.raises(SnnConvertError, match="CubaLIF with a non-finite tau_syn: cuba"):
        nir_to_snn(graph, T=6, dt=dt)


def _random_cubalif(path: Path, dt: float) -> Path:
    """Input (3,) -> Affine -> CubaLIF (8 neurons, every constant drawn per neuron) -> Affine (4)."""
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([3])}),
               "fc": nir.Affine(weight=2 * rng.normal(size=(8, 3)).astype(np.float32),
                                bias=rng.normal(size=8).astype(np.float32)),
               "cuba": nir.CubaLIF(tau_syn=rng.uniform(2, 6, 8) * dt, tau_mem=rng.uniform(2, 6, 8) * dt,
                                   r=rng.uniform(0.5, 2, 8), v_leak=np.zeros(8), v_threshold=rng.uniform(0.5, 1.5, 8),
                                   v_reset=np.zeros(8), w_in=rng.uniform(0.5, 2, 8)),
               "out": nir.Affine(weight=rng.normal(size=(4, 8)).astype(np.float32), bias=np.zeros(4, np.float32)),
               "y": nir.Output(output_type={"output": np.array([4])})},
        edges=[("x", "fc"), ("fc", "cuba"), ("cuba", "out"), ("out", "y")])
    return _write(graph, path)


def test_cubalif_runs_as_norse_runs_it_and_exports_back_as_cubalif(tmp_path: Path) -> None:
    """A random CubaLIF network, T = 20, float64: norse (from_nir, Euler steps of NIR's equations)
    and snnconvert emit the same spikes, and the logits agree to 1e-6 of their scale (norse turns
    each time constant into a float32 rate; the file's float32 constants bound the rest). Written
    back by snnconvert's NIR export, the file holds a CubaLIF again, reads back to the same logits
    exactly, and norse runs it the same way."""
    pytest.importorskip("norse")
    from snnconvert.export.nir import export_nir
    from snnconvert.export.nir_consumers import run_consumer, simulator_run

    dt, T = 1e-3, 20
    path = _random_cubalif(tmp_path / "cuba.nir", dt)
    x = torch.rand(16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    snn = load_nir(path, T=T, dt=dt)
    ours = simulator_run(snn, x, torch.float64)
    theirs = run_consumer("norse", path, x, T, dt=dt, dtype=torch.float64)
    scale = float(np.abs(ours.logits).max())
    assert ours.spike_counts == theirs.spike_counts and ours.spike_counts["cuba"] > 0
    assert float(np.abs(ours.logits - theirs.logits).max()) <= 1e-6 * scale

    written = tmp_path / "back.nir"
    export_nir(snn, written, (3,), dt=dt)
    assert type(nir.read(str(written)).nodes["cuba"]).__name__ == "CubaLIF"
    again = simulator_run(load_nir(written, T=T, dt=dt), x, torch.float64)
    assert np.array_equal(again.logits, ours.logits) and again.spike_counts == ours.spike_counts
    norse_again = run_consumer("norse", written, x, T, dt=dt, dtype=torch.float64)
    assert norse_again.spike_counts == ours.spike_counts
    assert float(np.abs(norse_again.logits - ours.logits).max()) <= 1e-6 * scale


def test_sum_pool_scale_flatten_and_metadata_T_by_hand(tmp_path: Path) -> None:
    """Input ones (1, 2, 2) -> SumPool2d 2x2 (4) -> Scale 0.5 (2) -> Flatten (1,) -> Affine 3x + 1 (7)
    at every step: the mean over T is 7 (to 1e-6); T comes from the graph metadata."""
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": np.array([1, 2, 2])}),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "half": nir.Scale(scale=np.full((1, 1, 1), 0.5)),
               "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0, end_dim=-1),
               "fc": nir.Affine(weight=np.array([[3.0]], np.float32), bias=np.ones(1, np.float32)),
               "y": nir.Output(output_type={"output": np.array([1])})},
        edges=[("x", "pool"), ("pool", "half"), ("half", "flat"), ("flat", "fc"), ("fc", "y")],
        metadata={"T": 5}, type_check=False)
    snn = load_nir(_write(graph, tmp_path / "pool.nir"))
    assert snn.info["T"] == 5
    with torch.no_grad():
        assert abs(float(snn(torch.ones(1, 1, 2, 2))) - 7.0) < 1e-6


# ---------------------------------------------------------------------------- 2. a file SpikingJelly wrote


@pytest.mark.parametrize("kind", ["IF", "LIF"])
def test_spikingjelly_file_matches_spikingjelly_step_by_step(tmp_path: Path, kind: str) -> None:
    """Conv2d -> IF (or LIF, tau 2) -> AvgPool2d -> Flatten -> Linear with random weights, exported
    by SpikingJelly (dt 1e-4: IF r = 1/dt) and loaded here; SpikingJelly runs the same constant
    input for T steps (fires at v >= theta, resets to v_reset = 0). The spike trains are equal
    and the mean output agrees to 1e-5 relative."""
    exchange = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    node = neuron.IFNode(v_reset=0.0) if kind == "IF" else neuron.LIFNode(tau=2.0, v_reset=0.0)
    net = torch.nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), node, layer.AvgPool2d(2), layer.Flatten(),
                              layer.Linear(4 * 4 * 4, 10))
    with torch.no_grad():
        net[0].weight.mul_(3.0)  # enough current that most neurons fire
    images = torch.rand(6, 1, 8, 8)
    path = tmp_path / f"sj-{kind}.nir"
    exchange.export_to_nir(net, images[:1], save_path=path)
    T = 12
    snn = load_nir(path, T=T)

    spikes_sj = []
    hook = net[1].register_forward_hook(lambda _m, _i, out: spikes_sj.append(out.detach().clone()))
    with torch.no_grad():
        functional.reset_net(net)
        reference = torch.stack([net(images) for _ in range(T)]).mean(0)
    hook.remove()
    ours = _spike_train(snn, images)
    assert ours.sum() > 0 and torch.equal(ours, torch.stack(spikes_sj))
    with torch.no_grad():
        got = snn(images)
    assert torch.allclose(got, reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


# ---------------------------------------------------------------------------- 2b. snnconvert's own export


@pytest.fixture(scope="module")
def avgpool_lenet():
    """The bundled LeNet-5 with average pooling (NIR has no max-pooling of spike trains), quantized."""
    import copy

    from snnconvert.data import InputSpec
    from snnconvert.ingest import load_model
    from snnconvert.pipeline import quantize
    from snnconvert.quantize import QuantizeConfig

    model = copy.deepcopy(load_model("lenet5").module)
    model.pool1, model.pool2 = torch.nn.AvgPool2d(2), torch.nn.AvgPool2d(2)
    return quantize(model, data="digits", input_spec=InputSpec(1, (8, 8), None, None, None),
                    config=QuantizeConfig(calib_limit=64), eval_limit=0)


@pytest.fixture(scope="module")
def hard_rate_lenet(avgpool_lenet):
    """Rate-coded with NIR's neuron: reset to 0, start at 0."""
    from snnconvert.pipeline import to_snn

    return to_snn(avgpool_lenet, coding="rate", T=16, reset="zero", half_init=False, calibrate="none")


def _digits(count: int = 16) -> torch.Tensor:
    from snnconvert.data.digits import digits_arrays

    return digits_arrays("test")[0][:count].float()


def _spike_counts(snn, images: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Logits and the spikes of every neuron layer (per image) while ``snn`` runs ``images``."""
    snn.reset_stats()
    with torch.no_grad(), snn.recording():
        logits = snn(images)
    return logits, [s.events for s in snn.spike_stats()]


@pytest.mark.parametrize("pool", ["avg", "sum"])
def test_snnconverts_own_export_reads_back_exactly(hard_rate_lenet, tmp_path: Path, pool: str) -> None:
    """export_nir (IF r = 1/dt, threshold 1, reset 0; T and dt in the metadata) read back without
    T or dt: the same float32 weights (dt r = 1 exactly; a sum pool's 1/4 and 4 are powers of two),
    so the same spike counts in every layer and logits equal to 1e-6 of their scale."""
    from snnconvert.export.nir import export_nir

    path = export_nir(hard_rate_lenet, tmp_path / f"lenet-{pool}.nir", (1, 8, 8), pool=pool).path
    loaded = load_nir(path)
    assert loaded.info["T"] == 16 and loaded.info["dt"] == pytest.approx(1e-4)
    images = _digits()
    want_logits, want_counts = _spike_counts(hard_rate_lenet, images)
    got_logits, got_counts = _spike_counts(loaded, images)
    assert got_counts == want_counts and sum(want_counts) > 0
    assert torch.allclose(got_logits, want_logits, rtol=0, atol=1e-6 * float(want_logits.abs().max()))


def test_snnconverts_inexact_export_reads_back_as_the_simulator_ran_it(avgpool_lenet, tmp_path: Path) -> None:
    """The rate coding's defaults (reset by subtraction, membranes from theta/2) exported with
    inexact=True: NIR's IF would reset to 0 from 0, but the node metadata snnconvert wrote says
    what the simulator does, and the loader follows it: the same spike counts, logits to 1e-6."""
    from snnconvert.export.nir import export_nir
    from snnconvert.pipeline import to_snn

    soft = to_snn(avgpool_lenet, coding="rate", T=16, calibrate="none")
    loaded = load_nir(export_nir(soft, tmp_path / "soft.nir", (1, 8, 8), inexact=True).path)
    assert loaded.info["reset"] == "subtract" and loaded.info["initial_membrane"] == [0.5]
    images = _digits()
    want_logits, want_counts = _spike_counts(soft, images)
    got_logits, got_counts = _spike_counts(loaded, images)
    assert got_counts == want_counts
    assert torch.allclose(got_logits, want_logits, rtol=0, atol=1e-6 * float(want_logits.abs().max()))


def test_snnconverts_own_lif_export_reads_back(hard_rate_lenet, tmp_path: Path) -> None:
    """Learned leaks 0.9 / 0.92 / ... exported as LIF (tau = dt/(1 - leak), the 1/(1 - leak) in the
    synapse) read back as leak 1 - dt/tau with input factor dt/tau: the same network up to float32
    rounding of the rescaled weights (a spike may flip at a near-tie), so logits within 1 % and
    spike counts within 1 % per layer."""
    import copy

    from snnconvert.export.nir import export_nir

    snn = copy.deepcopy(hard_rate_lenet)
    for i, neuron in enumerate(snn.neurons().values()):
        neuron.make_trainable(learn_threshold=False, learn_leak=True, channels=None, dtype=torch.float32,
                              device=torch.device("cpu"))
        with torch.no_grad():
            neuron.leak.fill_(0.90 + 0.02 * i)
    loaded = load_nir(export_nir(snn, tmp_path / "leaky.nir", (1, 8, 8)).path)
    assert loaded.info["neuron_kinds"] == {"LIF": len(snn.neurons())}
    images = _digits()
    want_logits, want_counts = _spike_counts(snn, images)
    got_logits, got_counts = _spike_counts(loaded, images)
    assert sum(want_counts) > 0
    assert float((got_logits - want_logits).norm()) <= 1e-2 * float(want_logits.norm())
    for got, want in zip(got_counts, want_counts, strict=True):
        assert abs(got - want) <= 1e-2 * max(want, 1.0)


# ---------------------------------------------------------------------------- 3. refusals


def test_unsupported_nodes_are_one_error_grouped_by_primitive(tmp_path: Path) -> None:
    shape = np.array([3])
    graph = nir.NIRGraph(
        nodes={"x": nir.Input(input_type={"input": shape}),
               "fc": nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32)),
               "thr_a": nir.Threshold(threshold=np.ones(3)),
               "thr_b": nir.Threshold(threshold=np.ones(3)),
               "cuba": nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.full(3, 0.1),
                                   v_threshold=np.ones(3)),
               "leaky": nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.full(3, 0.1), v_threshold=np.ones(3),
                                v_reset=np.zeros(3)),
               "y": nir.Output(output_type={"output": shape})},
        edges=[("x", "fc"), ("fc", "thr_a"), ("thr_a", "thr_b"), ("thr_b", "cuba"), ("cuba", "leaky"),
               ("leaky", "y")], type_check=False)
    with pytest.raises(SnnConvertError) as caught:
        load_nir(_write(graph, tmp_path / "bad.nir"), T=4)
    message = str(caught.value)
    assert "\n" not in message and "object at 0x" not in message and "<" not in message
    assert "Threshold: thr_a, thr_b" in message
    assert "CubaLIF with v_leak != 0 (snnconvert's neurons leak towards 0): cuba" in message
    assert "LIF with v_leak != 0" in message and "leaky" in message


def test_v_reset_other_than_zero_is_refused_by_name() -> None:
    graph = _affine_if_affine(1e-4, 1e4)
    graph.nodes["if1"].v_reset = np.full(2, -0.5)
    with pytest.raises(SnnConvertError, match=r"IF with v_reset != 0 .*if1"):
        nir_to_snn(graph, T=4)


def test_a_file_that_is_not_hdf5_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.nir"
    path.write_text("this is not a NIR graph\n" * 10)
    with pytest.raises(SnnConvertError, match="not HDF5") as caught:
        load_nir(path, T=4)
    assert "\n" not in str(caught.value)


def test_links_to_other_files_are_refused(tmp_path: Path) -> None:
    import h5py

    path = _write(_affine_if_affine(1e-4, 1e4), tmp_path / "linked.nir")
    with h5py.File(path, "a") as f:
        f["node"]["nodes"]["extra"] = h5py.ExternalLink("/etc/passwd", "/")
    with pytest.raises(SnnConvertError, match="links to other data"):
        read_nir(path)


def test_array_sizes_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64 MB array of zeros compresses to a small file; with a 1 MB budget it is refused from its
    shape, before h5py decompresses it."""
    import h5py

    path = _write(_affine_if_affine(1e-4, 1e4), tmp_path / "big.nir")
    with h5py.File(path, "a") as f:
        f["node"]["nodes"]["fc1"].create_dataset("padding_bomb", shape=(4096, 4096), dtype="f4",
                                                 compression="gzip", fillvalue=0.0)
    assert path.stat().st_size < 4 << 20
    monkeypatch.setattr(nir_graph, "MAX_NIR_ARRAY_BYTES", 1 << 20)
    read: list[str] = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        read.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    with pytest.raises(SnnConvertError, match="bytes of arrays"):
        read_nir(path)
    assert read and not any(name.endswith("padding_bomb") for name in read)


def test_T_is_required_when_the_file_does_not_say(tmp_path: Path) -> None:
    path = _write(_affine_if_affine(1e-4, 1e4), tmp_path / "g.nir")
    with pytest.raises(SnnConvertError, match="time steps"):
        load_nir(path)


# ---------------------------------------------------------------------------- 4. the command line


def _digits_graph(path: Path, neuron: str = "IF") -> Path:
    """A random digits-shaped network (1, 8, 8) -> Conv2d -> IF (or CubaLIF with dt/tau = 1/3 and
    r = 9: the same input factor) -> AvgPool2d -> Flatten -> Affine (10), T = 8 in the metadata."""
    rng = np.random.default_rng(0)
    shape = (4, 8, 8)
    spike = nir.IF(r=np.full(shape, 1e4), v_threshold=np.ones(shape), v_reset=np.zeros(shape)) if neuron == "IF" \
        else nir.CubaLIF(tau_syn=np.full(shape, 3e-4), tau_mem=np.full(shape, 3e-4), r=np.full(shape, 9.0),
                         v_leak=np.zeros(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
               "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1, (4, 1, 3, 3)).astype(np.float32),
                                  stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4, np.float32)),
               "spike": spike,
               "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
               "fc": nir.Affine(weight=rng.normal(0, 0.3, (10, 64)).astype(np.float32), bias=np.zeros(10, np.float32)),
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "conv"), ("conv", "spike"), ("spike", "pool"), ("pool", "flat"), ("flat", "fc"),
               ("fc", "output")], metadata={"T": 8}, type_check=False)
    return _write(graph, path)


@pytest.mark.parametrize("neuron", ["IF", "CubaLIF"])
def test_cli_evaluate_takes_a_nir_file(tmp_path: Path, neuron: str) -> None:
    path = _digits_graph(tmp_path / "g.nir", neuron)
    result = runner.invoke(app, ["evaluate", "--input", str(path), "--data", "digits", "--limit", "40"])
    assert result.exit_code == 0, result.output
    assert "accuracy: g on digits" in result.output and "SNN" in result.output
    assert "agreement with the quantized ANN: not available" in result.output
    assert "spike rates per neuron layer" in result.output

    result = runner.invoke(app, ["evaluate", "--input", str(path), "--data", "digits", "--limit", "40", "--T", "4",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert [s["model"] for s in report["accuracy"]["scores"]] == ["SNN"]
    assert report["accuracy"]["agreement_snn_quantized"] is None
    assert report["accuracy"]["agreement_quantized_float"] is None
    assert report["snn_info"]["T"] == 4 and report["snn_info"]["file"] == "g.nir"
    assert report["ops"]["synaptic_ops"] > 0 and report["rates"][0]["name"] == "spike"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    path = _digits_graph(tmp_path / "g.nir")
    for args, needle in ((["--input", str(path)], "--data"),
                         (["--input", str(path), "--data", "digits", "--T", "0"], "--T"),
                         (["--input", str(path), "--data", "digits", "--sweep", "T=2,4"], "--sweep")):
        result = runner.invoke(app, ["evaluate", *args])
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("neuron", ["IF", "CubaLIF"])
def test_cli_finetune_takes_a_nir_file_and_writes_one(tmp_path: Path, neuron: str) -> None:
    """NIR in, NIR out: the fine-tuned network is written as a new .nir file with the T and dt it
    was loaded with (kept only after it was read back and reproduced the network), with the
    neuron primitive it was read with."""
    path = _digits_graph(tmp_path / "g.nir", neuron)
    out = tmp_path / "run"
    result = runner.invoke(app, ["finetune", "--input", str(path), "--data", "digits", "--epochs", "1",
                                 "--max-batches", "2", "--val-limit", "20", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    written = Path(summary["artifact"])
    assert written.suffix == ".nir" and written.parent == out and written.is_file()
    tuned = load_nir(written)
    assert tuned.info["T"] == 8 and tuned.info["dt"] == pytest.approx(1e-4)
    assert tuned.info["neuron_kinds"] == {neuron: 1}
    assert type(nir.read(str(written)).nodes["spike"]).__name__ == neuron
    quantized, _ = nir_input(path)
    assert quantized.float_model is None and quantized.info.num_classes == 10
