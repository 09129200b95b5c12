"""Fine-tuning engine (snnconvert.finetune) and the `snnconvert finetune` command."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import typer
from torch import fx, nn
from typer.testing import CliRunner

import snnconvert
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig, finetune, resolve_device
from snnconvert.finetune.augment import AugmentDraw, apply, augment
from snnconvert.finetune.losses import TrainView, ce_loss, tet_loss
from snnconvert.finetune.optim import EpochSchedule, build_optimizer, lr_sequence
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseLinear, WeightedSumDecoder

HAS_CUDA = torch.cuda.is_available()


class _Repeat(nn.Module):
    """Direct encoding for the toy network: the image at each of T steps, time-major."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.repeat(self.steps, *([1] * (images.dim() - 1)))


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def toy_snn(steps: int = 2, seed: int = 0, channels: int = 1, size: int = 8) -> SpikingNetwork:
    """A 2-layer SpikingNetwork without spiking neurons (ReLU between two synapses)."""
    torch.manual_seed(seed)
    seq = nn.Sequential(nn.Flatten(), SynapseLinear(channels * size * size, 16, steps=steps), nn.ReLU(),
                        SynapseLinear(16, 10, steps=steps))
    body = fx.GraphModule(seq, _LeafTracer().trace(seq))
    snn = SpikingNetwork("toy", {"T": steps})
    snn.encoder = nn.Identity() if steps == 1 else _Repeat(steps)
    snn.body = body
    snn.decoder = WeightedSumDecoder(steps)
    return snn


@pytest.fixture(scope="module")
def q_digits():
    return snnconvert.quantize("lenet5", data="digits", eval_limit=0)


def _params(snn: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in snn.named_parameters()}


def _assert_same_params(a: nn.Module, b: nn.Module, atol: float = 0.0) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        if atol == 0.0:
            assert torch.equal(pa[k], pb[k]), k
        else:
            torch.testing.assert_close(pa[k], pb[k], atol=atol, rtol=0.0, msg=k)


# ------------------------------------------------------------------------------ config, device


@pytest.mark.parametrize("changes", [
    {"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"optimizer": "rmsprop"}, {"schedule": "poly"},
    {"milestones": [3, 1]}, {"gamma": 1.5}, {"loss": "mse"}, {"threshold_lr": -1.0}, {"train_split": 0.0},
    {"learn_threshold": "yes"}, {"time_budget_s": 0}, {"max_batches_per_epoch": 0},
])
def test_config_validate_rejects(changes: dict) -> None:
    with pytest.raises(SnnConvertError) as exc:
        FinetuneConfig(**changes).validate()
    assert "\n" not in str(exc.value) and next(iter(changes)) in str(exc.value)


def test_config_fields_have_help() -> None:
    import dataclasses

    FinetuneConfig().validate()
    assert all(f.metadata.get("help") for f in dataclasses.fields(FinetuneConfig))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(SnnConvertError):
        resolve_device("tpu")
    if not HAS_CUDA:
        with pytest.raises(SnnConvertError, match="not available"):
            resolve_device("cuda:0")


# ------------------------------------------------------------------------------ losses


def test_ce_and_tet_hand_values() -> None:
    ln3 = math.log(3.0)
    steps = torch.tensor([[[0.0, ln3]], [[0.0, 0.0]]])  # (T=2, B=1, 2 classes)
    labels = torch.tensor([1])
    # step 0: p(label) = 3/4, step 1: 1/2
    assert tet_loss(steps, labels).item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, abs=1e-6)
    # CE of the averaged logits [0, ln3 / 2]: p = sqrt(3) / (1 + sqrt(3))
    mean = steps.mean(0)
    assert ce_loss(mean, labels).item() == pytest.approx(math.log((1 + math.sqrt(3)) / math.sqrt(3)), abs=1e-6)
    # batch of two, one step each: TET is the batch-mean CE
    two = torch.tensor([[[0.0, ln3], [ln3, 0.0]]])
    assert tet_loss(two, torch.tensor([1, 1])).item() == pytest.approx(
        (math.log(4 / 3) + math.log(4)) / 2, abs=1e-6)


def test_tet_regularizer_hand_value() -> None:
    from snnconvert.finetune.losses import loss_of, tet_regularized

    ln3 = math.log(3.0)
    steps = torch.tensor([[[0.0, ln3]], [[0.0, 0.0]]])  # the logits above
    labels = torch.tensor([1])
    tet = (math.log(4 / 3) + math.log(2)) / 2
    # MSE to phi = 1 over the 4 entries: (1 + (ln3 - 1)^2 + 1 + 1) / 4
    mse = (3.0 + (ln3 - 1.0) ** 2) / 4
    assert tet_regularized(steps, labels, 0.9, 1.0).item() == pytest.approx(0.1 * tet + 0.9 * mse, abs=1e-6)
    assert loss_of("tet", steps.mean(0), steps, labels, tet_lambda=0.45).item() == pytest.approx(
        0.55 * tet + 0.45 * mse, abs=1e-6)
    assert tet_regularized(steps, labels, 0.0, 1.0).item() == pytest.approx(tet, abs=1e-6)
    with pytest.raises(SnnConvertError, match="tet"):
        FinetuneConfig(tet_lambda=0.5).validate()  # the regularizer belongs to the TET loss


def test_train_view_per_step_logits_average_to_output() -> None:
    snn = toy_snn(steps=2)
    snn.decoder.weights.copy_(torch.tensor([0.25, 0.75]))  # non-uniform, like SWS
    x = torch.rand(5, 1, 8, 8)
    logits, steps = TrainView(snn)(x)
    assert steps.shape == (2, 5, 10)
    torch.testing.assert_close(logits, snn(x), atol=0, rtol=0)
    torch.testing.assert_close(steps.mean(0), logits, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ schedules


def test_schedule_warmup_then_cosine() -> None:
    cfg = FinetuneConfig(epochs=6, lr=1.0, schedule="cosine", warmup_epochs=2, warmup_factor=0.1)
    expected = [0.1, 0.55, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    assert lr_sequence(cfg) == pytest.approx(expected, abs=1e-12)


def test_schedule_step_and_fixed_threshold_group() -> None:
    cfg = FinetuneConfig(epochs=6, lr=1e-2, schedule="step", milestones=[2, 4], gamma=0.2, threshold_lr=0.5,
                         warmup_epochs=0)
    assert lr_sequence(cfg) == pytest.approx([1e-2, 1e-2, 2e-3, 2e-3, 4e-4, 4e-4], rel=1e-12)
    w, th, leak = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    opt = build_optimizer({"other": [w], "threshold": [th], "leak": [leak]}, cfg)
    assert [g["name"] for g in opt.param_groups] == ["weights", "threshold"]
    assert any(p is leak for p in opt.param_groups[0]["params"])  # no leak_lr: scheduled with the weights
    schedule = EpochSchedule(opt, cfg)
    schedule.set_epoch(4)
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-4, rel=1e-12)
    assert opt.param_groups[1]["lr"] == 0.5  # fixed


# ------------------------------------------------------------------------------ augmentation


def test_augment_hand_example() -> None:
    img = torch.arange(1.0, 10.0).view(1, 1, 3, 3).repeat(3, 2, 1, 1)  # 3 images, 2 channels
    d = AugmentDraw(top=torch.tensor([0, 2, 1]), left=torch.tensor([0, 2, 1]), flip=torch.tensor([False, False, True]))
    out = apply(img, d, pad=1)
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 2], [0, 4, 5]]))
    assert torch.equal(out[1, 1], torch.tensor([[5.0, 6, 0], [8, 9, 0], [0, 0, 0]]))
    assert torch.equal(out[2, 0], torch.tensor([[3.0, 2, 1], [6, 5, 4], [9, 8, 7]]))
    assert torch.equal(out[:, 0], out[:, 1])  # one crop per image, all channels


def test_augment_reproducible_with_seed() -> None:
    x = torch.rand(16, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape


# ------------------------------------------------------------------------------ training engine


def test_epochs_zero_leaves_evaluation_identical(q_digits) -> None:
    snn = toy_snn()
    result = finetune(q_digits, snn, FinetuneConfig(epochs=0), data="digits")
    x = torch.rand(32, 1, 8, 8)
    assert torch.equal(result.snn(x), snn(x))
    assert result.history == [] and result.snn.info["finetune"]["config"]["epochs"] == 0
    assert result.snn is not snn


def test_resume_equals_uninterrupted(q_digits, tmp_path: Path) -> None:
    cfg = FinetuneConfig(epochs=2, batch_size=64, lr=3e-3, schedule="cosine", warmup_epochs=1, augment=True,
                         loss="tet", max_batches_per_epoch=6, val_limit=50, seed=3)
    straight = finetune(q_digits, toy_snn(), cfg, data="digits", out_dir=tmp_path / "a")
    # interrupted: the budget ends the run after epoch 1, then it resumes from the checkpoint
    import dataclasses

    first = finetune(q_digits, toy_snn(), dataclasses.replace(cfg, time_budget_s=1e-9), data="digits",
                     out_dir=tmp_path / "b")
    assert first.stopped == "time_budget" and len(first.history) == 1
    assert first.history[0]["stopped"] == "time_budget"
    resumed = finetune(q_digits, toy_snn(), cfg, data="digits", out_dir=tmp_path / "b", resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    _assert_same_params(straight.snn, resumed.snn)
    assert not torch.equal(_params(straight.snn)["body.1.weight"], _params(toy_snn())["body.1.weight"])
    log = json.loads((tmp_path / "b" / "finetune-log.json").read_text())
    assert [r["epoch"] for r in log["history"]] == [1, 2]
    assert {"train_loss", "train_top1", "val_top1", "lr", "seconds", "images_per_s"} <= set(log["history"][0])
    assert (tmp_path / "b" / "finetune-curves.png").stat().st_size > 1000


def test_resume_refuses_other_options(q_digits, tmp_path: Path) -> None:
    cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=1, val_limit=0)
    finetune(q_digits, toy_snn(), cfg, data="digits", out_dir=tmp_path)
    with pytest.raises(SnnConvertError, match="lr"):
        finetune(q_digits, toy_snn(), FinetuneConfig(epochs=2, max_batches_per_epoch=1, val_limit=0, lr=1.0),
                 data="digits", out_dir=tmp_path, resume=True)
    with pytest.raises(SnnConvertError, match="no fine-tuning checkpoint"):
        finetune(q_digits, toy_snn(), cfg, data="digits", out_dir=tmp_path / "empty", resume=True)


def test_refuses_test_folder(q_digits, tmp_path: Path) -> None:
    with pytest.raises(SnnConvertError, match="test folder"):
        finetune(q_digits, toy_snn(), FinetuneConfig(epochs=1), data=f"imagefolder:{tmp_path / 'test'}")


def test_validation_on_the_training_pool_is_held_out(q_digits, tmp_path: Path) -> None:
    from PIL import Image

    from snnconvert.finetune.splits import training_data, validation_data

    rng = torch.Generator().manual_seed(0)
    for cls in ("a", "b"):
        (tmp_path / "pool" / cls).mkdir(parents=True)
        for i in range(10):
            pixels = (torch.rand(8, 8, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(tmp_path / "pool" / cls / f"{i}.png")
    data = f"imagefolder:{tmp_path / 'pool'}"
    cfg = FinetuneConfig(train_split=0.6, val_limit=None, allow_class_mismatch=True)  # classes a, b: not 0..9
    train = training_data(q_digits, data, cfg)
    val = validation_data(q_digits, data, data, train, cfg)
    assert len(train.split) == 12 and len(val) == 8
    assert not set(train.split.sample_ids) & set(val.sample_ids)


@pytest.mark.skipif(HAS_CUDA, reason="compares the CPU default; auto picks CUDA here")
def test_device_cpu_equals_default(q_digits) -> None:
    cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=4, val_limit=0, lr=1e-2)
    import dataclasses

    a = finetune(q_digits, toy_snn(), cfg, data="digits")
    b = finetune(q_digits, toy_snn(), dataclasses.replace(cfg, device="cpu"), data="digits")
    _assert_same_params(a.snn, b.snn)
    assert a.snn.info["finetune"]["device"] == "cpu"


DDP_CONFIG = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "augment": True,
              "loss": "tet", "max_batches_per_epoch": 5, "val_limit": 0, "device": "cpu", "seed": 7}


def _ddp_worker(rank: int, world: int, port: int, q, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = finetune(q, toy_snn(), FinetuneConfig(**DDP_CONFIG), data="digits", out_dir=Path(out) / "run")
    if rank == 0:
        torch.save(result.snn.state_dict(), Path(out) / "ddp.pt")
        assert result.log_path is not None
    else:
        assert result.log_path is None and result.checkpoint_path is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(q_digits, tmp_path: Path) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_ddp_worker, args=(2, _free_port(), q_digits, str(tmp_path)), nprocs=2, join=True)  # q pickled
    single = finetune(q_digits, toy_snn(), FinetuneConfig(**DDP_CONFIG), data="digits")
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    moved = False
    for key, value in single.snn.state_dict().items():
        torch.testing.assert_close(ddp_state[key], value, atol=1e-5, rtol=0.0, msg=key)
        moved |= not torch.equal(value, toy_snn().state_dict()[key])
    assert moved
    assert json.loads((tmp_path / "run" / "finetune-log.json").read_text())["world_size"] == 2


def test_mlif_lenet_one_epoch_reduces_loss(q_digits) -> None:
    pytest.importorskip("snnconvert.neurons.trainable")
    from snnconvert.data import load_split, materialize
    from snnconvert.finetune.splits import stacked

    snn = snnconvert.to_snn(q_digits, "mlif", S=3, T=1)
    train = materialize(load_split("digits", "train", q_digits.info.input_spec, limit=300))
    x, y = stacked(train)

    @torch.no_grad()
    def loss(net: nn.Module) -> float:
        return float(ce_loss(net(x), y))

    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, surrogate="triangular:0.3", learn_threshold=True,
                         learn_leak=True, val_limit=100)
    result = finetune(q_digits, snn, cfg, data="digits")
    before, after = loss(snn), loss(result.snn)
    assert after < 0.8 * before, (before, after)
    assert result.history[0]["val_top1"] is not None and 0.0 <= result.history[0]["val_top1"] <= 1.0
    assert result.snn.info["finetune"]["config"]["learn_threshold"] is True


def test_checkpoint_time_gives_the_same_training(q_digits, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("snnconvert.neurons.trainable")
    import dataclasses

    import snnconvert.finetune.model as ft_model

    calls = []
    real = ft_model.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ft_model, "checkpoint", counting)

    snn = snnconvert.to_snn(q_digits, "mlif", S=2, T=2)
    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, max_batches_per_epoch=3, val_limit=0, loss="tet",
                         learn_threshold=True)
    plain = finetune(q_digits, snn, cfg, data="digits")
    assert not calls
    recomputed = finetune(q_digits, snn, dataclasses.replace(cfg, checkpoint_time=True), data="digits")
    assert len(calls) == 3 * len(snn.neurons())  # every neuron layer, every batch
    _assert_same_params(plain.snn, recomputed.snn, atol=1e-6)
    assert not torch.equal(_params(plain.snn)["body.conv1.weight"], _params(snn)["body.conv1.weight"])
    assert all("forward" not in n.__dict__ for n in recomputed.snn.neurons().values())


# ------------------------------------------------------------------------------ CLI


def _cli_app() -> typer.Typer:
    from snnconvert.cli.app import app
    from snnconvert.cli.finetune_cmd import register

    if not any(c.name == "finetune" for c in app.registered_commands):
        register(app)
    return app


def test_cli_finetune_writes_new_artifact(q_digits, tmp_path: Path) -> None:
    source = snnconvert.save(tmp_path / "snn-toy-1.snnc", q_digits, toy_snn(steps=1))
    runner = CliRunner()
    result = runner.invoke(_cli_app(), ["finetune", "--input", str(source), "--data", "digits", "--epochs", "1",
                                        "--max-batches", "3", "--val-limit", "50", "--lr", "1e-2", "--loss", "tet",
                                        "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and summary["finetuned_from"] == str(source)
    written = Path(summary["artifact"])
    assert written != source and written.is_file()
    from snnconvert.artifact import load_artifact

    manifest = load_artifact(written).manifest
    assert manifest["finetuned_from"] == str(source)
    assert manifest["snn"]["info"]["finetune"]["config"]["loss"] == "tet"
    assert len(manifest["snn"]["info"]["finetune"]["history"]) == 1
    assert (tmp_path / "finetune-snn-toy-1" / "finetune-checkpoint.pt").is_file()


def test_cli_finetune_bad_option_is_one_line_error(q_digits, tmp_path: Path) -> None:
    source = snnconvert.save(tmp_path / "snn-toy-1.snnc", q_digits, toy_snn(steps=1))
    result = CliRunner().invoke(_cli_app(), ["finetune", "--input", str(source), "--data", "digits", "--epochs", "1",
                                             "--optimizer", "rmsprop"])
    assert result.exit_code == 1
    assert "optimizer 'rmsprop' is not possible" in result.output


def test_snnconvert_finetune_is_callable_and_its_modules_import(q_digits) -> None:
    import importlib

    snn = snnconvert.to_snn(q_digits, "mlif", S=3, T=1)
    result = snnconvert.finetune(q_digits, snn, FinetuneConfig(epochs=0), data="digits")
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(result.snn(x), snn(x))
    assert importlib.import_module("snnconvert.finetune.loop").finetune is finetune


@pytest.mark.slow
def test_torchrun_two_processes_through_the_cli(q_digits, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m snnconvert finetune ...`: gloo DDP, one artifact from rank 0."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    source = snnconvert.save(tmp_path / "snn-mlif-1.snnc", q_digits, snnconvert.to_snn(q_digits, "mlif", S=3, T=1))
    result = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "snnconvert", "finetune",
         "--input", str(source), "--data", "digits", "--epochs", "1", "--max-batches", "2", "--batch-size", "16",
         "--val-limit", "20", "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and summary["history"][0]["images"] == 32  # 2 ranks x 2 batches x 8 images
    assert len(list(tmp_path.glob("snn-mlif-finetuned-*.snnc"))) == 1  # only rank 0 wrote
