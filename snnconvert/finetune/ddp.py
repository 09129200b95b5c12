"""The fine-tuning engine's data parallelism is :class:`snnconvert.distributed.DistContext`
(shared with quantization-aware training and sharded evaluation)."""

from snnconvert.distributed import DistContext

__all__ = ["DistContext"]
