"""Event-frame data (``events:PATH``) and the multi-level input encoding of M-LIF (§5.2.2).

Layout: ``PATH/<class>/<sample>.npy|.pt`` (one shared pool, split by ``calib_split`` like a
single-pool imagefolder) or ``PATH/train/<class>/...`` plus ``PATH/val|test/<class>/...``.
Each file holds the ``T_F`` event frames of one recording, shaped (T_F, C, H, W) or
(T_F, H, W) (one channel); ``.npy`` is read with ``allow_pickle=False``, ``.pt`` with
``weights_only=True`` and must hold a plain tensor. A frame value > 0 counts as one event
(binary frames; count frames are binarized). The frames must match the model's input geometry
(channels and size): event frames are not resized.

Multi-level input encoding (``events,S=N:PATH``): every ``K = 2^(S-1)`` consecutive binary
frames combine into one one-hot multi-level frame, ``Q_F = T_F / K`` (T_F must be a multiple
of K). The paper does not spell out the combination rule; here the event count ``c`` (0..K)
of each pixel and channel over the K frames becomes the largest lane value not above it::

    level(c) = 0 if c == 0 else 2^floor(log2 c)      (one lane fires: s = floor(log2 c) <= S-1)

so the one-hot frame never shows more events than occurred (S = 3: counts 0,1,2,3,4 -> levels
0,1,2,2,4). ``S = 1`` keeps the binary frames. Items are float32 (Q_F, C, H, W) tensors of lane
values (not scaled to [0, 1]); the M-LIF coding feeds frame k to time step k.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from snnconvert.data.folders import _check_not_splits, class_folders, files_under, natural_split
from snnconvert.data.input_spec import InputSpec
from snnconvert.data.pool import Pool, require_dir
from snnconvert.data.specs import DataSpec, check_event_options
from snnconvert.errors import SnnConvertError
from snnconvert.limits import require_regular_file

EVENT_EXTENSIONS = (".npy", ".pt")


def multilevel_frames(frames: Tensor, S: int) -> Tensor:
    """Combine every ``2^(S-1)`` binary frames of ``frames`` (T_F, ...) into one one-hot
    multi-level frame (see module docstring); returns float32 (T_F / 2^(S-1), ...)."""
    group = 2 ** (S - 1)
    steps = frames.shape[0]
    if steps == 0 or steps % group:
        raise SnnConvertError(
            f"{steps} event frames cannot be grouped by {group} (S={S}): T_F must be a positive "
            f"multiple of 2^(S-1)"
        )
    counts = (frames > 0).reshape(steps // group, group, *frames.shape[1:]).sum(dim=1)
    edges = torch.tensor([2**s for s in range(S)], dtype=counts.dtype)
    levels = torch.tensor([0.0] + [2.0**s for s in range(S)])
    return torch.take(levels, torch.bucketize(counts, edges, right=True))  # edges <= c counted


def load_event_frames(path: Path) -> Tensor:
    """The frames stored in one ``.npy``/``.pt`` file, read without unpickling code."""
    require_regular_file(path, "event file")  # a named pipe or device would block the read
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"unsupported array dtype {array.dtype}")
            return torch.from_numpy(np.ascontiguousarray(array))
        from snnconvert.safe_zip import check_torch_zip

        check_torch_zip(path, "event file")  # sizes and format before torch allocates anything
        value = torch.load(path, map_location="cpu", weights_only=True)
    except SnnConvertError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse the bytes (struct.error, ...) is a bad file
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise SnnConvertError(f"cannot read event frames {path}: {reason}") from None
    if not isinstance(value, Tensor) or value.is_complex():
        raise SnnConvertError(f"{path} does not hold a real tensor of event frames")
    return value


class EventFrameDataset(Dataset):
    """Event-frame files below ``root``; items are ``(multi-level frames, label)``."""

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, S: int,
                 geometry: tuple[int, int, int]) -> None:
        self.root = Path(root)
        self.files = list(files)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.S = int(S)
        self.geometry = tuple(geometry)  # (channels, H, W) the model expects
        if len(self.files) != len(self.labels):
            raise ValueError("files and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path = self.root / self.files[index]
        frames = load_event_frames(path)
        if frames.dim() == 3:
            frames = frames.unsqueeze(1)
        if frames.dim() != 4 or tuple(frames.shape[1:]) != self.geometry:
            c, h, w = self.geometry
            raise SnnConvertError(
                f"{path} holds frames of shape {tuple(frames.shape)}; expected (T_F, {c}, {h}, {w}) "
                f"for a model with {c}x{h}x{w} inputs"
            )
        try:
            levels = multilevel_frames(frames, self.S)
        except SnnConvertError as exc:
            raise SnnConvertError(f"{path}: {exc}") from None
        return levels, int(self.labels[index])


def _event_files(folder: Path) -> list[str]:
    return files_under(folder, lambda name: os.path.splitext(name)[1].lower() in EVENT_EXTENSIONS)


def events_pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    """Pool of ``events[,S=N]:PATH`` (natural train/val(test) split or one shared pool)."""
    S = check_event_options(spec.text, dict(spec.options))
    root = require_dir(spec)
    split = natural_split(root)
    if split is not None:
        sub = split[0] if role != "eval" else split[1]
        classes = sorted(set(class_folders(root / split[0])) | set(class_folders(root / split[1])))
    else:
        sub, classes = "", class_folders(root)
        _check_not_splits(root, classes)
    where = root / sub if sub else root
    if not classes:
        raise SnnConvertError(f"{where} has no class subfolders; expected {where}/<class>/<sample>.npy|.pt")
    ids: list[str] = []
    labels: list[int] = []
    prefix = f"{sub}/" if sub else ""
    for label, name in enumerate(classes):
        folder = root / sub / name
        files = _event_files(folder) if folder.is_dir() else []
        ids += [f"{prefix}{name}/{f}" for f in files]
        labels += [label] * len(files)
    if not ids:
        raise SnnConvertError(f"no event frames in {where}: its class folders hold no .npy/.pt files")
    label_array = np.asarray(labels, dtype=np.int64)
    geometry = (int(input_spec.channels), int(input_spec.size[0]), int(input_spec.size[1]))

    def build(positions: np.ndarray) -> EventFrameDataset:
        return EventFrameDataset(root, [ids[p] for p in positions], label_array[positions], S, geometry)

    notes = [f"S={S}: {2 ** (S - 1)} binary frame(s) per one-hot frame"] if S > 1 else []
    return Pool(f"events {where}", ids, label_array, classes, build, shared=split is None, notes=notes)
