"""Progress for long loops, off unless the caller asks for it: a transient rich bar on a
terminal, and plain-text lines on stderr when it is not one (logs, pipes, CI), at the start,
at most every ``PLAIN_INTERVAL_S`` seconds, and at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

PLAIN_INTERVAL_S = 10.0
"""Seconds between two plain-text progress lines."""


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """``with Progress("epoch 1/3", total=N, show=True) as p: ... p.advance(loss=0.3)``.

    ``fields`` given to :meth:`advance` / :meth:`update` are shown after the count (numbers
    with 4 significant digits); ``detail`` names the current item (e.g. a model name).
    ``stream`` and ``terminal`` exist for tests (default: stderr, and whether it is a terminal).
    """

    def __init__(self, description: str, *, total: int | None = None, show: bool = True,
                 stream: TextIO | None = None, terminal: bool | None = None,
                 interval: float = PLAIN_INTERVAL_S) -> None:
        self.description = description
        self.total = total
        self.show = show
        self.stream = stream
        self.terminal = terminal
        self.interval = interval
        self.completed = 0
        self.detail = ""
        self.fields: dict[str, Any] = {}
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0
        self._last_line = 0.0

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Progress:
        self._start = self._last_line = time.monotonic()
        if not self.show:
            return self
        stream = self.stream or sys.stderr
        terminal = self.terminal if self.terminal is not None else bool(getattr(stream, "isatty", lambda: False)())
        if terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[extra]}"), TimeRemainingColumn(),
                                     console=Console(file=stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, extra="")
        else:
            self._line("started")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.show:
            self._line("done" if kind is None else "stopped")

    # ------------------------------------------------------------------ updates
    def advance(self, steps: int = 1, *, detail: str | None = None, **fields: Any) -> None:
        self.update(self.completed + steps, detail, **fields)

    def update(self, completed: int, detail: str | None = None, **fields: Any) -> None:
        self.completed = completed
        if detail is not None:
            self.detail = detail
        self.fields.update(fields)
        if not self.show:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, extra=self._extra())
        elif time.monotonic() - self._last_line >= self.interval:
            self._line()

    # ------------------------------------------------------------------ text
    def _extra(self) -> str:
        parts = [self.detail] if self.detail else []
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items()]
        return "  ".join(parts)

    def _line(self, state: str | None = None) -> None:
        now = time.monotonic()
        self._last_line = now
        elapsed = now - self._start
        count = f"{self.completed}/{self.total}" if self.total else f"{self.completed}"
        text = f"{self.description}: {count}"
        if self.total and state is None and 0 < self.completed < self.total:
            eta = elapsed / self.completed * (self.total - self.completed)
            text += f" ({100 * self.completed / self.total:.0f}%, {_duration(elapsed)} elapsed, ~{_duration(eta)} left)"
        else:
            text += f" ({_duration(elapsed)})"
        if state:
            text += f" {state}"
        extra = self._extra()
        if extra:
            text += f"  {extra}"
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()


def track(items: Iterable[T], description: str, *, total: int | None = None, show: bool = False) -> Iterator[T]:
    """Iterate over ``items``; with ``show``, progress on stderr (a bar on a terminal, else lines)."""
    if not show:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(description, total=total) as progress:
        try:
            for item in items:
                yield item
                progress.advance()
        except GeneratorExit:  # the caller stopped early: done if it had taken ``total`` items
            if total is None or progress.completed < total:
                raise
