"""Per-epoch training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds the model state, the optimizer and schedule states, the RNG states (torch's
global CPU/CUDA generators and the augmentation generator), the finished epoch count, the
history so far and the config it was trained with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import RESUMABLE_CHANGES
from snnconvert.limits import shorten
from snnconvert.manifest_check import MAX_EPOCHS, MAX_TEXT_CHARS, one_line
from snnconvert.options import opt

CHECKPOINT_NAME = "finetune-checkpoint.pt"
FORMAT = "snnconvert-finetune-checkpoint"
_PLAIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
                 torch.int32, torch.int64, torch.bool)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """torch's global RNG states and ``generator``'s state."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    return write_atomically(path, lambda handle: torch.save({"format": FORMAT, **state}, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only)
    and check every field's type and range (:func:`check_checkpoint`) before anything uses it."""
    if not path.is_file():
        raise SnnConvertError(f"no fine-tuning checkpoint to resume at {path}; run without {opt('finetune', 'resume')} "
                              "first")
    from snnconvert.safe_zip import check_torch_zip

    try:
        check_torch_zip(path, "fine-tuning checkpoint")  # sizes and format before torch allocates anything
    except SnnConvertError as exc:
        raise SnnConvertError(f"{path} is not a readable fine-tuning checkpoint ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the bytes (struct.error, ...) is a bad file
        raise SnnConvertError(f"{path} is not a readable fine-tuning checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnnConvertError(f"{path} is not an snnconvert fine-tuning checkpoint")
    check_checkpoint(state, path)
    return state


def _bad(path: Path, field: str, value: Any, expected: str) -> SnnConvertError:
    shown = one_line(shorten(repr(value) if isinstance(value, str) else value, 60))
    return SnnConvertError(f"{shorten(str(path), 200)}: checkpoint field {field} = {shown} is not possible: "
                           f"expected {expected}; run without {opt('finetune', 'resume')} to start again")


def _check_tensor(path: Path, field: str, value: Tensor, *, finite: bool = True) -> None:
    """A plain dense CPU tensor of a real dtype (never quantized, sparse or meta), finite if floating."""
    if value.is_quantized or value.layout != torch.strided or value.device.type != "cpu" \
            or value.is_complex() or value.dtype not in _PLAIN_DTYPES:
        raise _bad(path, field, _Shown(f"a {value.dtype} {str(value.layout).removeprefix('torch.')} tensor"),
                   "a dense tensor of a real dtype")
    if finite and value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
        raise _bad(path, field, _Shown("a tensor with NaN or infinite values"), "finite values")


class _Shown(str):
    """A description of a value, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _walk(path: Path, field: str, value: Any, limit: int = 1_000_000) -> None:
    """Every tensor in ``value`` is plain and finite; every float is finite; containers are bounded."""
    stack: list[tuple[str, Any]] = [(field, value)]
    seen = 0
    while stack:
        name, item = stack.pop()
        seen += 1
        if seen > limit:
            raise _bad(path, field, _Shown(f"more than {limit:,} values"), f"at most {limit:,} values")
        if isinstance(item, Tensor):
            _check_tensor(path, name, item)
        elif isinstance(item, dict):
            stack.extend((f"{name}.{shorten(k, 40)}", v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{name}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise _bad(path, name, item, "a finite number")
        elif isinstance(item, str) and len(item) > MAX_TEXT_CHARS:
            raise _bad(path, name, item, f"at most {MAX_TEXT_CHARS} characters")


def _count(path: Path, field: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(path, field, value, f"an integer {low}..{high}")


def check_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Types and ranges of every field of a fine-tuning checkpoint, as :func:`save_checkpoint`
    writes them: one-line :class:`SnnConvertError` naming the field on the first problem."""
    for key, kind in (("model", dict), ("optimizer", dict), ("schedule", dict), ("rng", dict), ("epoch", int),
                      ("history", list), ("config", dict)):
        if key not in state:
            raise _bad(path, key, _Shown("missing"), f"a {kind.__name__}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise _bad(path, key, _Shown(type(state[key]).__name__), f"a {kind.__name__}")
    _count(path, "epoch", state["epoch"], 0, MAX_EPOCHS)
    _count(path, "schedule.epoch", state["schedule"].get("epoch"), 0, MAX_EPOCHS)
    for key, value in state["model"].items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise _bad(path, f"model.{shorten(key, 40)}", _Shown(type(value).__name__), "a tensor per name")
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("state"), dict) or not isinstance(optimizer.get("param_groups"), list):
        raise _bad(path, "optimizer", _Shown(f"keys {shorten(sorted(map(str, optimizer)), 60)}"),
                   "'state' and 'param_groups'")
    for i, group in enumerate(optimizer["param_groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in group["params"]):
            raise _bad(path, f"optimizer.param_groups[{i}]", _Shown(type(group).__name__),
                       "a mapping with a list of parameter indices")
        for key in ("lr", "base_lr", "initial_lr"):
            lr = group.get(key)
            if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool)
                                       and math.isfinite(lr) and lr >= 0):
                raise _bad(path, f"optimizer.param_groups[{i}].{key}", lr, "a finite learning rate >= 0")
    rng = state["rng"]
    size = torch.get_rng_state().numel()
    for key in ("torch", "generator"):
        value = rng.get(key)
        if not isinstance(value, Tensor) or value.dtype != torch.uint8 or value.dim() != 1 or value.numel() != size:
            raise _bad(path, f"rng.{key}", _Shown(type(value).__name__ if not isinstance(value, Tensor)
                                                  else f"a {value.dtype} tensor of {value.numel()} values"),
                       f"a uint8 tensor of {size} values (a CPU generator state)")
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, list) or not all(isinstance(t, Tensor) and t.dtype == torch.uint8 and t.dim() == 1
                                             for t in cuda):
        raise _bad(path, "rng.cuda", _Shown(type(cuda).__name__), "a list of uint8 generator states")
    if len(state["history"]) > MAX_EPOCHS or not all(isinstance(r, dict) for r in state["history"]):
        raise _bad(path, "history", _Shown(f"a list of {len(state['history'])} entries"),
                   f"at most {MAX_EPOCHS} mappings")
    for key in ("model", "optimizer", "history", "config", "schedule", "rng"):
        _walk(path, key, state[key])


def restore_training(state: dict[str, Any], path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     schedule: Any, generator: torch.Generator) -> tuple[int, list[dict[str, Any]]]:
    """Load a checked checkpoint ``state`` into ``model``, ``optimizer``, ``schedule`` and
    ``generator``; returns ``(finished epochs, history)``. Names, shapes and dtypes are compared
    with the live objects first, so a checkpoint of another network is one line, not a traceback."""
    own = model.state_dict()
    stored = state["model"]
    missing, extra = sorted(set(own) - set(stored)), sorted(set(stored) - set(own))
    if missing or extra:
        first = (missing or extra)[0]
        raise _bad(path, "model", _Shown(f"{'no' if missing else 'an extra'} tensor {shorten(first, 60)}"),
                   "the tensors of the network being fine-tuned")
    for key, value in own.items():
        if stored[key].shape != value.shape or stored[key].is_floating_point() != value.is_floating_point():
            raise _bad(path, f"model.{shorten(key, 60)}",
                       _Shown(f"a {stored[key].dtype} tensor of shape {tuple(stored[key].shape)}"),
                       f"a {value.dtype} tensor of shape {tuple(value.shape)}")
    groups = state["optimizer"]["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
            len(g["params"]) != len(live["params"]) for g, live in zip(groups, optimizer.param_groups, strict=False)):
        raise _bad(path, "optimizer.param_groups", _Shown(f"{len(groups)} group(s)"),
                   f"the {len(optimizer.param_groups)} parameter group(s) of this run")
    params = {index: p for g, live in zip(groups, optimizer.param_groups, strict=True)
              for index, p in zip(g["params"], live["params"], strict=True)}
    for index, entry in state["optimizer"]["state"].items():
        if index not in params or not isinstance(entry, dict):
            raise _bad(path, f"optimizer.state.{shorten(index, 20)}", _Shown(type(entry).__name__),
                       "the state of a parameter of this run")
        for key, value in entry.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                raise _bad(path, f"optimizer.state.{index}.{shorten(key, 40)}",
                           _Shown(f"shape {tuple(value.shape)}"), f"shape {tuple(params[index].shape)}")
    try:
        model.load_state_dict(stored)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        restore_rng(state["rng"], generator)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise SnnConvertError(f"{shorten(str(path), 200)} cannot be resumed: {one_line(shorten(str(exc), 120))}; "
                              f"run without {opt('finetune', 'resume')} to start again") from None
    return int(state["epoch"]), [dict(r) for r in state["history"]]


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume with options that change the training (all but ``RESUMABLE_CHANGES``)."""
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        detail = one_line(shorten(", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed), 300))
        raise SnnConvertError(f"cannot resume {path} with other options ({detail}); use the same options")
