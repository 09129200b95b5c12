"""The preparation pipeline: capture, check, canonicalize, fold normalization, fuse batch-norm."""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from snnconvert.data.input_spec import InputSpec
from snnconvert.graph.capture import capture, propagate_shapes
from snnconvert.graph.passes import canonicalize, fold_normalization, fuse_batchnorm, remove_noops
from snnconvert.graph.support import check_supported


@dataclass
class PrepareConfig:
    """Options of :func:`prepare`."""

    fold_normalization: bool = True
    fuse_batchnorm: bool = True


def prepare(
    model: nn.Module, input_spec: InputSpec, config: PrepareConfig | None = None
) -> fx.GraphModule:
    """Turn a float classifier into the canonical graph the quantizer and codings work on.

    The result takes raw pixels in [0, 1] (the normalization of ``input_spec`` is folded in) and
    gives the same logits as ``model((x - mean) / std)``; ``model`` itself is left untouched.
    """
    config = config or PrepareConfig()
    shape = input_spec.example_shape(2)
    gm = remove_noops(capture(model, shape))  # eval-mode stochastic depth / dropout, shape asserts
    check_supported(gm, stage="preparation")
    gm = canonicalize(gm)
    if config.fold_normalization:
        gm = fold_normalization(gm, input_spec.mean, input_spec.std)
    if config.fuse_batchnorm:
        gm = fuse_batchnorm(gm)
    return propagate_shapes(gm, shape)
