"""Data kinds are a registry: a new kind (a plugin's) parses, loads and splits like the built-in ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snnconvert.data import DATA_KINDS, DataKind, InputSpec, load_split, parse_data_spec
from snnconvert.data.classes import known_class_names
from snnconvert.data.datasets import TensorImageDataset
from snnconvert.data.pool import Pool
from snnconvert.data.split import pool_key
from snnconvert.errors import SnnConvertError

SPEC = InputSpec(1, (4, 4), None, (0.0,), (1.0,))


def toy_pool(spec, role: str, input_spec: InputSpec) -> Pool:
    """40 constant images: image i is filled with i / 40, label i % 4 (train) or 10 more (eval)."""
    count = 10 if role == "eval" else 40
    start = 1000 if role == "eval" else 0
    values = torch.arange(start, start + count, dtype=torch.float32) / 40
    images = values.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    labels = (np.arange(start, start + count) % 4).astype(np.int64)
    return Pool(f"toy {role}", [f"toy:{i}" for i in range(start, start + count)], labels,
                ["a", "b", "c", "d"], lambda positions: TensorImageDataset(images[torch.from_numpy(positions)],
                                                                           labels[positions], None))


def toy_key(spec, role: str) -> str:
    return f"toy:{'eval' if role == 'eval' else 'train'}"


def toy_classes() -> list[str]:
    return ["a", "b", "c", "d"]


@pytest.fixture()
def toy_kind():
    DATA_KINDS.register("toy", DataKind("toy[,N=K]", f"{__name__}:toy_pool", f"{__name__}:toy_key",
                                        takes_path=False, options=("N",), class_names=f"{__name__}:toy_classes"))
    yield
    DATA_KINDS.unregister("toy")


def test_a_registered_kind_parses_loads_and_splits(toy_kind) -> None:
    spec = parse_data_spec("toy,N=3")
    assert (spec.kind, spec.path, spec.options) == ("toy", None, (("N", "3"),))
    split = load_split("toy", "calib", SPEC, limit=8, seed=0)
    assert len(split) == 8 and split.class_names == ["a", "b", "c", "d"]
    x, y = split.dataset[0]
    assert x.shape == (1, 4, 4) and int(y) == round(float(x[0, 0, 0]) * 40) % 4  # the image its label came with
    assert pool_key("toy", "eval") == "toy:eval" and known_class_names("toy") == ["a", "b", "c", "d"]


def test_its_syntax_is_listed_and_its_options_checked(toy_kind) -> None:
    with pytest.raises(SnnConvertError, match=r"toy\[,N=K\]"):
        parse_data_spec("nosuchkind:x")
    with pytest.raises(SnnConvertError, match="toy accepts N=VALUE"):
        parse_data_spec("toy,M=1")
    with pytest.raises(SnnConvertError, match="'toy' takes no path"):
        parse_data_spec("toy:/tmp")


def test_without_the_plugin_the_kind_is_unknown() -> None:
    with pytest.raises(SnnConvertError, match="unknown data spec 'toy'"):
        parse_data_spec("toy")
