"""``FinetuneConfig``: every option of :func:`snnconvert.finetune.finetune`, validated in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from snnconvert.configs.nir import NirInputOptions
from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.limits import shorten
from snnconvert.manifest_check import MAX_BATCH, MAX_COUNT, MAX_EPOCHS, MAX_SEED
from snnconvert.options import opt

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "step", "cosine")
LOSSES = ("ce", "tet")
DISTILL = ("float", "none")
STANDARDIZE = ("auto", "on", "off")


def _number(value: object) -> bool:
    """A finite real number (NaN and infinities are never an option value)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clip_norm(text: str) -> float | None:
    """``--grad-clip`` text: a norm, or ``none`` / ``0`` for no clipping."""
    if text.strip().lower() in ("none", "0", "0.0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(FinetuneConfig, "grad_clip", text, "give a norm > 0, or none") \
            from None


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class FinetuneConfig(NirInputOptions):
    """Options of BPTT fine-tuning of a converted SNN (M-LIF paper 000, §5.1 and A.3)."""

    epochs: int = field(default=1, metadata={"help": "Training epochs (0 returns the converted SNN unchanged).",
                                             "cli_required": True})
    batch_size: int = field(default=64, metadata={
        "help": "Global batch size; under torchrun each of the W ranks takes batch_size // W images."})
    lr: float = field(default=1e-3, metadata={
        "help": "Learning rate of the synapse weights and biases (default 1e-3 with Adam, 1 warm-up epoch and a "
                "cosine schedule)."})
    optimizer: str = field(default="adam", metadata={"help": "adam or sgd."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (L2) of every parameter group."})
    schedule: str = field(default="cosine", metadata={
        "help": "none, step (multiply by gamma at each milestone epoch) or cosine (to 0 after warm-up)."})
    milestones: list[int] = field(default_factory=list, metadata={
        "help": "Epochs (counted from 0, warm-up included) at which the step schedule multiplies the lr by gamma."})
    gamma: float = field(default=0.2, metadata={"help": "Factor of the step schedule (0.2: divide by 5, as 000 A.3)."})
    warmup_epochs: int = field(default=1, metadata={
        "help": "Linear warm-up epochs (per step; at most half the run): the lr rises from warmup_factor * lr "
                "to lr."})
    warmup_factor: float = field(default=0.1, metadata={"help": "Starting share of the lr during warm-up."})
    threshold_lr: float | None = field(default=None, metadata={
        "help": "Fixed (unscheduled) lr of the firing thresholds; None shares the weights' scheduled lr."})
    leak_lr: float | None = field(default=None, metadata={
        "help": "Fixed (unscheduled) lr of the membrane leaks; None shares the weights' scheduled lr."})
    surrogate: str | None = field(default=None, metadata={
        "help": "Surrogate gradient spec NAME[:PARAM] (triangular:0.3, sigmoid:4, straight-through, ...); "
                "None keeps each neuron's own (M-LIF: the window of triangles, 000 A.1; multi-bit and SWS: "
                "straight-through; IF: triangular:1)."})
    learn_threshold: bool = field(default=False, metadata={"help": "Train the firing thresholds."})
    learn_leak: bool = field(default=False, metadata={"help": "Train the membrane leaks."})
    leak_max: float | None = field(default=None, metadata={
        "help": "Upper bound of the learned leaks, applied after every step (1.0 keeps every neuron a decaying "
                "LIF, which NIR can hold; None: unbounded)."})
    per_channel: bool = field(default=False, metadata={"help": "One threshold / leak per channel, not per layer."})
    dropout: float | None = field(default=None, metadata={
        "help": "Drop probability of the network's dropout layers while training (None: the ANN's own). "
                "Conversion keeps the ANN's nn.Dropout layers; in the SNN one mask per sample holds for all "
                "its time steps (M-LIF 000 A.3 trains with 0.2 where its ANN has 0)."})
    loss: str = field(default="ce", metadata={
        "help": "ce: cross-entropy of the decoded (time-averaged) output; tet: mean over steps of per-step CE."})
    tet_lambda: float = field(default=0.0, metadata={
        "help": "Weight lambda of TET's regularizer with --loss tet: (1 - lambda) L_TET + lambda MSE(O(t), "
                "tet_target) (Deng et al. 2022, eq 9; SpQuant-SNN A trains with 0.45 for VGG, 0.90 for ResNet)."})
    tet_target: float = field(default=1.0, metadata={"help": "The constant phi TET's regularizer pulls every "
                                                              "step's logits to."})
    augment: bool = field(default=False, metadata={
        "help": "Random crop with zero padding and horizontal flip (seeded)."})
    augment_pad: int | None = field(default=None, metadata={
        "help": "Crop padding in pixels (default: height // 8, i.e. 4 for 32x32)."})
    seed: int = field(default=0, metadata={"help": "Seed of the data order, the augmentation and torch."})
    train_split: float = field(default=1.0, metadata={
        "help": "Share of a single-folder training pool used for training (the rest can validate); training "
                "on the calibration data uses the calibration's own split instead."})
    val_limit: int | None = field(default=1000, metadata={
        "help": "Validation images per epoch (stratified sample; 0 skips validation, None takes all)."})
    checkpoint_time: bool = field(default=False, metadata={
        "help": "Recompute each neuron layer's time loop in the backward pass instead of storing it "
                "(torch.utils.checkpoint; less memory, about one more forward pass)."})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available), cpu, cuda or cuda:N."})
    allow_class_mismatch: bool = field(default=False, metadata={
        "help": "Train and validate on data whose class folders differ from the model's classes (labelled by "
                "name where they are among the model's, else by folder order; a note says which)."})
    max_batches_per_epoch: int | None = field(default=None, metadata={
        "help": "Stop each epoch after this many batches (for budgets).", "flag": "--max-batches"})
    time_budget_s: float | None = field(default=None, metadata={
        "help": "Wall-clock budget in seconds: stop after the epoch that exceeds it (recorded in the history).",
        "flag": "--time-budget"})
    methods: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Training methods to apply, by name, with their option overrides, e.g. "
                "{'adaptive_bits': {'target_bits': '2/2/1'}} (see snnconvert.finetune.methods).",
        "cli": False})  # the command line: --method, --method-option and each method's own flags
    grad_clip: float | None = field(default=1.0, metadata={
        "help": "Clip the global gradient norm of each step to this value (none or 0: no clipping).",
        "parse": lambda text: _clip_norm(text)})
    distill: str = field(default="float", metadata={
        "help": "float: distil the logits of the float ANN the artifact holds (when it has trained weights); "
                "none: cross-entropy only. Bundled LeNet-5 on digits, M-LIF S=3 T=1 after to-snn's calibration, "
                "5 epochs with the other defaults: 97.8 % val top-1 with it, 96.9 % without."})
    distill_temperature: float = field(default=4.0, metadata={"help": "Distillation temperature tau."})
    distill_weight: float = field(default=0.5, metadata={
        "help": "Share alpha of the distillation term: (1 - alpha) CE + alpha tau^2 KL."})
    distill_standardize: str = field(default="auto", metadata={
        "help": "on: z-score the student's and the teacher's logits per image before the temperature (the KL "
                "term then matches their shape, not the ANN's logit scale); off: raw logits; auto: on when the "
                "SNN's logit scale on the first training images is more than 4x off the ANN's (e.g. conversion "
                "without calibration)."})
    reinit_dead: bool = field(default=True, metadata={
        "help": "Re-initialise the threshold of a neuron layer that never fires on the first training batches "
                "from its input statistics (M-LIF and IF layers)."})

    def validate(self) -> None:
        """Raise ``SnnConvertError`` (one line) on the first invalid option."""
        if not (_int(self.epochs) and 0 <= self.epochs <= MAX_EPOCHS):
            raise ConfigError(self, "epochs", self.epochs, "give an integer "
                                  f"0..{MAX_EPOCHS}")
        if not (_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH):
            raise ConfigError(self, "batch_size", self.batch_size, "give an integer "
                                  f"1..{MAX_BATCH}")
        for name in ("lr", "threshold_lr", "leak_lr"):
            value = getattr(self, name)
            if value is None and name != "lr":
                continue
            if not (_number(value) and value > 0):
                raise ConfigError(self, name, value, "give a positive finite "
                                      "learning rate")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(self, "optimizer", self.optimizer, f"choose {' or '.join(OPTIMIZERS)}")
        if not (_number(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ConfigError(self, "momentum", self.momentum, "give a value in [0, 1)")
        if not (_number(self.weight_decay) and self.weight_decay >= 0.0):
            raise ConfigError(self, "weight_decay", self.weight_decay, "give a value >= 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(self, "schedule", self.schedule, f"choose {', '.join(SCHEDULES)}")
        if not (isinstance(self.milestones, (list, tuple)) and len(self.milestones) <= MAX_EPOCHS
                and all(_int(m) and 0 <= m <= MAX_EPOCHS for m in self.milestones)):
            raise ConfigError(self, "milestones", self.milestones, "give epochs as "
                                  f"integers 0..{MAX_EPOCHS}")
        if list(self.milestones) != sorted(self.milestones):
            raise SnnConvertError(f"milestones {shorten(list(self.milestones), 60)} must be increasing")
        if not (_number(self.gamma) and 0.0 < self.gamma <= 1.0):
            raise ConfigError(self, "gamma", self.gamma, "give a factor in (0, 1]")
        if not (_int(self.warmup_epochs) and 0 <= self.warmup_epochs <= MAX_EPOCHS):
            raise ConfigError(self, "warmup_epochs", self.warmup_epochs, "give an integer >= 0")
        if not (_number(self.warmup_factor) and 0.0 < self.warmup_factor <= 1.0):
            raise ConfigError(self, "warmup_factor", self.warmup_factor, "give a value in (0, 1]")
        if self.surrogate is not None and not (isinstance(self.surrogate, str) and self.surrogate):
            raise ConfigError(self, "surrogate", self.surrogate, "give a spec such as triangular:0.3")
        for name in ("learn_threshold", "learn_leak", "per_channel", "augment", "checkpoint_time",
                     "allow_class_mismatch"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(self, name, getattr(self, name), "give true or false")
        if self.leak_max is not None and not (_number(self.leak_max) and self.leak_max > 0.0):
            raise ConfigError(self, "leak_max", self.leak_max, "give a bound > 0 (1.0 for NIR's LIF) or none")
        if self.dropout is not None and not (_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(self, "dropout", self.dropout, "give a probability in [0, 1) or none")
        if not (_number(self.tet_lambda) and 0.0 <= self.tet_lambda <= 1.0):
            raise ConfigError(self, "tet_lambda", self.tet_lambda, "give a weight in [0, 1]")
        if not _number(self.tet_target):
            raise ConfigError(self, "tet_target", self.tet_target, "give a number")
        if self.tet_lambda > 0 and self.loss != "tet":
            raise SnnConvertError(f"{opt(FinetuneConfig, 'tet_lambda')} {self.tet_lambda:g} weights TET's regularizer: "
                                  f"give {opt(FinetuneConfig, 'loss')} tet too")
        if self.loss not in LOSSES:
            raise ConfigError(self, "loss", self.loss, f"choose {' or '.join(LOSSES)}")
        if self.augment_pad is not None and not (_int(self.augment_pad) and 0 <= self.augment_pad <= 4096):
            raise ConfigError(self, "augment_pad", self.augment_pad, "give an integer >= 0")
        if not (_int(self.seed) and 0 <= self.seed < MAX_SEED):
            raise ConfigError(self, "seed", self.seed, "give an integer in [0, 2^64)")
        if not (_number(self.train_split) and 0.0 < self.train_split <= 1.0):
            raise ConfigError(self, "train_split", self.train_split, "give a share in (0, 1]")
        if self.val_limit is not None and not (_int(self.val_limit) and 0 <= self.val_limit <= MAX_COUNT):
            raise ConfigError(self, "val_limit", self.val_limit, "give an integer >= 0 or none")
        if not (isinstance(self.device, str) and self.device):
            raise ConfigError(self, "device", self.device, "give auto, cpu, cuda or cuda:N")
        if self.max_batches_per_epoch is not None and not (
                _int(self.max_batches_per_epoch) and 1 <= self.max_batches_per_epoch <= MAX_COUNT):
            raise ConfigError(self, "max_batches_per_epoch", self.max_batches_per_epoch, "give an integer >= 1")
        if self.time_budget_s is not None and not (_number(self.time_budget_s) and self.time_budget_s > 0):
            raise ConfigError(self, "time_budget_s", self.time_budget_s, "give seconds > 0")
        if not (isinstance(self.methods, dict) and all(
                isinstance(k, str) and (v is None or isinstance(v, dict)) for k, v in self.methods.items())):
            raise SnnConvertError("methods must map training-method names to option mappings")
        if self.grad_clip is not None and not (_number(self.grad_clip) and math.isfinite(self.grad_clip)
                                               and self.grad_clip > 0):
            raise ConfigError(self, "grad_clip", self.grad_clip, "give a norm > 0 or none")
        if self.distill not in DISTILL:
            raise ConfigError(self, "distill", self.distill, f"choose {' or '.join(DISTILL)}")
        if not (_number(self.distill_temperature) and 0.0 < self.distill_temperature < math.inf):
            raise ConfigError(self, "distill_temperature", self.distill_temperature, "give a value > 0")
        if not (_number(self.distill_weight) and 0.0 <= self.distill_weight <= 1.0):
            raise ConfigError(self, "distill_weight", self.distill_weight, "give a share in [0, 1]")
        if self.distill_standardize not in STANDARDIZE:
            raise ConfigError(self, "distill_standardize", self.distill_standardize, ""
                                  f"choose {', '.join(STANDARDIZE)}")
        if not isinstance(self.reinit_dead, bool):
            raise ConfigError(self, "reinit_dead", self.reinit_dead, "give true or false")
        self.check_nir_options()
        from snnconvert.finetune.methods import active_methods

        active_methods(self.methods)  # unknown methods or options fail here, before any work

    def as_dict(self) -> dict[str, Any]:
        """JSON-compatible copy (milestones as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["milestones"] = list(self.milestones)
        out["methods"] = {k: dict(v or {}) for k, v in self.methods.items()}
        return out


# Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("epochs", "time_budget_s", "device", "allow_class_mismatch")
