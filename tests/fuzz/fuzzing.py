"""Fuzzing helpers: hypothesis profiles and the counts printed at the end of the run.

``SNNCONVERT_FUZZ=ci`` (default) fits CI: the whole directory in well under a minute.
``SNNCONVERT_FUZZ=large`` (``make fuzz``) tries many more inputs with fresh random seeds.
Every fuzz target goes through :func:`attempt`, which counts inputs tried, clean one-line
errors, crashes (any other exception; the test fails) and files left behind in its folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from snnconvert.errors import SnnConvertError

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "snnconvert-hypothesis"))  # nothing in the tree
_COMMON = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("ci", max_examples=int(os.environ.get("SNNCONVERT_FUZZ_EXAMPLES", "40")),
                          derandomize=True, **_COMMON)
settings.register_profile("large", max_examples=int(os.environ.get("SNNCONVERT_FUZZ_EXAMPLES", "1500")), **_COMMON)
settings.load_profile(os.environ.get("SNNCONVERT_FUZZ", "ci"))

MAX_MESSAGE = 400
STATS = {"inputs tried": 0, "loaded or accepted": 0, "clean one-line errors": 0, "crashes": 0,
         "files left behind": 0}


@contextmanager
def workdir() -> Iterator[Path]:
    """A fresh folder for one input; what is left in it beyond ``keep`` is counted by :func:`attempt`."""
    folder = Path(tempfile.mkdtemp(prefix="snnc-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def attempt(call: Callable[[], Any], folder: Path | None = None, keep: tuple[str, ...] = ()) -> Any:
    """Run one fuzz input: it must succeed or raise a short one-line SnnConvertError, and leave
    no file in ``folder`` besides ``keep``. Returns the result (None after an error)."""
    STATS["inputs tried"] += 1
    result = None
    try:
        result = call()
        STATS["loaded or accepted"] += 1
    except SnnConvertError as exc:
        message = str(exc)
        if "\n" in message or len(message) > MAX_MESSAGE:
            STATS["crashes"] += 1
            raise AssertionError(f"error is not one short line: {message[:1000]!r}") from exc
        STATS["clean one-line errors"] += 1
    except BaseException:
        STATS["crashes"] += 1
        raise
    if folder is not None:
        left = sorted(set(os.listdir(folder)) - set(keep))
        if left:
            STATS["files left behind"] += len(left)
            raise AssertionError(f"files left behind: {left}")
    return result
