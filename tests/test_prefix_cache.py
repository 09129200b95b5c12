"""The prefix cache of repeated evaluations (``--Ts auto``): the same predictions as whole runs,
fewer nodes executed when only a late layer changes, and an exact early stop."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import quantize_random, randomize_batchnorm

from snnconvert.data import InputSpec
from snnconvert.methods.sws.coding import SWSConfig, _predict, convert_sws, neuron_modules, set_silent_periods
from snnconvert.models.cifar_resnet import CifarResNet
from snnconvert.simulate.prefix_cache import PrefixRunner, _pack

SMALL = InputSpec(3, (16, 16), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    q = quantize_random(randomize_batchnorm(CifarResNet(8, 10).eval()), SMALL, images=64)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=2)).float()
    images = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return snn, images


def test_cached_predictions_equal_whole_runs_after_each_change(setup) -> None:
    snn, images = setup
    snn = copy.deepcopy(snn)
    names = list(neuron_modules(snn.body))
    runner = PrefixRunner(snn, images, names, lambda n: n.Ts, batch=16)
    assert runner.cut_live, "a residual network has cut points between its blocks"
    reference = _predict(snn, images, torch.float32)
    settings = [dict.fromkeys(names, 2), {**dict.fromkeys(names, 2), names[-1]: 0},
                {**dict.fromkeys(names, 2), names[-2]: 0}, dict.fromkeys(names, 0), dict.fromkeys(names, 2)]
    for periods in settings:
        set_silent_periods(snn.body, periods)
        whole = _predict(snn, images, torch.float32)
        result = runner.evaluate(reference)
        assert result.mismatches == int((whole != reference).sum())  # exactly the whole run's count
        assert not result.stopped_early and result.images == 40
    # the 2nd and 3rd settings changed only late layers: fewer nodes ran than 5 whole runs
    assert runner.share_run < 0.9
    assert runner.bytes > 0


def test_spike_trains_are_cached_as_int8_and_real_values_as_they_are() -> None:
    spikes = torch.tensor([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]])
    assert _pack(spikes).dtype == torch.int8
    assert torch.equal(_pack(spikes).float(), spikes)
    real = torch.tensor([0.5, 1.0])
    assert _pack(real).dtype == torch.float32


def _flipped(setup, rows) -> tuple:
    """A copy of the network at Ts=2, its layer names, and its own predictions with ``rows`` changed."""
    snn, images = setup
    snn = copy.deepcopy(snn)
    names = list(neuron_modules(snn.body))
    set_silent_periods(snn.body, dict.fromkeys(names, 2))
    flipped = _predict(snn, images, torch.float32)
    flipped[rows] = (flipped[rows] + 1) % 10
    return snn, images, names, flipped


def test_early_stop_happens_only_after_the_target_has_failed(setup) -> None:
    # 20 of 40 disagree, all in the first 2 batches of 16
    snn, images, names, flipped = _flipped(setup, slice(0, 20))
    runner = PrefixRunner(snn, images, names, lambda n: n.Ts, batch=16)
    result = runner.evaluate(flipped, max_mismatches=3)
    assert result.stopped_early and result.images == 16 and result.mismatches == 16
    assert result.agreement == pytest.approx(1 - 16 / 40)  # an upper bound on the true 50 %
    full = runner.evaluate(flipped, max_mismatches=None)
    assert not full.stopped_early and full.mismatches == 20 and full.agreement == pytest.approx(0.5)


def test_head_batch_holds_the_first_images_and_can_be_evaluated_alone(setup) -> None:
    snn, images, names, flipped = _flipped(setup, [1, 3, 30])
    runner = PrefixRunner(snn, images, names, lambda n: n.Ts, batch=16, head=5)
    assert runner.bounds == [(0, 5), (5, 21), (21, 37), (37, 40)]
    head = runner.evaluate(flipped, batches=1)
    assert head.images == 5 and head.mismatches == 2 and head.mismatched == (1, 3)
    full = runner.evaluate(flipped)
    assert full.images == 40 and full.mismatched == (1, 3, 30) and not full.stopped_early
    early = runner.evaluate(flipped, max_mismatches=1)  # fails inside the head: stops after 5 images
    assert early.stopped_early and early.images == 5
