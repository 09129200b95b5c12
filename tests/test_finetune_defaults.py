"""Fine-tuning defaults that converge: dead-layer re-initialisation, stuck / NaN stops, the
per-epoch monitor, and validation that never sees training images (compared by file)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import fx, nn

import snnconvert
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.finetune.loop import _stuck
from snnconvert.finetune.model import TrainingMonitor, reinit_dead_layers
from snnconvert.finetune.splits import training_data, validation_data
from snnconvert.methods.mlif.neuron import MLIFNeuron
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseLinear, WeightedSumDecoder


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def _net(hidden: nn.Module, scale: float = 1.0, seed: int = 0) -> SpikingNetwork:
    torch.manual_seed(seed)
    seq = nn.Sequential(nn.Flatten(), SynapseLinear(64, 16), hidden, SynapseLinear(16, 10))
    with torch.no_grad():
        seq[1].weight.mul_(scale)
        seq[1].bias.zero_()
    snn = SpikingNetwork("toy", {"T": 1})
    snn.encoder = nn.Identity()
    snn.body = fx.GraphModule(seq, _LeafTracer().trace(seq))
    snn.decoder = WeightedSumDecoder(1)
    return snn


@pytest.fixture(scope="module")
def q_digits():
    return snnconvert.quantize("lenet5", data="digits", eval_limit=0)


def test_defaults() -> None:
    cfg = FinetuneConfig()
    assert (cfg.lr, cfg.schedule, cfg.warmup_epochs, cfg.optimizer) == (1e-3, "cosine", 1, "adam")
    assert cfg.grad_clip == 1.0 and cfg.distill == "float" and cfg.reinit_dead
    assert (cfg.distill_temperature, cfg.distill_weight, cfg.distill_standardize) == (4.0, 0.5, "auto")
    for bad in ({"grad_clip": 0.0}, {"grad_clip": math.inf}, {"distill": "ann"}, {"distill_temperature": 0.0},
                {"distill_weight": 1.5}, {"reinit_dead": 1}, {"distill_standardize": True}):
        with pytest.raises(SnnConvertError, match=next(iter(bad))):
            FinetuneConfig(**bad).validate()


def test_dead_layer_threshold_from_its_inputs() -> None:
    snn = _net(MLIFNeuron(1, 1), scale=0.01)  # inputs far below the threshold 1
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        inputs = snn.body.get_submodule("1")(images.flatten(1))
    assert float(inputs.max()) < 0.5  # the layer never fires
    notes = reinit_dead_layers(snn, images, learn_threshold=False)
    assert len(notes) == 1 and "threshold re-initialised" in notes[0] and "layer 2 " in notes[0]
    neuron = snn.body.get_submodule("2")
    expected = torch.quantile(inputs[inputs > 0], 0.99)
    torch.testing.assert_close(neuron.threshold.detach(), expected.expand(1), atol=1e-6, rtol=0)
    assert not neuron.threshold.requires_grad  # trained only with learn_threshold
    with torch.no_grad():
        fired = float((neuron(inputs) != 0).float().mean())
    assert 0.0 < fired <= 0.02  # about the top 1 % of the positive inputs now fire
    assert reinit_dead_layers(snn, images, learn_threshold=False) == []  # it fires now: left alone


def test_live_layer_left_alone_and_monitor_records() -> None:
    snn = _net(MLIFNeuron(1, 1), scale=20.0)
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    assert reinit_dead_layers(snn, images, learn_threshold=False) == []
    assert snn.body.get_submodule("2").threshold is None
    monitor = TrainingMonitor(snn)
    with monitor:
        out = snn(images)
    with torch.no_grad():
        expected = float((snn.body.get_submodule("2")(snn.body.get_submodule("1")(images.flatten(1))) != 0)
                         .float().mean())
    out.sum().backward()
    monitor.record_grads()
    summary = monitor.summary()
    assert summary["firing_rate"]["2"] == pytest.approx(expected, abs=1e-9)
    w = snn.body.get_submodule("3")
    assert summary["grad_norm"]["body.3"] == pytest.approx(
        float(torch.sqrt(w.weight.grad.pow(2).sum() + w.bias.grad.pow(2).sum())), rel=1e-5)


def test_stuck_rule() -> None:
    assert "ln(10)" in (_stuck(math.log(10) * 1.02, 0.1, 40, 10) or "")
    assert _stuck(math.log(10), 0.1, 19, 10) is None  # too short to tell
    assert _stuck(1.2, 0.1, 40, 10) is None  # the loss moved
    assert _stuck(math.log(10), 0.5, 40, 10) is None  # above chance


def test_stuck_run_stops_with_advice(q_digits) -> None:
    snn = _net(nn.ReLU())
    with torch.no_grad():
        for p in snn.parameters():
            p.zero_()  # logits 0: CE = ln(10), and a tiny lr keeps it there
    cfg = FinetuneConfig(epochs=2, lr=1e-12, batch_size=32, max_batches_per_epoch=24, val_limit=0, distill="none")
    with pytest.raises(SnnConvertError, match=r"stuck after epoch 1: cross-entropy 2\.30.*lower lr .*keep grad_clip"):
        finetune(q_digits, snn, cfg, data="digits")


def test_nan_loss_stops_with_advice(q_digits) -> None:
    snn = _net(nn.ReLU())
    with torch.no_grad():
        snn.body.get_submodule("3").bias.fill_(float("nan"))
    cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=2, val_limit=0, distill="none")
    with pytest.raises(SnnConvertError, match=r"loss became nan at epoch 1, batch 1: lower lr .* or set grad_clip"):
        finetune(q_digits, snn, cfg, data="digits")


def test_distillation_runs_by_default(q_digits) -> None:
    cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=2, val_limit=0)
    result = finetune(q_digits, _net(nn.ReLU()), cfg, data="digits")
    assert result.snn.info["finetune"]["distill"] is True
    off = finetune(q_digits, _net(nn.ReLU()), dataclasses.replace(cfg, distill="none"), data="digits")
    assert off.snn.info["finetune"]["distill"] is False
    assert result.history[0]["train_loss"] != pytest.approx(off.history[0]["train_loss"], rel=1e-6)
    assert set(result.history[0]["grad_norm"]) == {"body.1", "body.3"}
    # the toy net's logits are far smaller than LeNet-5's: auto z-scores them, with a note; off keeps them raw
    assert result.snn.info["finetune"]["distill_standardize"] is True
    assert any("z-scored logits" in n for n in result.snn.info["finetune"]["notes"])
    raw = finetune(q_digits, _net(nn.ReLU()), dataclasses.replace(cfg, distill_standardize="off"), data="digits")
    assert raw.snn.info["finetune"]["distill_standardize"] is False
    assert not any("z-scored" in n for n in raw.snn.info["finetune"]["notes"])


# ------------------------------------------------------------------------------ split check by file


CLASSES = [str(i) for i in range(10)]  # lenet5's class names


def _folder(root: Path, seed: int, per_class: int = 2) -> None:
    from PIL import Image

    rng = torch.Generator().manual_seed(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = (torch.rand(8, 8, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(root / cls / f"{i}.png")


def _copies(src: Path, dst: Path, names: list[str], link: bool = False) -> None:
    for cls in CLASSES:
        (dst / cls).mkdir(parents=True)
        for n in names:
            if link:
                os.symlink(src / cls / n, dst / cls / n)
            else:
                shutil.copyfile(src / cls / n, dst / cls / f"copy-{n}")  # other name, same bytes


@pytest.mark.parametrize("link", [False, True])
def test_given_validation_sharing_training_files_is_refused(q_digits, tmp_path: Path, link: bool) -> None:
    _folder(tmp_path / "pool", 0)
    _copies(tmp_path / "pool", tmp_path / "subset", ["1.png"], link=link)
    data, val = f"imagefolder:{tmp_path / 'pool'}", f"imagefolder:{tmp_path / 'subset'}"
    cfg = FinetuneConfig(val_limit=None)
    train = training_data(q_digits, data, cfg)
    with pytest.raises(SnnConvertError, match=r"shares 10 of its 10 images with the training data"):
        validation_data(q_digits, data, val, train, cfg)
    _folder(tmp_path / "other", 1)  # different images: accepted
    ok = validation_data(q_digits, data, f"imagefolder:{tmp_path / 'other'}", train, cfg)
    assert len(ok) == 20 and len(train.split) == 20 and train.notes == []


def test_default_validation_is_taken_out_of_training(q_digits, tmp_path: Path) -> None:
    _folder(tmp_path / "pool", 0, per_class=4)
    _copies(tmp_path / "pool", tmp_path / "subset", [f"{i}.png" for i in range(3)])
    data, calib = f"imagefolder:{tmp_path / 'pool'}", f"imagefolder:{tmp_path / 'subset'}"
    q = dataclasses.replace(q_digits, calibration=dataclasses.replace(q_digits.calibration, spec=calib,
                                                                      calib_split=0.4))
    cfg = FinetuneConfig(val_limit=None)
    train = training_data(q, data, cfg)
    val = validation_data(q, data, None, train, cfg)  # held-out calibration images: copies of training ones
    assert len(val) == 18  # 30 subset images, 12 (0.4) calibrate, 18 held out
    assert len(train.split) == 40 - 18 and len(train.split.dataset) == 22
    assert len(train.notes) == 1 and "18 validation images" in train.notes[0] and "22 training" in train.notes[0]
    held = {(p.split("/")[0], p.split("copy-")[1]) for p in val.sample_ids}
    kept = {(p.split("/")[0], p.split("/")[1]) for p in train.split.sample_ids}
    assert not held & kept
