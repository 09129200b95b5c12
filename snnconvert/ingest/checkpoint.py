"""Reading weight checkpoints safely and applying them to a module with named diagnostics.

Every load uses ``torch.load(..., map_location="cpu", weights_only=True)``: a checkpoint that
contains pickled code or whole pickled modules is refused, never executed. Before it, the file
must be a regular file and its zip directory must pass :func:`snnconvert.safe_zip.check_torch_zip`
(no zip bomb, no member past the file's end, what it unpacks to fits in memory).
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.limits import MAX_WEIGHT_MAGNITUDE, require_regular_file, shorten
from snnconvert.options import opt
from snnconvert.safe_zip import DamagedTorchFile, NotATorchFile, check_torch_zip

# Entries under which training scripts commonly nest the weights, in order of preference.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "ema", "model_ema")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys that may be absent from a checkpoint without changing the model's function.
OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)
MAX_LISTED = 10

_SAVE_HINT = "re-save the weights with torch.save(model.state_dict(), PATH)"


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Load the tensor dict (state_dict) of a checkpoint file, however it was saved.

    Accepts a bare state_dict or one nested under ``state_dict``/``model``/``model_state_dict``/
    ``net``/``ema`` (other entries such as ``epoch`` or ``optimizer`` are ignored) and strips
    ``module.``/``_orig_mod.`` prefixes. Raises :class:`SnnConvertError` on any problem.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], list[str]]:
    """Like :func:`load_state_dict_file`, plus notes on how the weights were found."""
    path = Path(path)
    obj = _torch_load(path)
    found = _find_state_dict(obj, path)
    if found is None:
        raise SnnConvertError(
            f"checkpoint {path} contains no dict of tensors (found {_describe(obj)}); {_SAVE_HINT}"
        )
    state_dict, where = found
    check_weight_values(state_dict, f"checkpoint {path}")
    notes = [f"weights taken from checkpoint entry '{where}'"] if where else []
    state_dict, stripped = strip_wrapper_prefixes(state_dict)
    if stripped:
        notes.append(f"stripped key prefix '{stripped}' from checkpoint {path.name}")
    return state_dict, notes


def check_weight_values(state_dict: Mapping[str, Tensor], source: str) -> None:
    """One-line error if a floating-point tensor holds NaN, inf or a magnitude above
    ``limits.MAX_WEIGHT_MAGNITUDE`` (such weights overflow every activation downstream)."""
    for key, value in state_dict.items():
        if isinstance(value, Tensor) and (value.is_quantized or value.layout != torch.strided):
            kind = str(value.dtype if value.is_quantized else value.layout).removeprefix("torch.")
            raise SnnConvertError(f"{shorten(source, 200)}: {shorten(key)} is a {kind} tensor; snnconvert reads "
                                  "dense float weights (save them with .dequantize() / .to_dense() first)")
        if not isinstance(value, Tensor) or not (value.is_floating_point() or value.is_complex()) \
                or value.numel() == 0:
            continue
        magnitude = value.detach().abs()
        if not bool(torch.isfinite(magnitude).all()):
            bad = "NaN" if bool(torch.isnan(magnitude).any()) else "inf"
            raise SnnConvertError(f"{shorten(source, 200)}: {shorten(key)} contains {bad} values; "
                                  "the weights are damaged (retrain or re-export them)")
        largest = float(magnitude.max())
        if largest > MAX_WEIGHT_MAGNITUDE:
            raise SnnConvertError(f"{shorten(source, 200)}: {shorten(key)} holds a weight of magnitude "
                                  f"{largest:.3g} (above {MAX_WEIGHT_MAGNITUDE:.0e}); activations would overflow, "
                                  "so the weights are damaged or not a trained model's")


def _torch_load(path: Path) -> object:
    if not path.exists():
        raise SnnConvertError(f"checkpoint {path} does not exist; check the {opt('quantize', 'weights')} path")
    if path.is_dir():
        raise SnnConvertError(f"checkpoint {path} is a directory; pass the checkpoint file itself")
    require_regular_file(path, "checkpoint")
    try:  # bounds from the zip directory before torch decompresses or allocates anything
        check_torch_zip(path, "checkpoint")
    except DamagedTorchFile as exc:
        raise SnnConvertError(f"checkpoint {path} is truncated or corrupt ({exc.detail}); check the file or "
                              "re-save it with torch.save(model.state_dict(), PATH)") from None
    except NotATorchFile as exc:
        raise _unreadable_error(path, exc) from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; errors say enough
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(path, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a corrupt file
        raise _unreadable_error(path, exc) from None


def _file_kind(path: Path) -> str:
    """``"empty"``, ``"zip"`` (torch >= 1.6 format), ``"pickle"`` (legacy format) or ``"other"``."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        return "empty"
    if head.startswith(b"PK"):
        return "zip"
    return "pickle" if head[0] == 0x80 else "other"


def _unreadable_error(path: Path, exc: Exception) -> SnnConvertError:
    kind = _file_kind(path)
    if kind == "empty":
        problem = "is empty"
    elif kind == "other":
        problem = "is not a PyTorch checkpoint (not a file written by torch.save)"
    else:
        detail = _first_line(str(exc)).split(". ")[0][:100] or type(exc).__name__
        problem = f"is truncated or corrupt ({detail})"
    return SnnConvertError(
        f"checkpoint {path} {problem}; check the file or re-save it with "
        "torch.save(model.state_dict(), PATH)"
    )


def _unpickling_error(path: Path, message: str) -> SnnConvertError:
    if _file_kind(path) in ("empty", "other") or "truncated" in message:
        return _unreadable_error(path, pickle.UnpicklingError(message))
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if match and match.group(1).startswith("torch.nn."):
        return SnnConvertError(
            f"checkpoint {path} contains a whole pickled model ({match.group(1)}), not a "
            f"state_dict, and snnconvert never unpickles code; {_SAVE_HINT}"
        )
    if match:
        what = f" ({match.group(1)})"
    else:
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
        what = f" ({detail.group(1).strip()[:80]})" if detail else ""
    return SnnConvertError(
        f"checkpoint {path} contains pickled Python objects that are not plain tensors{what} "
        f"and snnconvert never unpickles code; {_SAVE_HINT}"
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(shorten(repr(k), 40) for k in list(obj)[:5])
        return f"a dict with keys {keys}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _find_state_dict(obj: object, path: Path, depth: int = 0) -> tuple[dict, str] | None:
    """Return ``(state_dict, entry path)`` for the first tensor dict found in ``obj``."""
    if isinstance(obj, nn.Module):  # only reachable if a caller allow-listed module globals
        raise SnnConvertError(
            f"checkpoint {path} contains a whole pickled model, not a state_dict; {_SAVE_HINT}"
        )
    if not isinstance(obj, Mapping) or depth > 3:
        return None
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if tensors and len(tensors) == len(obj):
        return tensors, ""
    for key in CONTAINER_KEYS:
        if key in obj:
            found = _find_state_dict(obj[key], path, depth + 1)
            if found is not None:
                inner, where = found
                return inner, f"{key}.{where}" if where else key
    if tensors:  # a state_dict with a few non-tensor extras mixed in
        return tensors, ""
    return None


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Remove ``module.``/``_orig_mod.`` prefixes shared by every key; return the removed text."""
    result = dict(state_dict)
    removed = ""
    changed = True
    while changed and result:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in result):
                result = {key[len(prefix) :]: value for key, value in result.items()}
                removed += prefix
                changed = True
    return result, removed


def compare_state_dict(
    module: nn.Module, state_dict: Mapping[str, Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Return ``(missing, unexpected, shape mismatches)`` of ``state_dict`` against ``module``.

    Missing BatchNorm ``num_batches_tracked`` counters are not reported.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(OPTIONAL_KEY_SUFFIXES)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (checkpoint {_shape(state_dict[k])}, model {_shape(expected[k])})"
        for k in state_dict
        if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, mismatched


def apply_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    name: str | None = None,
    skip: Iterable[str] = (),
) -> None:
    """Copy ``state_dict`` into ``module``, failing with every mismatch named in one line.

    ``source`` describes the weights in messages (e.g. ``"checkpoint x.pt"``), ``name`` the model
    (default: its class name). Keys in ``skip`` are neither loaded nor reported missing.
    """
    skipped = set(skip)
    state_dict = {k: v for k, v in state_dict.items() if k not in skipped}
    missing, unexpected, mismatched = compare_state_dict(module, state_dict)
    missing = [k for k in missing if k not in skipped]
    problems = [
        _listing(label, items)
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        model_name = name or type(module).__name__
        raise SnnConvertError(
            f"{source} does not match {model_name}: {'; '.join(problems)}; pass weights saved "
            f"from this architecture (and {opt('quantize', 'num_classes')} if the head differs)"
        )
    module.load_state_dict(state_dict, strict=False)


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(shorten(item) for item in items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    count = f" ({len(items)})" if len(items) > MAX_LISTED else ""
    return f"{label}{count}: {shown}{more}"


def _shape(tensor: Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"
