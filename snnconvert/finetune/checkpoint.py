"""Per-epoch training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds the model state, the optimizer and schedule states, the RNG states (torch's
global CPU/CUDA generators and the augmentation generator), the finished epoch count, the
history so far and the config it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import RESUMABLE_CHANGES

CHECKPOINT_NAME = "finetune-checkpoint.pt"
FORMAT = "snnconvert-finetune-checkpoint"


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
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only)."""
    if not path.is_file():
        raise SnnConvertError(f"no fine-tuning checkpoint to resume at {path}; run without --resume first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the bytes (struct.error, ...) is a bad file
        raise SnnConvertError(f"{path} is not a readable fine-tuning checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnnConvertError(f"{path} is not an snnconvert fine-tuning checkpoint")
    return state


def check_compatible(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume with options that change the training (all but ``RESUMABLE_CHANGES``)."""
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise SnnConvertError(f"cannot resume {path} with other options ({detail}); use the same options")
