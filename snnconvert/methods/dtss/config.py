"""The ``dtss`` training method's options (torch-free: ``finetune`` generates its flags before
torch loads)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnconvert.errors import ConfigError
from snnconvert.methods.rate.config import LEAK_ORDERS
from snnconvert.options import TRAINING_OPTIONS, MethodOptions, option

GROUPS = ("sps", "qkv", "attn", "mlp", "other")
"""Layer groups a mask can belong to (``other``: anything outside a Spikformer's four parts)."""


@dataclass
class DTSSConfig:
    """Options of the ``dtss`` training method."""

    t_max: int = option(0, help="Maximum time steps per layer (0: the SNN's T; must equal it otherwise).",
                       flag="--t-max")
    init_steps: int = option(0, help="Steps every mask keeps at the start (0: ceil(T_max / 2), the paper's choice).")
    lambda_m: float = option(1e-4, help="Weight of the mask loss (eq 8).", flag="--lambda-m")
    groups: str = option("auto", help="Layer groups in the mask loss: comma list of sps,qkv,attn,mlp, "
                                      "'all', or 'auto' (qkv,mlp for a transformer, all for a CNN).")
    score_lr: float = option(0.01, help="Learning rate of the mask scores TP (fixed, not scheduled).")
    order: str = option("dtss", help="IF/LIF dynamics: dtss (the paper's eqs 1-2: the reset leaks, firing is "
                                     "strictly above threshold, the membrane starts at 0), or keep (the converted "
                                     "neuron as it is: unleaked reset, fires at >=, starts at theta/2; a converted "
                                     "rate SNN starts training closer to its ANN).")
    min_steps: int = option(1, help="Floor: every layer keeps at least this many steps (0: none, the paper's "
                                    "eq 5 alone; a layer at 0 steps silences the network).")
    warmup_steps: int = option(0, help="Optimizer steps over which lambda_m ramps linearly from 0 (0: none).")

    def validate(self) -> None:
        for name in ("t_max", "init_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(self, name, getattr(self, name), "give a count >= 0 (0: automatic)")
        if self.min_steps < 0 or (self.t_max and self.min_steps > self.t_max):
            raise ConfigError(self, "min_steps", self.min_steps, "give 0..T_max")
        if self.warmup_steps < 0:
            raise ConfigError(self, "warmup_steps", self.warmup_steps, "give a count >= 0")
        if not (math.isfinite(self.lambda_m) and self.lambda_m >= 0):
            raise ConfigError(self, "lambda_m", self.lambda_m, "give a number >= 0")
        if not (math.isfinite(self.score_lr) and self.score_lr > 0):
            raise ConfigError(self, "score_lr", self.score_lr, "give a positive number")
        self.group_set(("qkv",))
        if self.order not in ("keep", *LEAK_ORDERS):
            raise ConfigError(self, "order", self.order, f"choose keep, {', '.join(LEAK_ORDERS)}")

    def group_set(self, present: tuple[str, ...]) -> set[str]:
        """The groups the mask loss covers, given the groups the network's masks have."""
        text = self.groups.strip().lower()
        if text == "all":
            return set(GROUPS)
        if text == "auto":
            transformer = any(g in ("sps", "qkv", "attn", "mlp") for g in present)
            return {"qkv", "mlp"} if transformer else set(GROUPS)
        chosen = {g.strip() for g in text.split(",") if g.strip()}
        bad = chosen - set(GROUPS)
        if bad or not chosen:
            raise ConfigError(self, "groups", self.groups, "choose from "
                                  f"{', '.join(GROUPS)}, all or auto")
        return chosen


OPTIONS = TRAINING_OPTIONS.register("dtss", MethodOptions(
    name="dtss",
    summary="dynamic per-layer time steps: learned step masks + mask loss (Datta et al., DTSS)",
    config=DTSSConfig,
))
