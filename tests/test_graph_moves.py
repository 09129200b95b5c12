"""Data movement in a model graph (issue 26, graph coverage): transpose / permute of axes other
than the batch, chunk / split along them (a channel shuffle, ShuffleNet v2), through preparation,
quantization and conversion. The batch axis carries the folded time steps of a spiking network,
so moving or splitting it is refused, by node, in one message."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import randomize_batchnorm, sws_against_exact
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.graph import prepare

SPEC = InputSpec(3, (8, 8), None, None, None)


class Moves(nn.Module):
    """conv -> ReLU -> one data movement -> average pool -> linear."""

    def __init__(self, move) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.move = move

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.move(torch.relu(self.conv(x)))
        return self.fc(nn.functional.avg_pool2d(x, 2).flatten(1))


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """torchvision's channel shuffle: view, transpose of the group axes, view back."""
    b, c, h, w = x.size()
    return torch.transpose(x.view(b, groups, c // groups, h, w), 1, 2).contiguous().view(b, -1, h, w)


@pytest.mark.parametrize("move", [
    lambda x: x.transpose(2, 3),
    lambda x: x.transpose(-1, -2),  # negative axes: the rank is known when the graph is checked
    lambda x: x.permute(0, 1, 3, 2),
    lambda x: torch.permute(x, (0, 1, 3, 2)),
    lambda x: torch.cat(x.chunk(2, dim=1)[::-1], 1),
    lambda x: torch.cat(torch.split(x, [3, 5], 1)[::-1], 1),
    _shuffle,
])
def test_moves_of_other_axes_prepare(move) -> None:
    prepare(Moves(move), SPEC)


def test_moves_of_the_batch_axis_are_refused_by_node_in_one_message() -> None:
    def moves(x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1).transpose(1, 0)
        x = x.permute(1, 0, 2, 3).permute(1, 0, 2, 3)
        return torch.cat(x.chunk(2) + torch.split(x, 1)[:0], 0)  # chunk and split along axis 0 by default

    with pytest.raises(SnnConvertError) as err:
        prepare(Moves(moves), SPEC)
    message = str(err.value)
    for node in ("'transpose'", "'transpose_1'", "'permute'", "'permute_1'", "'chunk'", "'split'"):
        assert node in message, node
    assert "moves the batch axis" in message and "splits the batch axis" in message


def test_a_channel_shuffle_simulates_exactly() -> None:
    """Spike trains are shuffled frame by frame: SWS equals the exact reference to float64 rounding."""
    torch.manual_seed(0)
    assert sws_against_exact(Moves(lambda x: torch.cat(_shuffle(x).chunk(2, 1)[::-1], 1)).eval(), SPEC) <= 1e-9


def test_shufflenet_v2_converts_and_simulates_exactly() -> None:
    """torchvision's ShuffleNet v2 (random weights, 32x32): channel shuffles, chunks and
    concatenations in every block; measured 1.0e-15."""
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.shufflenet_v2_x0_5(num_classes=10)).eval()
    assert sws_against_exact(model, InputSpec(3, (32, 32), None, None, None), images=2) <= 1e-9
