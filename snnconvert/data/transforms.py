"""Image transforms from an ``InputSpec``: raw pixels in [0, 1], never normalized."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" conversion


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def check_input_spec(spec: InputSpec) -> None:
    """Raise ``SnnConvertError`` if the geometry cannot be produced from images."""
    if spec.channels not in (1, 3):
        raise SnnConvertError(
            f"input spec has {spec.channels} channels; image data can feed 1 (gray) or 3 (RGB)"
        )
    size = tuple(spec.size)
    if len(size) != 2 or not all(_positive_int(s) for s in size):
        raise SnnConvertError(f"input spec size {spec.size!r} must be two positive ints (H, W)")
    if spec.resize is not None and not _positive_int(spec.resize):
        raise SnnConvertError(f"input spec resize {spec.resize!r} must be a positive int or None")


def _crop_offset(full: int, crop: int) -> int:
    """Left/top offset of a centered crop; negative (zero padding) when the crop is larger."""
    if crop > full:
        return -((crop - full) // 2)
    return int(round((full - crop) / 2.0))


class BitDepthError(ValueError):
    """An image whose pixels cannot be mapped to the 8-bit input a model takes."""


FLOAT_PIXELS = ("32-bit float pixels: their range is not known, so they cannot be mapped to the model's 8-bit "
                "input; save the images as 8-bit (or 16-bit) PNG")


def is_sixteen_bit(mode: str) -> bool:
    """True for PIL's 16-bit gray modes (and 32-bit ``I``, read as 16-bit when in 0..65535)."""
    return mode in _SIXTEEN_BIT_MODES


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode == mode:
        return image
    if image.mode == "F":
        raise BitDepthError(FLOAT_PIXELS)
    if image.mode in _SIXTEEN_BIT_MODES:  # 16-bit gray: scale 0..65535 to 0..255
        wide = np.asarray(image, dtype=np.int64)
        if wide.size and (int(wide.min()) < 0 or int(wide.max()) > 65535):
            raise BitDepthError(f"32-bit integer pixels ({int(wide.min())}..{int(wide.max())}) beyond 16 bits "
                                "cannot be mapped to the model's 8-bit input; save the images as 8-bit PNG")
        image = Image.fromarray(((wide + 128) // 257).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> uint8 array (channels, H, W) following an ``InputSpec``.

    Convert to RGB or L; with ``resize`` scale the shorter side to ``resize`` (bilinear,
    antialiased) and center-crop ``size`` (zero-padded if larger, like torchvision); without it,
    resize to ``size`` only when the image differs. Divide by 255 to get the model input.
    """

    channels: int
    size: tuple[int, int]
    resize: int | None = None

    @classmethod
    def from_input_spec(cls, spec: InputSpec) -> ImageTransform:
        check_input_spec(spec)
        resize = None if spec.resize is None else int(spec.resize)
        return cls(spec.channels, (int(spec.size[0]), int(spec.size[1])), resize)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = _to_mode(image, "RGB" if self.channels == 3 else "L")
        height, width = self.size
        if self.resize is not None:
            w, h = image.size
            if w <= h:
                new_w, new_h = self.resize, int(self.resize * h / w)
            else:
                new_w, new_h = int(self.resize * w / h), self.resize
            if (new_w, new_h) != (w, h):
                image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = _crop_offset(new_w, width), _crop_offset(new_h, height)
            if (left, top, width, height) != (0, 0, new_w, new_h):
                image = image.crop((left, top, left + width, top + height))
        elif image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            return pixels[None].copy()  # PIL's buffer is read-only
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def matches(self, channels: int, height: int, width: int) -> bool:
        """True if an image of this geometry passes through unchanged."""
        if channels != self.channels:
            return False
        if self.resize is None:
            return (height, width) == self.size
        return min(height, width) == self.resize and (height, width) == self.size


def adapt_tensor(x: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Adapt float images (C, H, W) or (N, C, H, W) in [0, 1] to ``channels`` and ``size``.

    Bilinear (antialiased) resize to ``size``; 1 channel is repeated, 3 channels become luma.
    Returns ``x`` itself when it already matches.
    """
    single = x.dim() == 3
    batch = x.unsqueeze(0) if single else x
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(
            batch, size=tuple(size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    c_in = batch.shape[1]
    if c_in != channels:
        if c_in == 1:
            batch = batch.expand(-1, channels, -1, -1).contiguous()
        elif c_in == 3 and channels == 1:
            weights = torch.tensor(_LUMA, dtype=batch.dtype).view(1, 3, 1, 1)
            batch = (batch * weights).sum(dim=1, keepdim=True)
        else:
            raise SnnConvertError(f"cannot adapt {c_in}-channel images to {channels} channels")
    return batch[0] if single else batch
