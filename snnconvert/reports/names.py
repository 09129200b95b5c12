"""Names of the reports every evaluation offers (no heavy imports: the CLI's help reads them)."""

from __future__ import annotations

REPORTS = ("accuracy", "latency", "opf", "energy", "rates", "coding")
"""Reports every evaluation offers; ``coding`` stands for all of the SNN's coding's own reports,
which can also be asked for by name (e.g. ``residual`` for SWS)."""
