"""Outputs of a fine-tuning run: the per-epoch JSON log and the PNG of the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snnconvert.atomic import write_atomically, write_json_atomically

LOG_NAME = "finetune-log.json"
PLOT_NAME = "finetune-curves.png"


def write_log(path: Path, config: dict[str, Any], history: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``{"config", "history", ...}`` as JSON atomically."""
    return write_json_atomically(path, {"config": config, "history": history, **extra})


def write_curves(path: Path, history: list[dict[str, Any]], title: str = "fine-tuning") -> Path | None:
    """Train loss (left) and train / validation top-1 (right) per epoch; None without epochs."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [100 * row["train_top1"] for row in history], marker="o", label="train top-1")
    val = [(row["epoch"], row["val_top1"]) for row in history if row.get("val_top1") is not None]
    if val:
        ax_acc.plot([e for e, _ in val], [100 * v for _, v in val], marker="s", label="validation top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        return write_atomically(path, lambda handle: fig.savefig(handle, dpi=120, format="png"), suffix=".png")
    finally:
        plt.close(fig)
