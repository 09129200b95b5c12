"""Input encoders that feed analog frames (no spikes) to the first synapse."""

from __future__ import annotations

from torch import Tensor, nn

from snnconvert.errors import SnnConvertError, option_ref
from snnconvert.registry import serializable


@serializable
class RepeatEncoder(nn.Module):
    """Direct input encoding over ``T`` steps, time-folded and time-major:

    * (B, C, H, W) images -> the same analog frame at each of the T steps, (T*B, C, H, W);
    * (B, T, C, H, W) sequences (e.g. multi-level event frames) -> frame k at step k.
    """

    serial_params = ("T",)

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = int(T)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 5:
            if images.shape[1] != self.T:
                raise SnnConvertError(
                    f"the input holds {images.shape[1]} frames per sample but this network runs T = {self.T} "
                    f"steps; convert it with {option_ref('T', '--T')} {images.shape[1]}"
                )
            return images.transpose(0, 1).reshape(-1, *images.shape[2:])
        frames = images.unsqueeze(0).expand(self.T, *images.shape)
        return frames.reshape(self.T * images.shape[0], *images.shape[1:])

    def extra_repr(self) -> str:
        return f"T={self.T}"
