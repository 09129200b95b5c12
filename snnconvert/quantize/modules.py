"""Quantized layers: activation fake-quantizers and per-channel weight-quantized conv/linear."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.graph.modules import conv_args
from snnconvert.quantize.fake_quant import (
    fake_quantize,
    fake_quantize_weight,
    lsq_grad_scale,
    symmetric_weight_scale,
    to_integer,
)
from snnconvert.registry import serializable


@serializable
class ActQuant(nn.Module):
    """Unsigned n-bit activation fake-quantizer: ``Q = clamp(round(x / C) + Z, 0, 2^n - 1)``.

    ``scale`` (C) and ``zero_point`` (Z) have one entry (per tensor) or one per channel
    (channel axis 1). The scale is a parameter so quantization-aware training can learn it;
    it is frozen (``requires_grad=False``) outside QAT.
    """

    snn_kind = "quant"
    serial_params = ("bits", "channels", "upper", "enabled")

    def __init__(self, bits: int, channels: int = 1, *, upper: float | None = None) -> None:
        super().__init__()
        self.bits = int(bits)
        self.upper = upper  # the activation's own clip (ReLU6 -> 6.0), never exceeded
        self.enabled = True
        self.scale = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.register_buffer("zero_point", torch.zeros(channels))

    @property
    def channels(self) -> int:
        return self.scale.numel()

    @classmethod
    def from_serial(cls, bits: int, channels: int, upper: float | None, enabled: bool = True) -> ActQuant:
        q = cls(bits, channels, upper=upper)
        q.enabled = enabled
        return q

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

    def _weight_quant_state(self) -> dict[str, Any]:
        return {"w_bits": self.w_bits, "w_scale_frozen": self.w_scale_frozen, "quantize_weights": self.quantize_weights}

    def _set_weight_quant_state(self, w_scale_frozen: bool, quantize_weights: bool) -> None:
        self.w_scale_frozen = bool(w_scale_frozen)
        self.quantize_weights = bool(quantize_weights)

    @classmethod
    def from_serial(cls, *, w_scale_frozen: bool = False, quantize_weights: bool = True, **kwargs: Any) -> Any:
        """Rebuild from an artifact config: the constructor arguments plus the freeze flags."""
        q = cls(**kwargs)
        q._set_weight_quant_state(w_scale_frozen, quantize_weights)
        return q

    def _take_weights(self, layer: nn.Conv2d | nn.Linear) -> Any:
        """Copy ``layer``'s float weights and bias, then compute the weight scales."""
        with torch.no_grad():
            self.weight.copy_(layer.weight)
            if layer.bias is not None:
                self.bias.copy_(layer.bias)
        self.refresh_weight_scale()
        return self

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


@serializable
class QConv2d(nn.Conv2d, _WeightQuant):
    """Conv2d with per-output-channel symmetric fake-quantized weights."""

    def __init__(self, *args, w_bits: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_quant(w_bits)

    def serial_config(self) -> dict[str, Any]:
        return {**conv_args(self), **self._weight_quant_state()}

    @classmethod
    def from_float(cls, conv: nn.Conv2d, bits: int) -> QConv2d:
        return cls(**conv_args(conv), w_bits=bits)._take_weights(conv)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


@serializable
class QLinear(nn.Linear, _WeightQuant):
    """Linear layer with per-output-channel symmetric fake-quantized weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, w_bits: int = 8) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._init_weight_quant(w_bits)

    def serial_config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                **self._weight_quant_state()}

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: int) -> QLinear:
        return cls(linear.in_features, linear.out_features, linear.bias is not None, w_bits=bits)._take_weights(linear)

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
        q = cls(**conv_args(conv), w_bits=bits)
        q.bn = bn.__class__(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        q.bn.load_state_dict(bn.state_dict())
        return q._take_weights(conv)

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
