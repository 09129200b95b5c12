"""How busy the machine is: load averages, and the CPU other processes use while we measure.

The load average counts this benchmark's own threads too, so timing sections are gated on the
*external* CPU use: busy CPU time of the whole machine (``/proc/stat``) minus this process's own
CPU time, per second of wall time, in cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any


def loadavg() -> list[float]:
    """1-, 5- and 15-minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def _machine_busy_seconds() -> float | None:
    """CPU seconds spent busy by all cores since boot (None where /proc/stat is missing)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class CpuWindow:
    """Wall time and the external CPU use (cores) over one measured section."""

    label: str
    wall_seconds: float = 0.0
    external_cores: float | None = None
    own_cores: float = 0.0
    loadavg_start: list[float] = field(default_factory=list)
    loadavg_end: list[float] = field(default_factory=list)
    _busy0: float | None = None
    _own0: float = 0.0
    _wall0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self.loadavg_start = loadavg()
        self._busy0, self._own0, self._wall0 = _machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall0
        own = _own_cpu_seconds() - self._own0
        busy1 = _machine_busy_seconds()
        self.wall_seconds = wall
        self.own_cores = own / max(wall, 1e-9)
        if busy1 is not None and self._busy0 is not None:
            self.external_cores = max(0.0, (busy1 - self._busy0 - own) / max(wall, 1e-9))
        self.loadavg_end = loadavg()

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["external_cores"] = None if self.external_cores is None else round(self.external_cores, 3)
        d["own_cores"] = round(self.own_cores, 3)
        return d


def external_load(window: float = 3.0) -> float | None:
    """Cores other processes kept busy over ``window`` seconds while this process slept."""
    with CpuWindow("probe") as probe:
        time.sleep(window)
    return probe.external_cores


def wait_for_quiet(threshold: float, max_wait: float, *, poll: float = 30.0, log=print) -> dict[str, Any]:
    """Wait (up to ``max_wait`` s) until other processes use at most ``threshold`` cores.

    Returns what was seen: ``quiet`` (bool), the last ``external_cores``, ``waited_seconds`` and the
    load averages."""
    start = time.perf_counter()
    while True:
        ext = external_load()
        waited = time.perf_counter() - start
        if ext is None or ext <= threshold or waited >= max_wait:
            return {"quiet": ext is None or ext <= threshold, "external_cores": ext, "threshold_cores": threshold,
                    "waited_seconds": round(waited, 1), "loadavg": loadavg()}
        log(f"  machine busy: other processes use {ext:.2f} cores (> {threshold}), load {loadavg()}; "
            f"waiting ({waited:.0f}/{max_wait:.0f} s)")
        time.sleep(poll)


__all__ = ["CpuWindow", "external_load", "loadavg", "wait_for_quiet"]
