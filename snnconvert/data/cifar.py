"""CIFAR-10 in torchvision's on-disk python format (``cifar-10-batches-py``), never downloaded.

The batch files are pickles; they are read with ``RestrictedUnpickler``, which can rebuild numpy
arrays and nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from snnconvert.data.datasets import ArrayImageDataset
from snnconvert.data.pool import Pool, require_dir
from snnconvert.data.specs import DataSpec
from snnconvert.data.transforms import ImageTransform
from snnconvert.errors import SnnConvertError
from snnconvert.limits import require_regular_file

try:  # numpy >= 2 (numpy 1.26 ships numpy._core stubs, older ones do not)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, restricted to latin-1."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _multiarray._reconstruct
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # bytes in Python-3 protocol-2 pickles
    }
    frombuffer = getattr(_numeric, "_frombuffer", None)  # arrays in protocol-5 pickles
    if frombuffer is not None:
        allowed[("numpy.core.numeric", "_frombuffer")] = frombuffer
        allowed[("numpy._core.numeric", "_frombuffer")] = frombuffer
    return allowed


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle referenced a global outside the numpy-array allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays (and plain containers) and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_globals().get((module, name))
        if found is None:
            raise ForbiddenGlobalError(module, name)
        return found


def load_restricted(path: Path) -> Any:
    """Unpickle ``path`` with ``RestrictedUnpickler`` (latin-1 for Python 2 strings)."""
    require_regular_file(path, "CIFAR-10 batch")  # a named pipe or device would block the read
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="latin1").load()
    except ForbiddenGlobalError as exc:
        raise SnnConvertError(
            f"refusing to load {path}: it references the forbidden global {exc.qualname} "
            "(CIFAR-10 batches hold only numpy arrays); the file is corrupt or malicious"
        ) from None
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        pickle.UnpicklingError,
    ) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SnnConvertError(f"cannot read CIFAR-10 file {path}: {reason}") from None


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _fields(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise SnnConvertError(f"{path} is not a CIFAR-10 batch (expected a dict, got {kind})")
    return {_text(k): v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of one batch file."""
    fields = _fields(load_restricted(path), path)
    data, labels = fields.get("data"), fields.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise SnnConvertError(f"{path} is not a CIFAR-10 batch: it lacks 'data' or 'labels'")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise SnnConvertError(
            f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise SnnConvertError(f"{path}: 'labels' is not a list of ints") from None
    if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES))):
        raise SnnConvertError(f"{path}: 'labels' must be {len(data)} class indices in 0..9")
    return data.reshape(-1, 3, 32, 32), y


def read_class_names(folder: Path) -> list[str]:
    """Class names from ``batches.meta``, or the standard CIFAR-10 names if it is absent."""
    meta = folder / "batches.meta"
    if not meta.exists():
        return list(CIFAR10_CLASSES)
    names = _fields(load_restricted(meta), meta).get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != len(CIFAR10_CLASSES):
        raise SnnConvertError(f"{meta}: 'label_names' must list the 10 CIFAR-10 classes")
    return [_text(n) for n in names]


def batch_folder(path: Path) -> Path:
    """``PATH/cifar-10-batches-py`` if present, else ``PATH`` itself."""
    nested = path / BATCH_FOLDER
    return nested if nested.is_dir() else path


def cifar10_pool(spec: DataSpec, role: str, transform: ImageTransform) -> Pool:
    """Pool of ``cifar10:PATH``: ``data_batch_1..5`` for calib/train, ``test_batch`` for eval."""
    folder = batch_folder(require_dir(spec))
    names = TEST_BATCHES if role == "eval" else TRAIN_BATCHES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise SnnConvertError(
            f"cifar10 folder {folder} is missing {', '.join(missing)}: expected torchvision's "
            f"{BATCH_FOLDER} files (snnconvert never downloads; fetch and extract them yourself)"
        )
    class_names = read_class_names(folder)
    parts = [read_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts])
    ids = [f"cifar10:{n}:{i}" for n, p in zip(names, parts, strict=True) for i in range(len(p[1]))]
    passthrough = transform.matches(3, 32, 32)

    def build(positions: np.ndarray) -> ArrayImageDataset:
        chosen = np.ascontiguousarray(images[positions])
        return ArrayImageDataset(chosen, labels[positions], None if passthrough else transform)

    return Pool(f"cifar10 {folder}", ids, labels, class_names, build)


def cifar_pool_key(spec: DataSpec, role: str) -> str:
    """Identifies the files a role reads, without reading them."""
    folder = batch_folder(spec.path.resolve()) if spec.path is not None else Path()
    return f"cifar10:{folder}:{'test' if role == 'eval' else 'train'}"


def cifar10_classes() -> list[str]:
    """The fixed CIFAR-10 class names (the ``cifar10`` kind's classes)."""
    return list(CIFAR10_CLASSES)
