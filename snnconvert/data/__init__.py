"""Data specs, role splits (calib/train/eval) and loaders producing raw pixels in [0, 1].

Spec kinds (``parse_data_spec``):

- ``digits``: scikit-learn's 8x8 digits; calib/train read the fixed train part, eval the test
  part. Resized (bilinear) and channel-repeated when the model expects another input.
- ``imagefolder:PATH``: ``PATH/<class>/<image>``. With ``PATH/train`` plus ``PATH/val`` (else
  ``PATH/test``) that is a natural split; otherwise PATH is one shared pool.
- ``cifar10:PATH``: torchvision's ``cifar-10-batches-py`` pickles (read with a restricted
  unpickler); ``data_batch_1..5`` for calib/train, ``test_batch`` for eval.
- ``imagenet:PATH``: ``PATH/train/<wnid>/*`` (calib/train) and ``PATH/val/<wnid>/*`` (eval).
  Without ``train/``, ``val/`` is a shared pool like a single-pool imagefolder.
- ``events:PATH`` / ``events,S=N:PATH``: stored event frames ``PATH/<class>/<sample>.npy|.pt``
  (T_F, C, H, W), laid out like an imagefolder; with ``S`` every 2^(S-1) binary frames become
  one one-hot multi-level frame (M-LIF §5.2.2). Items are (Q_F, C, H, W) lane values, not
  images in [0, 1] (see ``snnconvert.data.events``).

On a shared pool calib/train take a seeded, class-stratified ``calib_split`` fraction and eval
takes everything, or with ``holdout=True`` exactly the rest; ``needs_holdout(calib, eval)``
tells the caller when calibration and evaluation would otherwise read the same pool.
Normalization is never applied here: it is folded into the model. ``load_split(..., classes=)``
checks the class folders against the model's classes (``snnconvert.data.classes``): other
names or another count are refused, the same names in another order are labelled by name, and
numbered folders whose text and numeric orders differ are refused when the model's order is
unknown. Images with float or 32-bit integer pixels are refused; 16-bit ones are scaled to 8 bits.
"""

from snnconvert.data.input_spec import InputSpec
from snnconvert.data.kinds import DATA_KINDS, DataKind, data_kinds
from snnconvert.data.loader import make_loader, materialize
from snnconvert.data.specs import DataSpec, parse_data_spec
from snnconvert.data.split import DataSplit, load_split, needs_holdout, pool_key

__all__ = [
    "DATA_KINDS",
    "DataKind",
    "data_kinds",
    "DataSpec",
    "DataSplit",
    "InputSpec",
    "load_split",
    "make_loader",
    "materialize",
    "needs_holdout",
    "parse_data_spec",
    "pool_key",
]
