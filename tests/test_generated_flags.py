"""Command-line flags are generated from the configs: every config field has its flag (none
missing, none written by hand), methods' options included, and recipes read the same fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
import typer
import yaml

from snnconvert.cli.app import app
from snnconvert.cli.config_flags import config_flags, config_from_flags, read_flag
from snnconvert.cli.finetune_cmd import _method_flags, _sources
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.options import coding_options, flag_name, training_options

FINETUNE_OWN = {"--input", "--data", "--val-data", "--resume", "--method", "--method-option", "--out", "--json"}
"""The finetune command's own options: what to train on and where to write, not training options."""


def _options(command: str) -> dict[str, click.Option]:
    group = typer.main.get_command(app)
    found = {}
    for param in group.commands[command].params:  # type: ignore[attr-defined]
        for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
            found[opt] = param
    return found


def test_every_finetune_field_is_a_flag_and_no_flag_is_hand_written() -> None:
    options = _options("finetune")
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    generated = {flag.flag: flag for flag in config_flags(FinetuneConfig)}
    assert {f.field for f in generated.values()} == {n for n, f in fields.items() if f.metadata.get("cli", True)}
    assert [n for n, f in fields.items() if not f.metadata.get("cli", True)] == ["methods"]  # --method/-option
    for flag, entry in generated.items():
        assert flag in options, flag
        assert options[flag].help.startswith(fields[entry.field].metadata["help"]), flag
    methods = {f"--{flag_name(name)}" for name in training_options()}
    method_flags = {flag.flag for name, m in training_options().items()
                    for flag in config_flags(m.config, f"{flag_name(name)}-")}
    primary = {param.opts[0] for param in {id(p): p for p in options.values()}.values()}
    assert primary == FINETUNE_OWN | set(generated) | methods | method_flags  # nothing else, nothing missing


COMMANDS = {  # command -> (its configs, its own options: what to read and where to write)
    "quantize": ("QuantizeConfig", {"model", "--weights", "--data", "--resize-data", "--allow-class-mismatch",
                                    "--calib-split", "--num-classes", "--eval-limit", "--out", "--json"}),
    "evaluate": ("EvaluateConfig", {"--input", "--sweep", "--plots", "--json", "--out"}),
    "export": ("ExportRequest", {"--input", "--format", "--out", "--json"}),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_config_field_of_a_command_is_a_flag(command: str) -> None:
    from snnconvert.configs.evaluate import EvaluateConfig
    from snnconvert.configs.quantize import QuantizeConfig
    from snnconvert.export import ExportRequest

    config = {"QuantizeConfig": QuantizeConfig, "EvaluateConfig": EvaluateConfig, "ExportRequest": ExportRequest}[
        COMMANDS[command][0]]
    options = _options(command)
    generated = {flag.flag: flag for flag in config_flags(config)}
    for flag, entry in generated.items():
        help_text = dataclasses.fields(config)[[f.name for f in dataclasses.fields(config)].index(entry.field)] \
            .metadata["help"]
        assert flag in options and options[flag].help.startswith(help_text), flag
    primary = {param.opts[0] for param in {id(p): p for p in options.values()}.values()}
    assert primary == COMMANDS[command][1] | set(generated)
    skipped = {f.name for f in dataclasses.fields(config) if not f.metadata.get("cli", True)}
    assert skipped <= {"sweep", "image_shape"}  # --sweep KEY=V1,V2 (repeatable); the shape comes from the model


def test_every_coding_option_is_a_to_snn_flag() -> None:
    options = _options("to-snn")
    for name, coding in coding_options().items():
        for f in coding.options():
            assert f"--{flag_name(f.name)}" in options, (name, f.name)


def test_flags_read_by_the_field_types() -> None:
    flags = {f.field: f for f in config_flags(FinetuneConfig)}
    config = config_from_flags(FinetuneConfig, list(flags.values()),
                               {"epochs": "3", "milestones": "2,3", "grad_clip": "0", "augment": True,
                                "threshold_lr": "none", "val_limit": None})
    assert (config.epochs, config.milestones, config.grad_clip, config.augment) == (3, [2, 3], None, True)
    assert config.threshold_lr is None and config.val_limit == FinetuneConfig().val_limit  # not given: default
    with pytest.raises(SnnConvertError, match="--epochs 'x' is not possible"):
        read_flag(flags["epochs"], "x")


def test_method_flags_switch_their_method_on() -> None:
    flags = {name: source() for name, source in _sources().items()}
    names, items = _method_flags(flags, {"method_dtss": {"t_max": "3", "on": None},
                                         "method_adaptive_bits": {"on": True}}, [], ["spquant.gate_lr=0.1"])
    assert names == ["adaptive_bits"] and items == ["spquant.gate_lr=0.1", "dtss.t_max=3"]


@pytest.mark.parametrize("section", ["quantize", "finetune", "evaluate"])
def test_recipe_sections_take_the_config_fields(tmp_path: Path, section: str) -> None:
    """Every field of the section's config, at its default, loads; any other key is refused."""
    from snnconvert.configs.evaluate import EvaluateConfig
    from snnconvert.configs.quantize import QuantizeConfig
    from snnconvert.recipe import load_recipe

    config = {"quantize": QuantizeConfig, "finetune": FinetuneConfig, "evaluate": EvaluateConfig}[section]()
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    body = {"data": "digits", **fields} if section == "finetune" else fields
    recipe = {"model": "lenet5", "data": "digits", section: body}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    loaded = load_recipe(path)
    assert (loaded.finetune.config if section == "finetune" else getattr(loaded, section)) == config
    recipe[section]["not_a_field"] = 1
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(SnnConvertError, match="not_a_field"):
        load_recipe(path)
