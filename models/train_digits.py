"""Train the bundled ``lenet5`` on the 8x8 digits and write ``snnconvert/assets/lenet5-digits.pt``.

Run from the repository root: ``python models/train_digits.py``. Deterministic (seeded, CPU);
takes a few seconds. The file is a plain state_dict, written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # let the script run from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

from snnconvert.data.digits import digits_arrays  # noqa: E402
from snnconvert.models.lenet import DIGITS_MEAN, DIGITS_STD, lenet5  # noqa: E402

SEED = 0
EPOCHS = 60
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 1  # random translation by up to this many pixels (zero fill)
STATS_TOLERANCE = 5e-4


def normalize(x: Tensor) -> Tensor:
    """Apply the normalization stored with the architecture (what ``InputSpec`` describes)."""
    mean = torch.tensor(DIGITS_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(DIGITS_STD).view(1, -1, 1, 1)
    return (x - mean) / std


def check_stats(x: Tensor) -> None:
    """Fail if the stored mean/std no longer match the training split's pixel statistics."""
    mean, std = float(x.mean()), float(x.std())
    print(f"train pixels: mean {mean:.5f} std {std:.5f} (stored {DIGITS_MEAN[0]}, {DIGITS_STD[0]})")
    if abs(mean - DIGITS_MEAN[0]) > STATS_TOLERANCE or abs(std - DIGITS_STD[0]) > STATS_TOLERANCE:
        raise SystemExit(
            f"update DIGITS_MEAN/DIGITS_STD in snnconvert/models/lenet.py to ({mean:.4f},) and "
            f"({std:.4f},), then rerun"
        )


def random_shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Translate each image by up to MAX_SHIFT pixels, filling with zeros (background)."""
    n, _, h, w = x.shape
    span = 2 * MAX_SHIFT + 1
    padded = F.pad(x, (MAX_SHIFT,) * 4)
    shifted = torch.stack(
        [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(span) for dx in range(span)]
    )
    choice = torch.randint(0, span * span, (n,), generator=generator)
    return shifted[choice, torch.arange(n)]


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(normalize(x)).argmax(1) == y).float().mean())


def train() -> torch.nn.Module:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(SEED)
    x, y, _ = digits_arrays("train")
    check_stats(x)
    model = lenet5(10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * -(-len(x) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            inputs = normalize(random_shift(x[idx], generator))
            loss = F.cross_entropy(model(inputs), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {total / len(x):.4f}")
    return model


def save_atomically(state_dict: dict[str, Tensor], path: Path) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:  # a file object keeps the archive bytes reproducible
            torch.save(state_dict, handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "snnconvert" / "assets" / "lenet5-digits.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and immune to oversubscription
    started = time.perf_counter()
    model = train()
    x_test, y_test, _ = digits_arrays("test")
    x_train, y_train, _ = digits_arrays("train")
    print(f"train top-1 {accuracy(model, x_train, y_train):.2%}")
    print(f"test top-1 {accuracy(model, x_test, y_test):.2%} on {len(y_test)} images")
    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_atomically(state_dict, args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KiB) in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
