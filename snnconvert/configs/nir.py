"""``NirInputOptions``: how ``evaluate`` and ``finetune`` run a ``.nir`` ``--input`` (torch-free: the
flags ``--T`` and ``--dt`` are generated from its fields; see :mod:`snnconvert.nir_in`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from snnconvert.errors import ConfigError
from snnconvert.limits import check_time_steps
from snnconvert.options import option


@dataclass
class NirInputOptions:
    """Options of a NIR graph given as input (mixed into the configs of the commands that take one;
    other inputs ignore them)."""

    nir_T: int | None = option(None, flag="--T", help="Time steps to run a .nir --input for (none: the T in the "
                                                     "file's metadata; other inputs ignore it).")
    nir_dt: float | None = option(None, flag="--dt", help="Time step, in seconds, of a .nir --input's neuron "
                                                         "equations (none: the file's metadata dt, else 1 for files "
                                                         "snnconvert wrote and 1e-4 for others, as SpikingJelly "
                                                         "writes; norse's IF graphs want 1).")

    def check_nir_options(self) -> None:
        """One-line errors for an impossible ``nir_T`` or ``nir_dt``."""
        if self.nir_T is not None:
            check_time_steps(self.nir_T, self, "nir_T")
        if self.nir_dt is not None and not (isinstance(self.nir_dt, (int, float)) and not isinstance(self.nir_dt, bool)
                                            and math.isfinite(self.nir_dt) and self.nir_dt > 0):
            raise ConfigError(self, "nir_dt", self.nir_dt, "give a time step > 0 in seconds, or none")
