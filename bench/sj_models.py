"""SpikingJelly side of the peer benchmark: model rewrites it accepts, its rate-coding conversion, and
runners that return per-step classifier outputs (plus the same for snnconvert's rate networks).

``rewrite_for_spikingjelly`` turns a model into an equivalent fx graph that SpikingJelly 2.0.0's
``RateCodingRecipe`` accepts: every ReLU call its own ``nn.ReLU`` module (also functional ``F.relu``),
``torch.flatten`` an ``nn.Flatten``, and the option-A shortcut (slice + zero-pad ``F.pad``) an exact
fixed 1x1 stride-s convolution with 0/1 weights. Residual ``+`` stays (SpikingJelly passes it through).
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from snnconvert.models.cifar_resnet import ShortcutA
from snnconvert.neurons.base import unfold_time
from snnconvert.simulate.network import SpikingNetwork

SJ_MODES = ("max", "99.9%")


class _ShortcutLeafTracer(fx.Tracer):
    """Keeps option-A shortcuts as single ``call_module`` nodes so they can be swapped whole."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, ShortcutA) or super().is_leaf_module(m, module_qualified_name)


def zero_pad_shortcut_conv(shortcut: ShortcutA, in_channels: int) -> nn.Conv2d:
    """The option-A shortcut as a 1x1 convolution with stride ``shortcut.stride``: input channel c
    goes to output channel ``c + pad_before`` with weight 1, every other weight is 0 (exact)."""
    out_channels = in_channels + shortcut.pad_before + shortcut.pad_after
    conv = nn.Conv2d(in_channels, out_channels, 1, stride=shortcut.stride, bias=False)
    weight = torch.zeros(out_channels, in_channels, 1, 1)
    channels = torch.arange(in_channels)
    weight[channels + shortcut.pad_before, channels, 0, 0] = 1.0
    conv.weight = nn.Parameter(weight, requires_grad=False)
    return conv


def _is_relu_call(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (F.relu, torch.relu)) or (
        node.op == "call_method" and node.target in ("relu", "relu_"))


def rewrite_for_spikingjelly(model: nn.Module, example: Tensor) -> fx.GraphModule:
    """An equivalent copy of ``model`` (see module docstring); ``model`` itself is not changed.
    ``example`` (a small input batch) gives the channel counts the shortcut convolutions need."""
    model = copy.deepcopy(model).eval()
    tracer = _ShortcutLeafTracer()
    gm = fx.GraphModule(model, tracer.trace(model))
    ShapeProp(gm).propagate(example)
    seen_relu: set[str] = set()
    count = 0

    def insert(node: fx.Node, module: nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal count
        name = f"sj_rewrite_{count}"
        count += 1
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, args)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)

    for node in list(gm.graph.nodes):
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, ShortcutA):
            source = node.args[0]
            insert(node, zero_pad_shortcut_conv(module, int(source.meta["tensor_meta"].shape[1])), (source,))
        elif type(module) is nn.ReLU:
            if node.target in seen_relu:  # a ReLU module called twice: one neuron layer per call
                insert(node, nn.ReLU(), (node.args[0],))
            seen_relu.add(str(node.target))
        elif _is_relu_call(node):
            insert(node, nn.ReLU(), (node.args[0],))
        elif node.op == "call_function" and node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            insert(node, nn.Flatten(start, end), (node.args[0],))
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval()


@dataclass
class Conversion:
    """One attempt at converting a model with SpikingJelly's rate-coding recipe."""

    model: str
    variant: str  # "as ingested" | "rewritten"
    mode: str
    ok: bool
    error: str | None
    seconds: float
    snn: nn.Module | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "snn"}


def sj_convert(model: nn.Module, calibration: list[tuple[Tensor, Tensor]], mode: str, *, name: str,
               variant: str) -> Conversion:
    """``FXConverter(recipe=RateCodingRecipe(dataloader, mode))`` on a copy of ``model`` (the recipe
    fuses batch-norm into the traced modules, which would change the caller's model)."""
    from spikingjelly.activation_based import ann2snn

    start = time.perf_counter()
    try:
        converter = ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader=calibration, mode=mode))
        with contextlib.redirect_stderr(io.StringIO()):  # its calibration progress bar
            snn = converter.convert(copy.deepcopy(model))
    except Exception as exc:  # the failure itself is the measurement
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        return Conversion(name, variant, mode, False, _strip_addresses(message), time.perf_counter() - start)
    return Conversion(name, variant, mode, True, None, time.perf_counter() - start, snn.eval())


def _strip_addresses(text: str) -> str:
    import re

    return re.sub(r" at 0x[0-9a-f]+", "", text)


@torch.no_grad()
def sj_outputs(snn: nn.Module, images: Tensor, T: int, batch_size: int, *, multi_step: bool = True) -> Tensor:
    """Classifier output of a SpikingJelly SNN at each of T steps, (T, N, classes), for the constant
    input ``images`` (already normalized). Multi-step mode feeds the whole [T, B, ...] sequence at
    once; single-step mode calls the network T times (SpikingJelly's documented loop)."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(snn, "m" if multi_step else "s")
    outputs = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        functional.reset_net(snn)
        if multi_step:
            outputs.append(snn(x.unsqueeze(0).repeat(T, *([1] * x.dim()))))
        else:
            outputs.append(torch.stack([snn(x) for _ in range(T)]))
    functional.reset_net(snn)
    return torch.cat(outputs, dim=1)


@torch.no_grad()
def sj_single_step_cumulative(snn: nn.Module, images: Tensor, T: int, batch_size: int,
                              checkpoints: tuple[int, ...]) -> dict[int, float]:
    """Wall seconds a single-step SpikingJelly run needs to reach each of ``checkpoints`` steps on
    all of ``images`` (one T-step run per batch; time summed over batches)."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(snn, "s")
    elapsed = dict.fromkeys(checkpoints, 0.0)
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        functional.reset_net(snn)
        start = time.perf_counter()
        total = None
        for t in range(1, T + 1):
            out = snn(x)
            total = out if total is None else total + out
            if t in elapsed:
                elapsed[t] += time.perf_counter() - start
    functional.reset_net(snn)
    return elapsed


@torch.no_grad()
def snnc_outputs(snn: SpikingNetwork, images: Tensor, batch_size: int) -> Tensor:
    """Classifier output of an snnconvert rate/M-LIF network at each step, (T, N, classes): the
    decoder's input frames, read with a forward hook (the network's own output is their mean)."""
    steps = int(snn.info["frames"])
    frames: list[Tensor] = []
    handle = snn.decoder.register_forward_hook(lambda _m, inputs, _out: frames.append(unfold_time(inputs[0], steps)))
    try:
        for i in range(0, len(images), batch_size):
            snn(images[i:i + batch_size])
    finally:
        handle.remove()
    return torch.cat(frames, dim=1).float()


def prefix_means(outputs: Tensor) -> Tensor:
    """(T, N, C) per-step outputs -> (T, N, C) running means: entry t-1 is the decoded output of
    a t-step run (both tools' rate coding is causal and decodes by the mean)."""
    steps = torch.arange(1, outputs.shape[0] + 1, dtype=outputs.dtype).view(-1, 1, 1)
    return outputs.cumsum(0) / steps


def top1(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


__all__ = ["SJ_MODES", "Conversion", "prefix_means", "rewrite_for_spikingjelly", "sj_convert", "sj_outputs",
           "sj_single_step_cumulative", "snnc_outputs", "top1", "zero_pad_shortcut_conv"]
