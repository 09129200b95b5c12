"""Versioned configs: a stored config carries its version; older versions migrate on read."""

from __future__ import annotations

from pathlib import Path

import pytest

from snnconvert.configs.quantize import QuantizeConfig
from snnconvert.errors import SnnConvertError
from snnconvert.options import config_from_stored, renamed_fields, stored_config
from snnconvert.recipe import load_recipe


def test_a_stored_config_carries_its_version_and_reads_back() -> None:
    config = QuantizeConfig(bits=6, clip_method="mse", seed=3)
    stored = stored_config(config)
    assert stored["version"] == 2 and stored["clip_method"] == "mse" and "method" not in stored
    assert config_from_stored(QuantizeConfig, stored) == config


def test_a_version_1_config_is_migrated() -> None:
    old = {"bits": 8, "method": "max", "percentile": 99.0}  # as artifacts before v2 stored it: no version
    assert config_from_stored(QuantizeConfig, old) == QuantizeConfig(bits=8, clip_method="max", percentile=99.0)
    assert renamed_fields(QuantizeConfig) == {"method": "clip_method"}


@pytest.mark.parametrize(("data", "needle"), [
    ({"version": 3}, "version 3 is not one this snnconvert reads (1..2)"),
    ({"version": True}, "version True"),
    ({"version": 2, "method": "max"}, "has no field(s) method"),  # a v2 config never had 'method'
    ({"colour": "red"}, "has no field(s) colour"),
])
def test_newer_or_unknown_is_refused(data: dict, needle: str) -> None:
    with pytest.raises(SnnConvertError) as info:
        config_from_stored(QuantizeConfig, data, "a.snnc")
    assert needle in str(info.value) and str(info.value).startswith("a.snnc: ")


def test_a_recipe_may_use_the_older_key(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nquantize:\n  method: max\n")
    assert load_recipe(recipe).quantize.clip_method == "max"
