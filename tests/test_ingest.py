"""Tests of snnconvert.ingest: names, checkpoints, torchvision cache weights (never downloads)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from torch import nn

import snnconvert.ingest as ingest
from snnconvert.errors import SnnConvertError
from snnconvert.ingest import (
    apply_state_dict,
    list_models,
    load_model,
    load_state_dict_file,
)
from snnconvert.models import cifar_resnet

SHARED_DATA = Path(
    os.environ.get("SNNCONVERT_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
REAL_RESNET20 = SHARED_DATA / "resnet20-cifar10.th"
R18_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def _one_line(exc: pytest.ExceptionInfo[SnnConvertError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip()
    return message


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(123)
    model = cifar_resnet("resnet20").eval()
    for m in model.modules():  # non-trivial BN statistics so a missed buffer would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache in tmp_path; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # restored after the test
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "hub"


def _cache_file(hub: Path, weights: torchvision.models.WeightsEnum) -> Path:
    return hub / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


CHECKPOINT_FORMATS = {
    "bare": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "best_prec1": 91.5, "epoch": 200},
    "model": lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": []}},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "epoch": 3},
    "net": lambda sd: {"net": sd, "acc": 90.0},
    "ema": lambda sd: {"ema": sd},
    "dataparallel": lambda sd: {"state_dict": _prefixed(sd, "module."), "best_prec1": 91.78},
    "compiled": lambda sd: _prefixed(sd, "_orig_mod."),
    "ddp+compiled": lambda sd: {"model": _prefixed(sd, "module._orig_mod.")},
}


@pytest.mark.parametrize("fmt", sorted(CHECKPOINT_FORMATS))
def test_checkpoint_formats_round_trip(
    fmt: str, resnet20: nn.Module, images: torch.Tensor, tmp_path: Path
) -> None:
    path = tmp_path / f"{fmt}.th"
    torch.save(CHECKPOINT_FORMATS[fmt](resnet20.state_dict()), path)
    loaded = load_model("resnet20", str(path))
    assert loaded.source == f"file:{path.resolve()}"
    assert not loaded.module.training
    with torch.no_grad():
        assert torch.equal(loaded.module(images), resnet20(images))
    assert set(load_state_dict_file(path)) == set(resnet20.state_dict())


def test_missing_num_batches_tracked_is_fine(resnet20: nn.Module, tmp_path: Path) -> None:
    state = {k: v for k, v in resnet20.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "old.th"
    torch.save({"state_dict": _prefixed(state, "module.")}, path)
    assert load_model("resnet20", str(path)).num_classes == 10


def test_missing_and_unexpected_keys_named(resnet20: nn.Module, tmp_path: Path) -> None:
    state = dict(resnet20.state_dict())
    state["fc.bias"] = state.pop("linear.bias")
    path = tmp_path / "x.pt"
    torch.save(state, path)
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet20", str(path))
    message = _one_line(exc)
    assert "does not match resnet20" in message and "x.pt" in message
    assert "missing keys: linear.bias" in message
    assert "unexpected keys: fc.bias" in message


def test_shape_mismatch_named(resnet20: nn.Module, tmp_path: Path) -> None:
    state = dict(resnet20.state_dict())
    state["conv1.weight"] = torch.zeros(16, 3, 5, 5)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet20", str(path))
    assert "conv1.weight (checkpoint 16x3x5x5, model 16x3x3x3)" in _one_line(exc)


def test_many_missing_keys_truncated(resnet20: nn.Module) -> None:
    state = {"conv1.weight": resnet20.state_dict()["conv1.weight"]}
    with pytest.raises(SnnConvertError) as exc:
        apply_state_dict(cifar_resnet("resnet20"), state, source="checkpoint tiny.pt")
    message = _one_line(exc)
    total = len([k for k in resnet20.state_dict() if "num_batches_tracked" not in k]) - 1
    assert f"missing keys ({total}):" in message
    assert f"and {total - 10} more" in message
    assert message.count("bn") < 30


def test_head_size_inferred_or_reported(resnet20: nn.Module, tmp_path: Path) -> None:
    model = cifar_resnet("resnet20", num_classes=100).eval()
    path = tmp_path / "cifar100.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model("resnet20", str(path))
    assert loaded.num_classes == 100
    assert any("num_classes=100" in note for note in loaded.notes)
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet20", str(path), num_classes=10)
    assert "linear.weight (checkpoint 100x64, model 10x64)" in _one_line(exc)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "is empty"),
        (b"hello, this is not a checkpoint", "is not a PyTorch checkpoint"),
        (bytes(range(7, 200)), "is not a PyTorch checkpoint"),
        (None, "truncated or corrupt"),  # a real checkpoint cut in half
    ],
)
def test_corrupt_files(content: bytes | None, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save(cifar_resnet("resnet20").state_dict(), path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(SnnConvertError) as exc:
        load_state_dict_file(path)
    message = _one_line(exc)
    assert expected in message and str(path) in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SnnConvertError, match="does not exist"):
        load_model("resnet20", str(tmp_path / "nope.th"))
    with pytest.raises(SnnConvertError, match="is a directory"):
        load_state_dict_file(tmp_path)


class _Payload:
    """Pickles as a call to os.system: loading it unsafely would create the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.sentinel}",)


def test_code_payload_refused_and_not_executed(resnet20: nn.Module, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": resnet20.state_dict(), "extra": _Payload(sentinel)}, path)
    for attempt in (lambda: load_state_dict_file(path), lambda: load_model("resnet20", str(path))):
        with pytest.raises(SnnConvertError) as exc:
            attempt()
        message = _one_line(exc)
        assert "pickled Python objects that are not plain tensors" in message
        assert "never unpickles code" in message and "state_dict()" in message
    assert not sentinel.exists()


def test_whole_pickled_module_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    with pytest.raises(SnnConvertError) as exc:
        load_state_dict_file(path)
    message = _one_line(exc)
    assert "whole pickled model" in message and "state_dict()" in message


@pytest.mark.parametrize("obj", [[torch.zeros(2)], {"epoch": 3, "best_prec1": 90.0}, {}])
def test_no_tensor_dict(obj: object, tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    torch.save(obj, path)
    with pytest.raises(SnnConvertError) as exc:
        load_state_dict_file(path)
    assert "contains no dict of tensors" in _one_line(exc)


def test_unknown_model_suggests() -> None:
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet2O")
    message = _one_line(exc)
    assert "unknown model 'resnet2O'" in message
    assert "resnet20" in message and "snnconvert models" in message
    with pytest.raises(SnnConvertError, match="looks like a checkpoint"):
        load_model("my_model.pth")


def test_names_accept_case_and_family_prefix() -> None:
    assert load_model("ResNet20", "random").name == "resnet20"
    assert load_model("bundled:lenet5", "none").source == "bundled:lenet5/random"


def test_bundled_lenet5_default() -> None:
    loaded = load_model("lenet5")
    assert loaded.source == "bundled:lenet5"
    assert loaded.default_data == "digits" and loaded.num_classes == 10
    assert loaded.input_spec.channels == 1 and loaded.input_spec.size == (8, 8)
    assert loaded.input_spec.mean is not None and not loaded.module.training


def test_bundled_lenet5_new_head_keeps_features() -> None:
    base = load_model("lenet5")
    loaded = load_model("lenet5", num_classes=3)
    assert loaded.num_classes == 3
    assert torch.equal(loaded.module.conv1.weight, base.module.conv1.weight)
    assert any("fc3.weight" in note and "not loaded" in note for note in loaded.notes)


def test_bundled_weights_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNCONVERT_MODELS_DIR", str(tmp_path))
    assert ingest.models_dir() == tmp_path
    with pytest.raises(SnnConvertError) as exc:
        load_model("lenet5")
    assert "python models/train_digits.py" in _one_line(exc)
    entry = next(e for e in list_models() if e.name == "lenet5")
    assert entry.weights_offline.startswith("missing")


def test_cifar_resnet_needs_weights() -> None:
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet20")
    message = _one_line(exc)
    assert "no bundled weights" in message
    assert "weights=../shared/data/resnet20-cifar10.th" in message  # the API's spelling
    assert "weights=random" in message


def test_random_weights_and_classes() -> None:
    loaded = load_model("resnet56", "random", num_classes=100)
    assert loaded.source == "bundled:resnet56/random" and loaded.num_classes == 100
    assert loaded.input_spec.size == (32, 32) and loaded.input_spec.std == (0.229, 0.224, 0.225)
    assert loaded.module(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    with pytest.raises(SnnConvertError, match="positive integer"):
        load_model("resnet20", "random", num_classes=0)


def test_input_size_override() -> None:
    loaded = load_model("resnet20", "random", input_size=(64, 48))
    assert loaded.input_spec.size == (64, 48) and loaded.input_spec.resize is None
    with pytest.raises(SnnConvertError) as exc:
        load_model("lenet5", input_size=(16, 16))
    assert "cannot take 16x16" in _one_line(exc)


def test_torchvision_cached_weights_loaded(hub: Path) -> None:
    torch.manual_seed(5)
    reference = torchvision.models.resnet18()
    cached = _cache_file(hub, R18_WEIGHTS)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    for weights in ("DEFAULT", "IMAGENET1K_V1", None):
        loaded = load_model("resnet18", weights)
        assert loaded.source == "torchvision:resnet18/IMAGENET1K_V1"
        got = loaded.module.state_dict()
        assert got.keys() == reference.state_dict().keys()
        assert all(torch.equal(got[k], v) for k, v in reference.state_dict().items())
    spec = loaded.input_spec
    assert spec.size == (224, 224) and spec.resize == 256 and spec.channels == 3
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std is not None
    entry = next(e for e in list_models() if e.name == "resnet18")
    assert entry.family == "torchvision" and entry.weights_offline == "DEFAULT (cached)"


def test_torchvision_new_head(hub: Path) -> None:
    reference = torchvision.models.resnet18()
    cached = _cache_file(hub, R18_WEIGHTS)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    loaded = load_model("resnet18", num_classes=10)
    assert loaded.num_classes == 10 and loaded.module.fc.out_features == 10
    assert torch.equal(loaded.module.conv1.weight, reference.conv1.weight)
    assert any("fc.weight" in note and "not loaded" in note for note in loaded.notes)


def test_torchvision_offline_error(hub: Path) -> None:
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet18")
    message = _one_line(exc)
    assert "weights DEFAULT for resnet18 are not in the local cache" in message
    assert str(_cache_file(hub, R18_WEIGHTS)) in message
    assert "weights=FILE or weights=random" in message  # the API's spelling
    assert not _cache_file(hub, R18_WEIGHTS).exists()
    entry = next(e for e in list_models() if e.name == "resnet18")
    assert entry.weights_offline == "none cached: pass --weights FILE"


def test_torchvision_unknown_weights_name(hub: Path) -> None:
    with pytest.raises(SnnConvertError) as exc:
        load_model("resnet18", "IMAGENET1K_V9")
    message = _one_line(exc)
    assert "IMAGENET1K_V9" in message and "IMAGENET1K_V1" in message


def test_torchvision_random_and_file(tmp_path: Path) -> None:
    loaded = load_model("resnet18", "random", num_classes=10, input_size=(64, 64))
    assert loaded.source == "torchvision:resnet18/random"
    assert loaded.input_spec.size == (64, 64) and loaded.input_spec.resize is None
    assert load_model("resnet18", "random").input_spec.resize == 256
    path = tmp_path / "finetuned.pth"
    torch.save({"model": _prefixed(loaded.module.state_dict(), "module.")}, path)
    again = load_model("resnet18", str(path))  # 10 classes inferred from the head
    assert again.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.module(x), loaded.module(x))


def test_torchvision_googlenet_aux_heads_dropped(hub: Path) -> None:
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    reference = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    cached = _cache_file(hub, weights)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    loaded = load_model("googlenet")
    assert loaded.module.aux1 is None and loaded.module.transform_input
    assert torch.equal(loaded.module.fc.weight, reference.fc.weight)


def test_list_models() -> None:
    entries = {e.name: e for e in list_models()}
    for name in ("lenet5", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        assert entries[name].family == "bundled"
    assert entries["lenet5"].weights_offline == "bundled digits weights"
    assert entries["resnet20"].weights_offline.startswith("none bundled")
    tv_names = torchvision.models.list_models(module=torchvision.models)
    assert all(entries[n].family == "torchvision" for n in tv_names)
    assert entries["vit_b_16"].input_spec.size == (224, 224)


def test_never_unsafe_unpickling() -> None:
    root = Path(ingest.__file__).parent
    for path in root.glob("*.py"):
        code = path.read_text()
        assert not re.search(r"weights_only\s*=\s*False", code), path
        assert "pickle.load(" not in code, path


@pytest.mark.shared_data
@pytest.mark.skipif(not REAL_RESNET20.is_file(), reason=f"{REAL_RESNET20} not available")
def test_real_resnet20_checkpoint() -> None:
    model = cifar_resnet("resnet20")
    state = load_state_dict_file(REAL_RESNET20)
    assert set(state) | {k for k in model.state_dict() if "num_batches_tracked" in k} == set(
        model.state_dict()
    )
    loaded = load_model("resnet20", str(REAL_RESNET20))
    assert loaded.num_classes == 10 and "module." in " ".join(loaded.notes)
    assert torch.equal(loaded.module.linear.bias, state["linear.bias"])
