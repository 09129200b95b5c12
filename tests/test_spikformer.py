"""Spikformer-style models, spiking self-attention in the graph and the simulator, its operation
counts, the DTSS leak/reset order and the time-step sensitivity report."""

from __future__ import annotations

import itertools

import pytest
import torch

from snnconvert.data.input_spec import InputSpec
from snnconvert.graph.attention import SpikingAttention
from snnconvert.graph.capture import capture
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.graph.support import unsupported_nodes
from snnconvert.methods.dtss.timestep_sensitivity import cosine_of_histograms, sensitivity
from snnconvert.methods.rate.neuron import IFNeuron, if_dynamics_autograd
from snnconvert.models.lenet import DIGITS_MEAN, DIGITS_STD
from snnconvert.models.registry import BUNDLED_MODELS
from snnconvert.models.spikformer import SPIKFORMER_CONFIGS, Spikformer, SpikformerSpec, layer_group
from snnconvert.pipeline import quantize, to_snn
from snnconvert.simulate.probes import synapse_probe

DIGITS_SPEC = InputSpec(1, (8, 8), None, DIGITS_MEAN, DIGITS_STD)


@pytest.fixture(scope="module")
def tiny_q():
    torch.manual_seed(0)
    model = Spikformer(SpikformerSpec(1, 16, 2), 10, in_channels=1)  # 8x8 digits -> 2x2 tokens
    return quantize(model, data="digits", input_spec=DIGITS_SPEC, eval_limit=0)


@pytest.fixture(scope="module")
def tiny_snn(tiny_q):
    return to_snn(tiny_q, coding="rate", T=3)


def test_registered_by_name_and_shapes() -> None:
    assert {"spikformer-4-384", "spikformer-2-128"} <= set(BUNDLED_MODELS)
    model = BUNDLED_MODELS["spikformer-2-128"].build(10).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    spec = SPIKFORMER_CONFIGS["spikformer-4-384"]
    assert (spec.depth, spec.dim, spec.heads) == (4, 384, 12)
    big = BUNDLED_MODELS["spikformer-4-384"].build(10)
    attn = big.blocks[0].ssa
    assert attn.q_conv.bias is None and attn.q_conv.kernel_size == (1, 1)  # 1x1 convs without bias
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.Softmax)) for m in big.modules())


def test_attention_is_one_supported_node() -> None:
    gm = capture(Spikformer(SpikformerSpec(1, 16, 2), 10), (1, 3, 32, 32))
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target),
                                                                                  SpikingAttention)]
    assert len(nodes) == 1 and kind_of(gm, nodes[0]) is Kind.LINEAR and len(nodes[0].all_input_nodes) == 3
    assert unsupported_nodes(gm) == []


def test_layer_groups() -> None:
    assert layer_group("sps.act1") == "sps"
    assert [layer_group(f"blocks.0.ssa.{n}") for n in ("in_act", "q_act", "k_act", "v_act", "attn_act")] == \
        ["qkv"] * 4 + ["attn"]
    assert layer_group("blocks.1.mlp.fc1_act") == "mlp" and layer_group("relu3") == "other"


def test_attention_products_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = ((torch.rand(3, 4, 2, 2, generator=gen) < 0.5).float() for _ in range(3))
    att = SpikingAttention(heads=2, scale=0.25)
    out = att(q, k, v)
    dense, adds = att.products(q, k, v)
    ref = torch.zeros_like(out)
    count = 0
    for b, h in itertools.product(range(3), range(2)):  # plain loops: head h holds channels 2h, 2h+1
        Q = q[b, 2 * h:2 * h + 2].reshape(2, 4).T  # (tokens, d)
        K = k[b, 2 * h:2 * h + 2].reshape(2, 4).T
        V = v[b, 2 * h:2 * h + 2].reshape(2, 4).T
        for n, c in itertools.product(range(4), range(2)):
            total = 0.0
            for m in range(4):
                a = sum(float(Q[n, j] * K[m, j]) for j in range(2))
                count += sum(int(Q[n, j] * K[m, j] != 0) for j in range(2)) if c == 0 else 0
                count += int(a != 0 and V[m, c] != 0)
                total += a * float(V[m, c])
            ref[b, 2 * h + c].view(-1)[n] = 0.25 * total
    assert torch.allclose(out, ref, atol=1e-6)
    assert dense == 2 * 2 * 4 * 4 * 2 and adds == count


def test_simulator_attention_equals_float_computation_on_the_same_spikes(tiny_snn) -> None:
    att_name, att = next((n, m) for n, m in tiny_snn.body.named_modules() if isinstance(m, SpikingAttention))
    seen = {}
    hook = att.register_forward_hook(lambda mod, inp, out: seen.update(inp=[t.detach() for t in inp],
                                                                        out=out.detach()))
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), synapse_probe(tiny_snn) as loads:
        tiny_snn(images)
    hook.remove()
    q, k, v = seen["inp"]
    assert q.shape[0] == 3 * 2  # T x B frames: one product per time step
    for t in (q, k, v):  # spikes times the layer's threshold gain: two values per channel at most
        assert all(t[:, c].unique().numel() <= 2 for c in range(t.shape[1]))
    heads, d = att.heads, q.shape[1] // att.heads
    ref = torch.empty_like(seen["out"], dtype=torch.float64)
    for f in range(q.shape[0]):
        for h in range(heads):
            Q, K, V = (t[f, h * d:(h + 1) * d].reshape(d, -1).T.double() for t in (q, k, v))
            ref[f, h * d:(h + 1) * d] = ((Q @ K.T) @ V * att.scale).T.reshape(d, *q.shape[2:])
    assert torch.allclose(seen["out"].double(), ref, rtol=1e-5, atol=1e-6)
    dense, adds = att.products(q, k, v)
    load = loads[att_name]
    assert load.macs == dense and load.synaptic_ops == pytest.approx(adds / 2, rel=1e-9)  # per sample


def test_spikformer_through_rate_conversion_and_dtss(tiny_q, tiny_snn) -> None:
    from snnconvert.finetune import FinetuneConfig, finetune
    from snnconvert.methods.dtss.mask import dtss_masks

    cfg = FinetuneConfig(epochs=1, batch_size=8, max_batches_per_epoch=2, val_limit=0, lr=1e-3,
                         methods={"dtss": {"lambda_m": 0.01, "order": "dtss"}})
    result = finetune(tiny_q, tiny_snn, cfg, data="digits")
    masks = dtss_masks(result.snn)
    groups = {m.group for m in masks.values()}
    assert {"sps", "qkv", "attn", "mlp"} <= groups
    assert result.snn.info["dtss"]["groups"] == ["mlp", "qkv"]  # auto: the paper's best (table III)
    assert all(n.order == "dtss" for n in result.snn.modules() if isinstance(n, IFNeuron))
    assert "T_avg" in result.history[-1]


def test_dtss_leak_reset_order_by_hand() -> None:
    z = torch.tensor([[1.0], [0.6], [0.6], [1.0]])  # one neuron, theta = 1, leak 0.5, u0 = 0
    spikes, _ = if_dynamics_autograd(z, init=0.0, leak=0.5, order="dtss")
    # eqs 1-2: H1 = 1.0 (not > 1: no spike); H2 = 0.5*1.0 + 0.6 = 1.1 -> spike, U2 = 0.1;
    # H3 = 0.05 + 0.6 = 0.65; H4 = 0.325 + 1.0 = 1.325 -> spike
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    spikes_m, _ = if_dynamics_autograd(z, init=0.0, leak=0.5, order="mlif")
    # M-LIF order: fires at >= (t=1), reset not leaked: u2 = 0.5 - 1 + 0.6 = 0.1, u3 = 0.65, u4 = 1.325
    assert spikes_m.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        IFNeuron(4, order="bogus")


def test_timestep_sensitivity(tiny_snn) -> None:
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    cos, edges, p1, p2 = cosine_of_histograms(a, a, bins=4)
    assert cos == pytest.approx(1.0) and p1 == p2 and len(edges) == 5
    cos2, *_ = cosine_of_histograms(torch.zeros(4), torch.ones(4), bins=2)
    assert cos2 == pytest.approx(0.0)  # disjoint histograms
    # p1 = [1/2, 1/2], p2 = [1, 0]: cos = (1/2) / (sqrt(1/2) * 1) = 0.7071
    cos3, *_ = cosine_of_histograms(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]), bins=2)
    assert cos3 == pytest.approx(2 ** -0.5, abs=1e-9)
    data = sensitivity(tiny_snn, torch.rand(4, 1, 8, 8), batch_size=4)
    names = [r["layer"] for r in data["layers"]]
    assert "blocks.0.ssa.q_act" in names and all(0 <= r["cosine"] <= 1 + 1e-9 for r in data["layers"])


class _MatmulNet(torch.nn.Module):
    def __init__(self, product: str) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(1, 2, 1), torch.nn.Conv2d(1, 2, 1)
        self.product = product

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        y = torch.matmul(a, b) * 0.125 if self.product == "matmul" else a * b
        return y.flatten(1)


def test_support_check_accepts_matmul_of_two_activations_with_a_scale() -> None:
    assert unsupported_nodes(capture(_MatmulNet("matmul"), (1, 1, 4, 4))) == []
    problems = unsupported_nodes(capture(_MatmulNet("mul"), (1, 1, 4, 4)))
    assert len(problems) == 1 and "mul" in problems[0]  # an elementwise gate stays unsupported


class _FunctionalProducts(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x @ x.transpose(-1, -2)  # operator.matmul
        return a.matmul(x)  # the method spelling


def test_functional_matmul_ops_counted_by_hand() -> None:
    from torch import fx

    from snnconvert.evaluate import ops_report
    from snnconvert.simulate.network import SpikingNetwork

    snn = SpikingNetwork("rate", {"frames": 2})
    snn.body = fx.symbolic_trace(_FunctionalProducts())
    code = snn.body.code
    # 2 samples x 2 frames, each frame a 3 x 2 binary matrix X
    x = torch.tensor([[[1., 0.], [1., 1.], [0., 0.]], [[0., 0.]] * 3,
                      [[1., 1.]] * 3, [[0., 1.], [0., 0.], [0., 0.]]])
    with synapse_probe(snn) as loads:
        out = snn(x)
    assert torch.equal(out, (x @ x.transpose(-1, -2)) @ x) and snn.body.code == code  # the graph is restored
    first, second = loads["matmul"], loads["matmul_1"]
    # X X^T: one addition per pair of spikes in the same column: frame 0: 2^2 + 1^2 = 5, frame 1: 0,
    # frame 2: 3^2 + 3^2 = 18, frame 3: 1 -> 24 over 2 samples; dense: 3 x 3 outputs x 2 inputs
    assert first.macs == 18.0 and first.input_events == pytest.approx(12.0, abs=0)
    assert first.synaptic_ops == pytest.approx(12.0, abs=1e-12)
    # A X with A = X X^T: non-zero A[i, l] times spike X[l, j]: frame 0: A != 0 on [[1,1,0],[1,1,0],[0,0,0]]
    # -> rows 0 and 1 each 2 + 1 = 3 -> 6; frame 2: 6 outputs x 3 = 18; frame 3: 1 -> 25 / 2 samples
    assert second.macs == 18.0 and second.input_events == pytest.approx(12.5, abs=0)
    assert ops_report(snn, dict(loads), 4.6, 0.9).synaptic_ops == pytest.approx(24.5, abs=1e-12)


def test_functional_matmul_counted_in_a_converted_network() -> None:
    torch.manual_seed(0)
    q = quantize(_MatmulNet("matmul"), data="digits", input_spec=DIGITS_SPEC, eval_limit=0,
                 allow_class_mismatch=True)  # 128 outputs: a probe of the matmul, not a classifier
    snn = to_snn(q, coding="rate", T=3)
    matmuls = [n.name for n in snn.body.graph.nodes if n.target in (torch.matmul, "matmul")]
    assert len(matmuls) == 1
    spikes: dict[str, torch.Tensor] = {}
    node = next(n for n in snn.body.graph.nodes if n.name == matmuls[0])
    feeds = [str(a.target) for a in node.args[:2]]
    hooks = [snn.body.get_submodule(f).register_forward_hook(
        lambda m, i, o, f=f: spikes.__setitem__(f, o.detach())) for f in feeds]
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with synapse_probe(snn) as loads:
        snn(images)
    for h in hooks:
        h.remove()
    a, b = (spikes[f].ne(0).float() for f in feeds)
    assert float(a.sum()) > 0 and float(b.sum()) > 0
    expected = float((a @ b).sum()) / 4  # per sample, over the 3 frames
    assert loads[matmuls[0]].synaptic_ops == pytest.approx(expected, rel=1e-9)
    assert loads[matmuls[0]].macs == 2 * 8 * 8 * 8  # per frame: 2 channels x (8 x 8) @ (8 x 8)
    from snnconvert.simulate.chunks import chunkable, run_in_chunks

    with torch.no_grad(), synapse_probe(snn) as chunked:  # one time step at a time: the same counts
        assert chunkable(snn, images)
        run_in_chunks(snn, images, 1)
    assert chunked[matmuls[0]].synaptic_ops == pytest.approx(expected, rel=1e-9)
