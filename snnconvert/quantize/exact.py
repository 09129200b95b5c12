"""The quantized ANN in exact arithmetic: the reference a converted network's agreement is
measured against.

The quantized ANN computes ``y = conv(x, W_q) + b`` with ``W_q = C_w * q`` (integer ``q`` per
output channel scale ``C_w``) on activations ``x = C_a * (Q - Z)``. In float32 the convolution's
sum rounds at every addition, in an order that depends on the CPU's kernels and the batch size, so
a value that lands near a rounding boundary of the next activation quantizer can fall on either
side: the float32 quantized ANN is itself inexact (issue 27 traced ResNet-56's last 0.35 points to
it). :func:`exact_reference` evaluates the same network so that every sum is exact:

* weights stay integers: ``y = conv(x, q) * C_w + b``, in float64;
* an activation is ``C_a * n`` with an integer ``n`` (``|n| < 2^8`` for 8 bits) and ``C_a`` a
  float32 (24-bit significand), so each term ``C_a * n * q`` (``|q| < 2^7`` for 8-bit weights) is
  an integer multiple of the last bit of ``C_a`` below ``2^(24 + 8 + 7)`` of them; a sum of K such
  terms is exact in float64 while ``K * 2^39 < 2^53``, i.e. for K < 16,384 inputs (a 3x3x512
  convolution has 4,608). More bits, wider layers or per-channel activation scales of different
  exponents: exact to the last bit of the largest term (~1e-16 relative);
* then one rounding for ``* C_w`` and one for ``+ b``: the same float64 value on every CPU, in any
  batch, so the next quantizer's integer is the one the real-number network gives unless the
  value is within ~1e-16 of a rounding boundary.

The first layer sees the quantized image ``C_in * (Q - Z)`` and, where the folded input
normalization pads the border, pad values on the same grid: the quantizer snapped them there, but
stored in float32 they are ``C_in * (Q - Z)`` rounded to 24 bits (a relative 1e-8 off the grid,
enough to move a border neuron across a rounding boundary); the reference recomputes them in
float64. Layers of other kinds (pooling, sums, a method's own modules) run in float64 as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snnconvert.quantize.modules import QConv2d, QLinear
from snnconvert.quantize.quantizer import snap_input_pads


class ExactWeightLayer(nn.Module):
    """A :class:`QConv2d` or :class:`QLinear` that keeps its weights integers: ``layer(x, q) * C_w + b``."""

    def __init__(self, layer: QConv2d | QLinear) -> None:
        super().__init__()
        self.layer = copy.deepcopy(layer).double()
        self.register_buffer("integer", layer.integer_weight().double())
        self.register_buffer("weight_scale", layer.w_scale.detach().double().clone())
        bias = layer.bias.detach().double().clone() if layer.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.double()
        if isinstance(self.layer, QConv2d):
            y = self.layer._conv_forward(x, self.integer, None)
        else:
            y = F.linear(x, self.integer)
        shape = (1, -1) + (1,) * (y.dim() - 2)
        y = y * self.weight_scale.view(shape)
        return y if self.bias is None else y + self.bias.view(shape)


def _standard(module: nn.Module) -> bool:
    """A quantized conv/linear whose forward is the plain ``layer(x, C_w * q) + b``."""
    if isinstance(module, QConv2d):
        return type(module).forward is QConv2d.forward and module.quantize_weights
    if isinstance(module, QLinear):
        return type(module).forward is QLinear.forward and module.quantize_weights
    return False


def exact_reference(model: fx.GraphModule) -> fx.GraphModule:
    """A float64 copy of the quantized ANN ``model`` whose weighted layers sum exactly (see the
    module docstring); ``model`` is left as it is."""
    exact = copy.deepcopy(model).double().eval()
    snap_input_pads(exact)  # the border pad's grid values, which float32 storage rounded, recomputed in float64
    for name, module in list(exact.named_modules()):
        if name and _standard(module):
            parent, _, child = name.rpartition(".")
            setattr(exact.get_submodule(parent) if parent else exact, child, ExactWeightLayer(module))
    return exact


def exact_layers(model: nn.Module) -> int:
    """How many layers of ``model`` (an :func:`exact_reference`) sum exactly."""
    return sum(isinstance(m, ExactWeightLayer) for m in model.modules())


@torch.no_grad()
def exact_logits(model: fx.GraphModule, images: Tensor, batch_size: int = 100) -> Tensor:
    """The logits of :func:`exact_reference` of ``model`` on ``images`` (float64)."""
    exact = exact_reference(model)
    return torch.cat([exact(images[i:i + batch_size].double()) for i in range(0, len(images), batch_size)])
