"""Run a time-folded spiking network in time chunks sized by bytes.

The time-folded engine (:class:`~snnconvert.simulate.network.SpikingNetwork`) folds all T frames
of a layer into one (T*B, ...) tensor. For long rate-coded runs (T >= 128) that tensor is far
larger than the caches, and every layer streams it through memory several times. Here the whole
body runs on ``k`` steps at a time instead: the encoder emits frames ``start..stop``, every synapse
and linear op processes them folded as before (they are per-frame), and every neuron layer
continues from the state the previous chunk left (IF membrane, max-pool running sums) through
its ``time_window``. ``k`` is chosen so that the largest folded activation of a chunk holds at
most ``SpikingNetwork.time_chunk_bytes`` bytes (None: :data:`~snnconvert.simulate.memory.CHUNK_BYTES` on the CPU,
:data:`~snnconvert.simulate.memory.DEVICE_CHUNK_BYTES` on accelerators; 0: off, all T frames folded at once), but a
chunk holds at least enough frames that the body's weights, which every chunk reads again, are
at most 1/:data:`~snnconvert.simulate.memory.WEIGHT_REUSE` of the activation bytes it writes (a net
with large weights and small maps, like ResNet-18, gets long chunks or none; ResNet-20's 1 MB of weights do not bind).

The neuron updates are the same float operations in the same order and the decoder runs once
on all output frames (they are small). In float64 the logits, spike counts and synapse loads are
bit-identical to one unchunked call (tested). In float32 a conv/linear kernel called on fewer
frames may sum in a different order (a few ulp; 5e-7 on logits of ~20 in the tests), which can
in principle flip a spike sitting exactly at threshold; the tests measured identical spike
counts. Spike and synapse statistics land in the same per-step slots.

Chunking is used only when every piece can do it: the encoder repeats a frame
(:class:`~snnconvert.simulate.encoders.RepeatEncoder`), every neuron layer ``supports_chunks``
(IF and rate max-pool), every synapse adds the same bias at every step, no gradient is needed,
no forward hook that expects all frames at once is registered in the body (hooks marked with
:func:`chunk_aware` are fine), every body module is known to treat frames one by one
(:data:`PER_FRAME_MODULES`), and nothing is tracing or compiling the network (ONNX export).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, fx, nn

from snnconvert.graph.modules import PadWithValues
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.simulate.dropout import FrameDropout
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.memory import WEIGHT_REUSE, chunk_budget
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear

if TYPE_CHECKING:
    from snnconvert.simulate.network import SpikingNetwork

CHUNK_AWARE = "_snnconvert_chunk_aware"

PER_FRAME_MODULES: tuple[type, ...] = (
    SynapseConv2d, SynapseLinear, SynapseAffine, Gain, PadWithValues, nn.Identity, nn.Flatten, nn.Dropout,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.ReLU, FrameDropout,
)
"""Body modules that treat every folded frame on its own (so any run of steps gives the same
frames); containers (plain modules, fx graphs) hold only others. Anything else turns chunking off."""
CONTAINERS: tuple[type, ...] = (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def chunk_aware(hook: Callable) -> Callable:
    """Mark a forward hook as correct when the body runs in time chunks (it then sees each chunk's
    frames and the network's ``time_window``); unmarked hooks turn chunking off."""
    setattr(hook, CHUNK_AWARE, True)
    return hook


def _hooks_allow_chunks(module: nn.Module) -> bool:
    for m in module.modules():
        if m._forward_pre_hooks:
            return False
        if not all(getattr(hook, CHUNK_AWARE, False) for hook in m._forward_hooks.values()):
            return False
    return True


def _uniform_bias(module: nn.Module) -> bool:
    gains = getattr(module, "frame_bias_gain", None)
    return gains is None or not isinstance(gains, Tensor) or gains.numel() <= 1 or bool((gains == gains[0]).all())


def chunkable(snn: SpikingNetwork, images: Tensor) -> bool:
    """Whether ``snn`` can run ``images`` in time chunks with the same results (module docstring)."""
    if not isinstance(snn.encoder, RepeatEncoder) or images.dim() not in (4, 5) or snn.encoder.T < 2:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False  # exporters and compilers record one graph of all T frames
    if torch.is_grad_enabled() and (images.requires_grad or any(p.requires_grad for p in snn.parameters())):
        return False
    neurons = [m for m in snn.body.modules() if isinstance(m, SpikingNeuron)]
    if not neurons or isinstance(snn.encoder, SpikingNeuron):
        return False
    if any(isinstance(m, FrameDropout) and m.training and m.p > 0 for m in snn.body.modules()):
        return False  # an active mask spans all of a sample's steps, not one chunk's
    T = snn.encoder.T
    for n in neurons:
        if not n.supports_chunks or n.steps_in != T or n.steps_out != T:
            return False
    for m in snn.body.modules():
        if not (isinstance(m, (SpikingNeuron, *PER_FRAME_MODULES, fx.GraphModule)) or type(m) in CONTAINERS):
            return False
        if not _uniform_bias(m):
            return False
        if hasattr(m, "frame_bias_gain") and m.frame_bias_gain.numel() not in (1, T):
            return False
    return _hooks_allow_chunks(snn.body) and _hooks_allow_chunks(snn.encoder)


def _encode(encoder: RepeatEncoder, images: Tensor, start: int, stop: int) -> Tensor:
    """Frames ``start..stop`` of ``encoder(images)``, time-folded."""
    if images.dim() == 5:
        part = images[:, start:stop]
        return part.transpose(0, 1).reshape(-1, *images.shape[2:])
    k = stop - start
    return images.unsqueeze(0).expand(k, *images.shape).reshape(k * images.shape[0], *images.shape[1:])


class _LargestOutput:
    """Forward hooks (chunk-aware) that record the elements per image and step of the largest
    tensor any leaf module of the body emits, and of all of them together."""

    def __init__(self, snn: SpikingNetwork, first: Tensor) -> None:
        self.largest = self.total = first[0].numel()
        leaves = [m for m in snn.body.modules() if not list(m.children())]

        def hook(_module: nn.Module, _inputs: tuple, output: Any) -> None:
            if isinstance(output, Tensor) and output.dim() > 0:
                self.largest = max(self.largest, output[0].numel())
                self.total += output[0].numel()

        self.handles = [m.register_forward_hook(chunk_aware(hook)) for m in leaves]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def steps_per_chunk(T: int, batch: int, elements: int, itemsize: int, chunk_bytes: int, min_frames: int = 1) -> int:
    """Steps per chunk so that ``batch * steps * elements * itemsize`` is at most ``chunk_bytes``,
    unless ``batch * steps`` would then be below ``min_frames`` (at least 1, at most T)."""
    per_step = max(1, batch * elements * itemsize)
    fewest = -(-max(1, min_frames) // max(1, batch))
    return int(min(T, max(1, chunk_bytes // per_step, fewest)))


def min_chunk_frames(body: nn.Module, activation_elements: int, itemsize: int) -> int:
    """Frames per chunk at which the bytes of the body's weights (read once per chunk) are at most
    1/:data:`~snnconvert.simulate.memory.WEIGHT_REUSE` of the activations the chunk writes
    (``activation_elements`` per frame)."""
    tensors = [*body.parameters()] + [b for m in body.modules() if not isinstance(m, SpikingNeuron)
                                      for b in m.buffers(recurse=False)]  # not the neurons' state
    weight_bytes = sum(t.numel() * t.element_size() for t in tensors)
    return max(1, -(-WEIGHT_REUSE * weight_bytes // max(1, activation_elements * itemsize)))


def run_in_chunks(snn: SpikingNetwork, images: Tensor, steps: int | None) -> Tensor:
    """``snn(images)`` with the body run ``steps`` time steps at a time (module docstring).

    ``steps=None``: the first chunk is one step, during which the largest activation is measured
    (cached in ``snn.chunk_elements`` per image shape); the rest use the steps that fit
    :func:`chunk_budget`."""
    encoder = snn.encoder
    assert isinstance(encoder, RepeatEncoder)
    T = encoder.T
    images = images.to(snn.compute_dtype())
    neurons = [m for m in snn.body.modules() if isinstance(m, SpikingNeuron)]
    outputs: list[Tensor] = []
    batch = images.shape[0]
    start = 0
    try:
        while start < T:
            stop = min(T, start + (steps or 1))
            snn.time_window = (start, stop)
            for n in neurons:
                n.time_window = (start, stop)
            frames = _encode(encoder, images, start, stop)
            probe = _LargestOutput(snn, frames) if steps is None else None
            try:
                out = snn.body(frames)
            finally:
                if probe is not None:
                    probe.remove()
            if probe is not None:
                key = _shape_key(images)
                snn.chunk_elements[key] = probe.largest
                snn.chunk_min_frames[key] = min_chunk_frames(snn.body, probe.total, images.element_size())
                steps = steps_per_chunk(T, batch, probe.largest, images.element_size(),
                                        chunk_budget(snn.time_chunk_bytes, images.device), snn.chunk_min_frames[key])
            outputs.append(out.reshape(stop - start, batch, *out.shape[1:]))
            start = stop
    finally:
        snn.time_window = None
        for n in neurons:
            n.reset_chunk_state()
    result = torch.cat(outputs)
    return snn.decoder(result.reshape(T * batch, *result.shape[2:]))


def _shape_key(images: Tensor) -> tuple:
    return (tuple(images.shape[1:]) if images.dim() == 4 else tuple(images.shape[2:]), images.dtype)


def chunked_forward(snn: SpikingNetwork, images: Tensor) -> Tensor | None:
    """The network's output computed in time chunks, or None when chunking does not apply (off,
    a single chunk would hold every step, or some part cannot run in chunks)."""
    chunk_bytes = chunk_budget(snn.time_chunk_bytes, images.device)
    if not chunk_bytes or not chunkable(snn, images):
        return None
    T = snn.encoder.T
    if images.dim() == 5 and images.shape[1] != T:
        return None  # the encoder names the mismatch
    key = _shape_key(images)
    elements = snn.chunk_elements.get(key)
    if elements is None:
        return run_in_chunks(snn, images, None)
    steps = steps_per_chunk(T, images.shape[0], elements, images.element_size(), chunk_bytes,
                            snn.chunk_min_frames.get(key, 1))
    if steps >= T:
        return None
    return run_in_chunks(snn, images, steps)
