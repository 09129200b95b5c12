"""Map-style datasets yielding ``(x, y)``: x float32 (C, H, W) in [0, 1], y an int class index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from snnconvert.data.transforms import ImageTransform, adapt_tensor
from snnconvert.errors import SnnConvertError
from snnconvert.limits import require_regular_file

_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ByteImageDataset(Dataset):
    """Images whose pixels are uint8 (C, H, W); items are those bytes divided by 255."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: int) -> np.ndarray:
        """The uint8 (C, H, W) pixels of item ``index`` after the transform."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.pixels(index)).to(torch.float32).div_(255.0)
        return x, int(self.labels[index])


class FileImageDataset(ByteImageDataset):
    """Image files under ``root`` (paths relative to it), decoded with PIL on access."""

    def __init__(
        self, root: Path, files: list[str], labels: np.ndarray, transform: ImageTransform
    ) -> None:
        self.root = Path(root)
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        if len(self.files) != len(self.labels):
            raise ValueError("files and labels differ in length")

    def pixels(self, index: int) -> np.ndarray:
        path = require_regular_file(self.root / self.files[index], "image")  # a pipe would block open()
        try:
            with Image.open(path) as image:
                return self.transform(image)
        except _READ_ERRORS as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SnnConvertError(
                f"cannot read image {path}: {reason}; remove or replace the file"
            ) from None


class ArrayImageDataset(ByteImageDataset):
    """uint8 images (N, C, H, W) in memory, passed through ``transform`` if one is given."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: ImageTransform | None = None
    ) -> None:
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def pixels(self, index: int) -> np.ndarray:
        chw = self.images[index]
        if self.transform is None:
            return chw
        mode = "L" if chw.shape[0] == 1 else "RGB"
        hwc = chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)
        return self.transform(Image.fromarray(np.ascontiguousarray(hwc), mode))


class TensorImageDataset(Dataset):
    """Images in one tensor (N, C, H, W): uint8 (scaled by 1/255) or float in [0, 1].

    With ``adapt=(channels, (H, W))`` each float item is resized/re-channelled on access
    (see ``adapt_tensor``), so a large target size costs no memory up front.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        adapt: tuple[int, tuple[int, int]] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError("images must be uint8 or floating point")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.adapt = adapt
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
        if self.adapt is not None:
            x = adapt_tensor(x, *self.adapt)
        return x, int(self.labels[index])
