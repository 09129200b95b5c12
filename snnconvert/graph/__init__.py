"""Graph capture and preparation passes (torch.fx)."""

from snnconvert.graph.capture import capture, propagate_shapes
from snnconvert.graph.passes import canonicalize, fold_normalization, fuse_batchnorm
from snnconvert.graph.prepare import PrepareConfig, prepare
from snnconvert.graph.support import check_supported, unsupported_nodes

__all__ = [
    "PrepareConfig",
    "canonicalize",
    "capture",
    "check_supported",
    "fold_normalization",
    "fuse_batchnorm",
    "prepare",
    "propagate_shapes",
    "unsupported_nodes",
]
