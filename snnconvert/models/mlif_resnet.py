"""The ResNet20 of the M-LIF paper (000, A.3.1, taken from Chowdhury et al. 2022): a wide
ResNet with dropout, about 11.2M parameters, for 32x32 images.

``{64C3, D, 64C3, D, 64C3, AP2, 64BB, 64BB, 128BB (/2), 128BB, 256BB (/2), 256BB, 512BB (/2),
512BB, nFC}``: each ``oC3`` is a 3x3 conv + batch-norm + ReLU, ``D`` a dropout layer (probability
0 in the ANN, 0.2 in the SNN: ``finetune --dropout 0.2``), ``AP2`` a 2x2 average pool, ``BB`` a
basic block whose shortcut is a 1x1 stride-2 conv (+ batch-norm) where the channels change. The
listing names no pooling before ``nFC``; a global average pool is used here (the 2x2 map of the
last block, averaged).
"""

from __future__ import annotations

from torch import Tensor, nn

PAPER_DROPOUT_ANN = 0.0
"""Dropout probability of the ``D`` layers in the ANN (000, A.3.1); the SNN trains with 0.2."""


def _conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class ConvShortcutBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection: identity, or a 1x1 conv + BN (stride
    2) where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, c_out, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(c_out, c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential(*_conv_bn(c_in, c_out, stride, kernel=1)) \
            if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class MLIFResNet20(nn.Module):
    """000's ResNet20 (module docstring); ``dropout`` is the ``D`` layers' probability."""

    def __init__(self, num_classes: int = 10, dropout: float = PAPER_DROPOUT_ANN) -> None:
        super().__init__()
        stem: list[nn.Module] = []
        for i, c_in in enumerate((3, 64, 64)):
            stem += [*_conv_bn(c_in, 64), nn.ReLU()]
            if i < 2:
                stem.append(nn.Dropout(dropout))
        self.stem = nn.Sequential(*stem, nn.AvgPool2d(2))
        plan = ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))
        blocks, c_in = [], 64
        for c_out, stride in plan:
            blocks.append(ConvShortcutBlock(c_in, c_out, stride))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # He initialization, as A.3.1 trains its ANNs
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def mlif_resnet20(num_classes: int = 10) -> MLIFResNet20:
    """000's ResNet20 with its ANN dropout (0)."""
    return MLIFResNet20(num_classes)
