"""ImageFolder-style data (``imagefolder:PATH``, ``imagenet:PATH``) read with PIL.

Layout: ``ROOT/<class>/<file>``; classes are the sorted non-hidden subfolder names, images are
found recursively below each class folder (hidden files skipped) with the extensions in
``IMAGE_EXTENSIONS`` (case-insensitive). Sample ids are posix paths relative to the spec path.
Symlinked folders are followed once each; a link back to a folder on its own path is an error.
The first image of up to 16 classes is probed: float pixels are refused, 16-bit ones and a size
other than the model's are notes (``snnconvert.data.classes`` checks the class names).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from snnconvert.data.classes import shown
from snnconvert.data.datasets import FileImageDataset
from snnconvert.data.pool import Pool, require_dir
from snnconvert.data.specs import DataSpec
from snnconvert.data.transforms import FLOAT_PIXELS, ImageTransform, is_sixteen_bit
from snnconvert.errors import SnnConvertError
from snnconvert.limits import require_regular_file, shorten

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}
_EXTS = "/".join(e[1:] for e in IMAGE_EXTENSIONS)
_PROBES = 16  # classes whose first image header is read for bit depth and size notes


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def class_folders(root: Path) -> list[str]:
    """Sorted names of the non-hidden subfolders of ``root``; a symlink that cannot be
    resolved (it points at itself, or in a circle) is a one-line error naming it."""
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()
            except OSError as exc:
                raise SnnConvertError(f"data folder {shorten(entry.path, 200)} cannot be opened "
                                      f"({exc.strerror or exc.__class__.__name__}); remove or fix that link") from None
            if is_folder:
                names.append(entry.name)
    return sorted(names)


def _dir_key(path: str | os.DirEntry) -> tuple[int, int] | None:
    """(device, inode) of a folder, symlinks followed; None if it cannot be read."""
    try:
        info = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def files_under(folder: Path, keep: Callable[[str], bool]) -> list[str]:
    """Posix paths (relative to ``folder``) of the non-hidden files below it whose name ``keep``
    accepts, recursively, sorted (hidden folders are skipped).

    Symlinked folders are followed once: a folder reached again by another link is skipped, and
    a link back to a folder on its own path (a loop) is a one-line error naming both.
    """
    found: list[str] = []
    top = _dir_key(folder)
    if top is None:
        return found
    visited = {top}
    stack: list[tuple[str, dict[tuple[int, int], str]]] = [("", {top: ""})]
    while stack:
        rel, ancestors = stack.pop()
        try:
            with os.scandir(folder / rel if rel else folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        prefix = f"{rel}/" if rel else ""
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                if keep(entry.name):
                    found.append(prefix + entry.name)
                continue
            key = _dir_key(entry)
            if key is None:
                continue
            if key in ancestors:
                back = folder / ancestors[key] if ancestors[key] else folder
                raise SnnConvertError(f"symlink loop in the data: {shown(str(folder / prefix / entry.name), 160)} "
                                      f"leads back to {shown(str(back), 160)}; remove that link")
            if key not in visited:
                visited.add(key)
                subdirs.append((prefix + entry.name, {**ancestors, key: prefix + entry.name}))
        stack.extend(reversed(subdirs))
    return found


def images_under(folder: Path) -> list[str]:
    """Posix paths (relative to ``folder``) of the images below it, recursively, sorted."""
    return files_under(folder, _is_image)


def natural_split(root: Path) -> tuple[str, str] | None:
    """``("train", "val" | "test")`` if ``root`` holds split subfolders, else None."""
    if not (root / "train").is_dir():
        return None
    for eval_name in ("val", "test"):
        if (root / eval_name).is_dir():
            return "train", eval_name
    return None


def _looks_like_split(name: str) -> bool:
    low = name.lower()
    prefixes = tuple(f"{s}{c}" for s in _SPLIT_NAMES for c in "-_")
    return low in _SPLIT_NAMES or low.startswith(prefixes)


def _check_not_splits(root: Path, classes: list[str]) -> None:
    """Refuse a pool whose 'classes' are really split folders (e.g. test/, train-subset/)."""
    suspicious = []
    for name in classes:
        if not _looks_like_split(name):
            continue
        with os.scandir(root / name) as entries:
            kinds = [(e.is_dir(), _is_image(e.name)) for e in entries]
        if any(d for d, _ in kinds) and not any(i for _, i in kinds):
            suspicious.append(name)
    if suspicious:
        first = suspicious[0]
        raise SnnConvertError(
            f"{root} holds split folders ({', '.join(suspicious)}), not class folders: "
            f"point at one split, e.g. imagefolder:{root / first}, or name them train/ and val/"
        )


def _scan(base: Path, sub: str, classes: list[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Ids (relative to ``base``), labels and class names without images, for ``base/sub``."""
    ids: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    prefix = f"{sub}/" if sub else ""
    for label, name in enumerate(classes):
        folder = base / sub / name
        files = images_under(folder) if folder.is_dir() else []
        if not files:
            empty.append(name)
        ids += [f"{prefix}{name}/{f}" for f in files]
        labels += [label] * len(files)
    return ids, np.asarray(labels, dtype=np.int64), empty


def _file_pool(
    spec: DataSpec,
    base: Path,
    sub: str,
    classes: list[str],
    transform: ImageTransform,
    shared: bool,
) -> Pool:
    where_path = base / sub if sub else base
    ids, labels, empty = _scan(base, sub, classes)
    if not ids:
        raise SnnConvertError(f"no images in {where_path}: its class folders hold no {_EXTS} files")
    notes = []
    if empty:
        shown = ", ".join(empty[:3]) + (", ..." if len(empty) > 3 else "")
        notes.append(f"{len(empty)} class folder(s) without images here: {shown}")
    notes += _probe_notes(base, ids, labels, transform)

    def build(positions: np.ndarray) -> FileImageDataset:
        return FileImageDataset(base, [ids[p] for p in positions], labels[positions], transform)

    return Pool(f"{spec.kind} {where_path}", ids, labels, classes, build, shared, notes)


def _probe_notes(base: Path, ids: list[str], labels: np.ndarray, transform: ImageTransform) -> list[str]:
    """Notes from the headers of the first image of up to ``_PROBES`` classes: 16-bit pixels
    (scaled to 8 bits) and a size the model's input differs from (resized). Float pixels are
    refused here already, before any decoding."""
    firsts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])[:_PROBES] if len(labels) else []
    deep = sizes = 0
    shape = None
    for position in firsts:
        path = base / ids[position]
        try:
            with Image.open(require_regular_file(path, "image")) as image:
                mode, size = image.mode, image.size
        except (SnnConvertError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # decoding names the file
        if mode == "F":
            raise SnnConvertError(f"cannot read image {shorten(str(path), 200)}: {FLOAT_PIXELS}")
        deep += is_sixteen_bit(mode)
        if transform.resize is None and (size[1], size[0]) != transform.size:
            sizes += 1
            shape = shape or size
    notes = []
    if deep:
        notes.append(f"16-bit images scaled to the model's 8-bit input ({deep} of {len(firsts)} checked)")
    if shape is not None:
        notes.append(f"images of {shape[0]}x{shape[1]} resized to the model's {transform.size[1]}x{transform.size[0]}")
    return notes


def _require_classes(folder: Path, classes: list[str], expected: str) -> None:
    if not classes:
        raise SnnConvertError(
            f"{folder} has no class subfolders; expected {expected} ({_EXTS} images)"
        )


def imagefolder_pool(spec: DataSpec, role: str, transform: ImageTransform) -> Pool:
    """Pool of ``imagefolder:PATH``: a natural train/val(test) split or a single shared pool."""
    root = require_dir(spec)
    split = natural_split(root)
    if split is not None:
        sub = split[0] if role != "eval" else split[1]
        classes = sorted(set(class_folders(root / split[0])) | set(class_folders(root / split[1])))
        _require_classes(root / sub, class_folders(root / sub), f"{root / sub}/<class>/<image>")
        return _file_pool(spec, root, sub, classes, transform, shared=False)
    classes = class_folders(root)
    _require_classes(root, classes, f"{root}/<class>/<image>")
    _check_not_splits(root, classes)
    return _file_pool(spec, root, "", classes, transform, shared=True)


def imagenet_pool(spec: DataSpec, role: str, transform: ImageTransform) -> Pool:
    """Pool of ``imagenet:PATH`` (``train/<wnid>/*``, ``val/<wnid>/*``).

    Eval reads ``val/``; calib/train read ``train/``. Without ``train/``, calib/train take a
    seeded ``calib_split`` fraction of ``val/`` and ``val/`` becomes a shared pool: evaluate
    with ``holdout=True`` to use exactly the rest of it.
    """
    root = require_dir(spec)
    has = {name: (root / name).is_dir() for name in ("train", "val")}
    if not any(has.values()):
        raise SnnConvertError(
            f"imagenet folder {root} has neither train/ nor val/; expected {root}/val/<wnid>/*.JPEG"
        )
    if role == "eval" and not has["val"]:
        raise SnnConvertError(
            f"imagenet folder {root} has no val/ to evaluate on; expected {root}/val/<wnid>/*.JPEG"
        )
    sub = "train" if role != "eval" and has["train"] else "val"
    present = class_folders(root / sub)
    _require_classes(
        root / sub,
        present,
        f"{root / sub}/<wnid>/<image> (sort a flat ILSVRC val/ into wnid folders first)",
    )
    classes = sorted(set().union(*(class_folders(root / n) for n, ok in has.items() if ok)))
    pool = _file_pool(spec, root, sub, classes, transform, shared=not has["train"])
    if len(classes) != 1000:
        pool.notes.append(f"{len(classes)} classes, not 1000: labels follow sorted wnid folders")
    if not has["train"]:
        pool.notes.append("no train/ folder: calibration shares val/")
    return pool


def folder_pool_key(spec: DataSpec, role: str) -> str:
    """The folder a role draws from (resolved), without scanning any files."""
    root = spec.path.resolve() if spec.path is not None else Path()
    if spec.kind == "imagenet":
        sub = "train" if role != "eval" and (root / "train").is_dir() else "val"
        return str(root / sub)
    split = natural_split(root) if root.is_dir() else None
    if split is None:
        return str(root)
    return str(root / (split[0] if role != "eval" else split[1]))
