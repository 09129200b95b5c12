"""Quantized layers: activation fake-quantizers and per-channel weight-quantized conv/linear."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.quantize.fake_quant import (
    fake_quantize,
    fake_quantize_weight,
    lsq_grad_scale,
    symmetric_weight_scale,
    to_integer,
)


class ActQuant(nn.Module):
    """Unsigned n-bit activation fake-quantizer: ``Q = clamp(round(x / C) + Z, 0, 2^n - 1)``.

    ``scale`` (C) and ``zero_point`` (Z) have one entry (per tensor) or one per channel
    (channel axis 1). The scale is a parameter so quantization-aware training can learn it;
    it is frozen (``requires_grad=False``) outside QAT.
    """

    snn_kind = "quant"

    def __init__(self, bits: int, channels: int = 1, *, upper: float | None = None) -> None:
        super().__init__()
        self.bits = int(bits)
        self.upper = upper  # the activation's own clip (ReLU6 -> 6.0), never exceeded
        self.enabled = True
        self.scale = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.register_buffer("zero_point", torch.zeros(channels))

    @property
    def qmin(self) -> int:
        return 0

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    @property
    def per_channel(self) -> bool:
        return self.scale.numel() > 1

    def _view(self, t: Tensor, x: Tensor) -> Tensor:
        if t.numel() == 1:
            return t.reshape(())
        return t.view((1, -1) + (1,) * (x.dim() - 2))

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        scale = self.scale
        if self.training and scale.requires_grad:
            scale = lsq_grad_scale(scale, 1.0 / math.sqrt(max(1, x.numel() // scale.numel()) * self.qmax))
        return fake_quantize(x, self._view(scale, x), self._view(self.zero_point, x), self.qmin, self.qmax)

    def integer(self, x: Tensor) -> Tensor:
        """Integers ``Q`` of ``x`` (float tensor holding integers in [0, 2^n - 1])."""
        return to_integer(x, self._view(self.scale, x), self._view(self.zero_point, x), self.qmin, self.qmax)

    def clip_range(self) -> tuple[Tensor, Tensor]:
        """Smallest and largest representable real values."""
        scale = self.scale.detach()
        return (self.qmin - self.zero_point) * scale, (self.qmax - self.zero_point) * scale

    def set_range(self, low: Tensor, high: Tensor) -> None:
        """Set scale and zero point so that [low, high] (which must contain 0) is covered."""
        low = torch.minimum(torch.as_tensor(low, dtype=torch.float32), torch.zeros(()))
        high = torch.as_tensor(high, dtype=torch.float32)
        if self.upper is not None:
            high = torch.clamp(high, max=self.upper)
        high = torch.maximum(high, low + 1e-8)
        scale = (high - low) / self.qmax
        zero = torch.round(-low / scale) + 0.0  # no negative zero
        with torch.no_grad():
            self.scale.copy_(scale.expand_as(self.scale))
            self.zero_point.copy_(zero.expand_as(self.zero_point))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, channels={self.scale.numel()}, enabled={self.enabled}"


class _WeightQuant:
    """Shared behaviour of quantized conv and linear layers (per-channel symmetric weights)."""

    weight: nn.Parameter
    w_scale: Tensor
    w_bits: int
    w_scale_frozen: bool
    quantize_weights: bool

    def _init_weight_quant(self, bits: int) -> None:
        self.w_bits = int(bits)
        self.w_scale_frozen = False
        self.quantize_weights = True
        out = self.weight.shape[0]
        self.register_buffer("w_scale", torch.ones(out))  # type: ignore[attr-defined]
        self.refresh_weight_scale()

    def effective_weight(self) -> Tensor:
        """The float weight the layer computes with (before quantization)."""
        return self.weight

    def refresh_weight_scale(self) -> None:
        with torch.no_grad():
            self.w_scale.copy_(symmetric_weight_scale(self.effective_weight(), self.w_bits))

    def quantized_weight(self) -> Tensor:
        weight = self.effective_weight()
        if not self.quantize_weights:
            return weight
        if not self.w_scale_frozen:
            self.refresh_weight_scale()
        return fake_quantize_weight(weight, self.w_scale, self.w_bits)

    def integer_weight(self) -> Tensor:
        """Integer weights ``W_hat / C_w`` in [-(2^(b-1) - 1), 2^(b-1) - 1] (int32)."""
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        qmax = 2 ** (self.w_bits - 1) - 1
        q = torch.round(self.effective_weight().detach() / self.w_scale.view(shape)).clamp(-qmax, qmax)
        return q.to(torch.int32)


class QConv2d(nn.Conv2d, _WeightQuant):
    """Conv2d with per-output-channel symmetric fake-quantized weights."""

    def __init__(self, *args, w_bits: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_quant(w_bits)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, bits: int) -> QConv2d:
        q = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode, w_bits=bits,
        )
        with torch.no_grad():
            q.weight.copy_(conv.weight)
            if conv.bias is not None:
                q.bias.copy_(conv.bias)
        q.refresh_weight_scale()
        return q

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(nn.Linear, _WeightQuant):
    """Linear layer with per-output-channel symmetric fake-quantized weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 8) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_weight_quant(w_bits)

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: int) -> QLinear:
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, w_bits=bits)
        with torch.no_grad():
            q.weight.copy_(linear.weight)
            if linear.bias is not None:
                q.bias.copy_(linear.bias)
        q.refresh_weight_scale()
        return q

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class QConvBn2d(QConv2d):
    """Conv + batch-norm for quantization-aware training (Jacob et al. 2018 folding).

    The weight that is fake-quantized is the BN-folded weight, so what QAT trains is exactly the
    fused layer that conversion uses. Until ``bn_frozen`` is set, training uses batch statistics
    and updates the running ones; afterwards (and in eval) it is a plain fused conv.
    """

    def __init__(self, *args, w_bits: int = 8, **kwargs) -> None:
        self._building = True
        super().__init__(*args, w_bits=w_bits, **kwargs)
        self.bn = nn.BatchNorm2d(self.out_channels)
        self.bn_frozen = False
        self._building = False
        self.refresh_weight_scale()

    @classmethod
    def from_conv_bn(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d, bits: int) -> QConvBn2d:
        q = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode, w_bits=bits,
        )
        q.bn = bn.__class__(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        q.bn.load_state_dict(bn.state_dict())
        with torch.no_grad():
            q.weight.copy_(conv.weight)
            if conv.bias is not None:
                q.bias.copy_(conv.bias)
        q.refresh_weight_scale()
        return q

    def _factor(self) -> Tensor:
        return self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)

    def effective_weight(self) -> Tensor:
        if getattr(self, "_building", False) or not hasattr(self, "bn"):
            return self.weight
        return self.weight * self._factor().view(-1, 1, 1, 1)

    def fused_bias(self) -> Tensor:
        bias = self.bias if self.bias is not None else torch.zeros_like(self.bn.running_mean)
        return (bias - self.bn.running_mean) * self._factor() + self.bn.bias

    def forward(self, x: Tensor) -> Tensor:
        weight = self.quantized_weight()
        if self.training and not self.bn_frozen:
            y = self._conv_forward(x, weight, None) / self._factor().view(1, -1, 1, 1)
            if self.bias is not None:
                y = y + self.bias.view(1, -1, 1, 1)
            return self.bn(y)
        return self._conv_forward(x, weight, self.fused_bias())

    def to_qconv(self) -> QConv2d:
        """The equivalent plain quantized conv with the batch-norm folded in."""
        q = QConv2d(
            self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation, groups=self.groups, bias=True,
            padding_mode=self.padding_mode, w_bits=self.w_bits,
        )
        with torch.no_grad():
            q.weight.copy_(self.effective_weight())
            q.bias.copy_(self.fused_bias())
            q.w_scale.copy_(self.w_scale)
        q.w_scale_frozen = self.w_scale_frozen
        return q


def _register() -> None:
    from snnconvert.serialize import _from_json, _jsonable, register_module

    def act_from(c: dict) -> ActQuant:
        q = ActQuant(c["bits"], c["channels"], upper=c["upper"])
        q.enabled = c["enabled"]
        return q

    register_module(
        "ActQuant", ActQuant,
        lambda q: {"bits": q.bits, "channels": q.scale.numel(), "upper": q.upper, "enabled": q.enabled},
        act_from,
    )

    def wq_state(m: _WeightQuant) -> dict:
        return {"w_bits": m.w_bits, "w_scale_frozen": m.w_scale_frozen, "quantize_weights": m.quantize_weights}

    def set_wq_state(m: _WeightQuant, c: dict) -> None:
        m.w_scale_frozen = c["w_scale_frozen"]
        m.quantize_weights = c["quantize_weights"]

    def qconv_to(m: QConv2d) -> dict:
        return {
            "in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": _jsonable(m.kernel_size), "stride": _jsonable(m.stride),
            "padding": _jsonable(m.padding), "dilation": _jsonable(m.dilation),
            "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode,
            **wq_state(m),
        }

    def qconv_from(c: dict) -> QConv2d:
        keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                "groups", "bias", "padding_mode", "w_bits")
        m = QConv2d(**{k: _from_json(c[k]) for k in keys})
        set_wq_state(m, c)
        return m

    def qlinear_from(c: dict) -> QLinear:
        m = QLinear(c["in_features"], c["out_features"], c["bias"], w_bits=c["w_bits"])
        set_wq_state(m, c)
        return m

    register_module("QConv2d", QConv2d, qconv_to, qconv_from)
    register_module(
        "QLinear", QLinear,
        lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                   "bias": m.bias is not None, **wq_state(m)},
        qlinear_from,
    )


_register()
