"""scikit-learn's bundled 8x8 handwritten digits: the offline default data set."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
DIGITS_CLASSES = [str(i) for i in range(10)]


def digits_arrays(part: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Return ``(images, labels, ids)`` of the fixed ``"train"`` or ``"test"`` part.

    Images are float32 tensors of shape (N, 1, 8, 8) in [0, 1] (raw values 0..16 divided by 16);
    ``ids`` are the indices into scikit-learn's 1,797-image set. The split is stratified and seeded,
    so it is the same on every machine.
    """
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    ids = np.arange(len(labels))
    train_ids, test_ids = train_test_split(
        ids, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    chosen = {"train": np.sort(train_ids), "test": np.sort(test_ids)}[part]
    x = torch.from_numpy(images[chosen]).unsqueeze(1)
    y = torch.from_numpy(labels[chosen])
    return x, y, chosen
