"""Training methods: plugins of the fine-tuning engine (adaptive bits, DTSS, SpQuant, ...).

A method declares itself once, in its package under :mod:`snnconvert.methods`::

    METHOD = register_method(TrainingMethod(name="toy", summary="...", config=ToyConfig, prepare=prepare))

``FinetuneConfig.methods`` maps method names to option overrides (``{"toy": {"weight": 0.1}}``);
the engine builds each method's config (a dataclass made with ``codings.base.option``), then

* ``prepare(model, config)`` rewrites the trainable copy before training (learnable widths,
  masks, ...; it may add parameters and buffers, which checkpoints and artifacts then carry);
* ``loss(model, config)`` adds a term to the task loss after every forward pass;
* ``before_step(model, config, step, images)`` / ``after_step(model, config, step)`` run
  around each optimizer step (e.g. step-size renewal);
* ``record(model, config)`` adds JSON-compatible figures to each epoch's history row;
* ``parameter_groups(model, config)`` returns ``(params, lr)`` pairs trained at their own fixed lr;
* ``own_parameters(model, config)`` lists parameters the method updates itself (in ``after_step``,
  with its own rule): the engine's optimizer leaves them out and the method zeroes their gradients.

Every hook but ``prepare`` is optional. Other packages can register methods through the
``snnconvert.methods`` entry-point group.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.options import TRAINING_OPTIONS, MethodOptions
from snnconvert.registry import Registry


@dataclass(frozen=True)
class TrainingMethod:
    """What a training method declares (see the package docstring)."""

    name: str
    summary: str
    config: type
    prepare: Callable[[nn.Module, Any], nn.Module]
    loss: Callable[[nn.Module, Any], Tensor | None] | None = None
    before_step: Callable[[nn.Module, Any, int, Tensor], None] | None = None
    after_step: Callable[[nn.Module, Any, int], None] | None = None
    record: Callable[[nn.Module, Any], dict[str, Any]] | None = None
    parameter_groups: Callable[[nn.Module, Any], list[tuple[list[nn.Parameter], float]]] | None = None
    own_parameters: Callable[[nn.Module, Any], list[nn.Parameter]] | None = None

    @classmethod
    def of(cls, options: MethodOptions, **hooks: Any) -> TrainingMethod:
        """The method whose name, summary and config are ``options`` (declared in the method
        package's torch-free ``config`` module) and whose hooks are ``hooks``."""
        return cls(name=options.name, summary=options.summary, config=options.config, **hooks)

    def options(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.config)


METHODS: Registry[TrainingMethod] = Registry("training method", same=lambda a, b: a.config is b.config)
"""Every training method by name (filled by the method packages and plugins on first read)."""


def register_method(method: TrainingMethod) -> TrainingMethod:
    """Add ``method`` to the table (idempotent for the same declaration); returns it."""
    if not dataclasses.is_dataclass(method.config):
        raise TypeError(f"method {method.name}: config must be a dataclass, not {method.config!r}")
    METHODS.register(method.name, method)
    TRAINING_OPTIONS.register(method.name, MethodOptions(method.name, method.summary, method.config))
    return method


def unregister_method(name: str) -> None:
    """Remove a method (tests that register toys clean up with this)."""
    METHODS.unregister(name)
    TRAINING_OPTIONS.unregister(name)


def methods() -> dict[str, TrainingMethod]:
    """All registered training methods by name."""
    return METHODS.items()


def get_method(name: str) -> TrainingMethod:
    """The method ``name`` (``-`` and ``_`` alike), or a one-line error listing the choices."""
    table = methods()
    key = name.replace("-", "_")
    if key not in table:
        raise SnnConvertError(f"unknown training method {name!r}: choose one of {', '.join(table) or 'none'}")
    return table[key]


def method_config(name: str, overrides: dict[str, Any] | None) -> Any:
    """The config of method ``name`` with ``overrides`` (values as given, or text read by each
    option's type); validated by its ``validate()`` when it has one."""
    from snnconvert.options import parse_typed

    method = get_method(name)
    overrides = dict(overrides or {})
    known = {f.name: f for f in method.options()}
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise SnnConvertError(f"training method {method.name} has no option(s) {', '.join(map(str, unknown))}: "
                              f"choose from {', '.join(known) or 'none'}")
    hints = typing.get_type_hints(method.config)
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            values[key] = parse_typed(value, hints[key]) if isinstance(value, str) else value
        except ValueError:
            raise SnnConvertError(f"training method {method.name}: {key}={value!r} is not possible "
                                  f"(expected {str(hints[key]).replace('typing.', '')})") from None
    try:
        config = method.config(**values)
    except TypeError as err:
        raise SnnConvertError(f"training method {method.name}: {err}") from None
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


@dataclass
class ActiveMethod:
    """A method with its built config, as the engine runs it."""

    method: TrainingMethod
    config: Any

    def prepare(self, model: nn.Module) -> nn.Module:
        return self.method.prepare(model, self.config)

    def loss(self, model: nn.Module) -> Tensor | None:
        return self.method.loss(model, self.config) if self.method.loss else None

    def before_step(self, model: nn.Module, step: int, images: Tensor) -> None:
        if self.method.before_step:
            self.method.before_step(model, self.config, step, images)

    def after_step(self, model: nn.Module, step: int) -> None:
        if self.method.after_step:
            self.method.after_step(model, self.config, step)

    def record(self, model: nn.Module) -> dict[str, Any]:
        return dict(self.method.record(model, self.config)) if self.method.record else {}

    def parameter_groups(self, model: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        return list(self.method.parameter_groups(model, self.config)) if self.method.parameter_groups else []

    def own_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(self.method.own_parameters(model, self.config)) if self.method.own_parameters else []


def active_methods(spec: dict[str, dict[str, Any]] | None) -> list[ActiveMethod]:
    """Build and validate every method named in ``FinetuneConfig.methods``, in order."""
    return [ActiveMethod(get_method(name), method_config(name, options)) for name, options in (spec or {}).items()]


def methods_from_flags(names: list[str], options: list[str]) -> dict[str, dict[str, Any]]:
    """``--method NAME`` (repeatable) and ``--method-option NAME.KEY=VALUE`` (repeatable) as the
    ``FinetuneConfig.methods`` mapping; an option names its method, which is then switched on."""
    spec: dict[str, dict[str, Any]] = {get_method(n).name: {} for n in names}
    for text in options:
        head, sep, value = text.partition("=")
        name, dot, key = head.partition(".")
        if not (sep and dot and name and key):
            raise SnnConvertError(f"--method-option {text[:80]!r} is not possible: write NAME.KEY=VALUE")
        spec.setdefault(get_method(name).name, {})[key.replace("-", "_")] = value
    return spec
