"""``lenet5``: a small LeNet-style CNN for the 1x8x8 scikit-learn digits.

The model expects normalized input ``(x - DIGITS_MEAN) / DIGITS_STD`` where ``x`` are raw pixels
in [0, 1]; the constants are the pixel statistics of the fixed digits training split (checked by
``models/train_digits.py``).
"""

from __future__ import annotations

from torch import Tensor, nn

DIGITS_MEAN: tuple[float, ...] = (0.3056,)
DIGITS_STD: tuple[float, ...] = (0.3761,)


class LeNet5(nn.Module):
    """conv3x3(16)-ReLU-maxpool -> conv3x3(32)-ReLU-maxpool -> FC 120 -> FC 84 -> FC classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(32 * 2 * 2, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


def lenet5(num_classes: int = 10) -> LeNet5:
    """Build ``lenet5`` for 1x8x8 inputs."""
    return LeNet5(num_classes)
