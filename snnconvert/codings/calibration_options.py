"""The calibration options a coding's config carries (``--calibrate``, ``--calibrate-seconds``,
``--calibrate-images``): one torch-free check, shared by the codings and by
:mod:`snnconvert.calibrate`, which the ``to-snn`` usage pre-check can read from source."""

from __future__ import annotations

from snnconvert.errors import SnnConvertError

MODES = ("none", "bias", "layerwise")
"""none: no calibration; bias: threshold scale and bias correction; layerwise: also a weight fit."""


def check_calibration(mode: object, seconds: object, images: object) -> None:
    """Raise a one-line error for an impossible calibration mode, time budget or image count."""
    if mode not in MODES:
        raise SnnConvertError(f"--calibrate {mode!r} is not possible: choose {', '.join(MODES)}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise SnnConvertError(f"--calibrate-seconds {seconds!r} is not possible: give a number of seconds > 0")
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise SnnConvertError(f"--calibrate-images {images!r} is not possible: give an integer >= 2")
