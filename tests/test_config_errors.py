"""Config errors are structured (config, field, value, expected): the API names the field, the
command line its flag, a recipe its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from snnconvert.cli.app import app
from snnconvert.cli.config_flags import cli_message
from snnconvert.configs.quantize import QuantizeConfig
from snnconvert.errors import ConfigError
from snnconvert.finetune import FinetuneConfig
from snnconvert.methods.dtss.config import DTSSConfig
from snnconvert.options import cli_flag
from snnconvert.recipe import load_recipe

runner = CliRunner()


def _error(call) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call()
    return info.value


def test_the_api_names_the_field() -> None:
    err = _error(lambda: FinetuneConfig(max_batches_per_epoch=0).validate())
    assert (err.config, err.field, err.value) == (FinetuneConfig, "max_batches_per_epoch", 0)
    assert str(err) == "max_batches_per_epoch 0 is not possible: give an integer >= 1"
    err = _error(lambda: QuantizeConfig(clip_method="median").validate())
    assert str(err).startswith("clip_method 'median' is not possible: use ")


@pytest.mark.parametrize(("config", "field", "flag"), [
    (FinetuneConfig, "max_batches_per_epoch", "--max-batches"),  # the field's own flag metadata
    (FinetuneConfig, "weight_decay", "--weight-decay"),
    (QuantizeConfig, "clip_method", "--clip-method"),
    (DTSSConfig, "min_steps", "--dtss-min-steps"),  # a training method's option: the method's prefix
    (DTSSConfig, "t_max", "--t-max"),  # ... unless it names its own flag
])
def test_the_command_line_names_the_flag_it_generated(config: type, field: str, flag: str) -> None:
    assert cli_flag(config, field) == flag


def test_the_command_line_shows_flags(tmp_path: Path) -> None:
    out = runner.invoke(app, ["quantize", "lenet5", "--data", "digits", "--clip-method", "median",
                              "--out", str(tmp_path)])
    assert out.exit_code == 1 and "error: --clip-method 'median' is not possible: use" in out.output
    err = _error(lambda: DTSSConfig(min_steps=-1).validate())
    assert cli_message(err) == "--dtss-min-steps -1 is not possible: give 0..T_max"


@pytest.mark.parametrize(("text", "expected"), [
    ("finetune:\n  data: digits\n  epochs: 1\n  lr: -1.0\n",
     ":7: finetune.lr -1.0 is not possible: give a positive finite learning rate"),
    ("finetune:\n  data: digits\n  methods:\n    dtss:\n      min_steps: -2\n",  # a method's option: its path
     ":8: finetune.methods.dtss.min_steps -2 is not possible: give 0..T_max"),
])
def test_a_recipe_names_the_key_and_its_line(tmp_path: Path, text: str, expected: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nconvert:\n  coding: rate\n" + text)
    with pytest.raises(Exception) as info:
        load_recipe(recipe)
    assert str(info.value) == f"{recipe}{expected}"


def test_a_recipe_coding_option(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5\nconvert:\n  coding: mlif\n  S: 40\n")
    with pytest.raises(Exception) as info:
        load_recipe(recipe)
    assert str(info.value).startswith(f"{recipe}:4: convert.S 40 is not possible: give an integer 1..")


def test_runtime_errors_name_options_per_surface() -> None:
    from snnconvert.errors import SnnConvertError
    from snnconvert.options import opt

    err = SnnConvertError(f"lower {opt(FinetuneConfig, 'lr')} or set {opt('quantize', 'data')}")
    assert str(err) == "lower lr or set data" and cli_message(err) == "lower --lr or set --data"
    assert "\ue000" not in repr(err)


def test_a_config_error_may_name_other_options() -> None:
    from snnconvert.methods.sws.config import SWSConfig

    err = _error(lambda: SWSConfig(Ts="auto", residual_tolerance=1).validate())
    assert str(err) == "residual_tolerance 1 is not possible: it raises a given Ts; with Ts auto leave it out"
    assert cli_message(err) == ("--residual-tolerance 1 is not possible: it raises a given --Ts; with Ts auto "
                                "leave it out")


def test_bundled_weights_hint_per_surface() -> None:
    import snnconvert
    from snnconvert.errors import SnnConvertError

    with pytest.raises(SnnConvertError) as info:
        snnconvert.quantize("resnet20", data="digits")
    assert "pass a checkpoint with weights=FILE" in str(info.value)
    out = runner.invoke(app, ["quantize", "resnet20", "--data", "digits"])
    assert out.exit_code == 1 and "pass a checkpoint with --weights FILE (e.g. --weights ../shared" in out.output
