"""One progress helper for everything slow: a bar on a terminal, and lines in the log always.

A cluster job has no terminal: its progress must reach the log, and a log file must hold it
too. :func:`progress` does both. On a terminal it draws a rich bar (to stderr); whether or
not it does, it writes a line to the ``histolatent`` logger at most every ``log_every_s``
seconds and at the end: done/total, percent, rate, ETA and any fields given (e.g. the
latest losses). :func:`log_to_file` adds a file handler for the duration of a job.

Example
-------
>>> from histolatent.progress import progress
>>> with progress(3, "tiles", enabled=False) as bar:
...     for _ in range(3):
...         bar.advance(1, loss=0.5)
>>> bar.done
3
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Progress", "log_to_file", "logger", "progress"]

logger = logging.getLogger("histolatent")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _ensure_stderr_handler() -> None:
    """Send INFO lines to stderr once, unless the application configured logging itself."""
    root = logging.getLogger()
    if logger.handlers or root.handlers:
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
    h.set_name("histolatent-stderr")
    logger.addHandler(h)
    logger.setLevel(logging.INFO)


def _fmt_seconds(s: float) -> str:
    if not s == s or s == float("inf"):  # NaN or inf
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class Progress:
    """Count work done; draw a bar on a terminal and log a line every ``log_every_s`` seconds.

    Use through :func:`progress`. ``advance(n, **fields)`` adds ``n`` units; the fields
    (numbers or short strings) are shown after the rate, e.g. the latest loss terms.
    """

    def __init__(self, total: int | None, label: str, *, unit: str = "items", enabled: bool | None = None,
                 log_every_s: float = 30.0, start: int = 0, transient: bool = False) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.done = int(start)
        self._start_done = int(start)
        self.fields: dict[str, Any] = {}
        self.log_every_s = float(log_every_s)
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self._transient = transient
        self._bar = None
        self._task = None
        self._t0 = self._last_log = time.perf_counter()

    # -- context -----------------------------------------------------------------------
    def __enter__(self) -> Progress:
        _ensure_stderr_handler()
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                     transient=self._transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, info="")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None
        if exc_type is None:
            self._log(final=True)
        else:
            logger.info("%s: stopped at %s (%s)", self.label, self._count(), exc_type.__name__)

    # -- counting ----------------------------------------------------------------------
    @property
    def rate(self) -> float:
        """Units per second since this job (re)started."""
        dt = time.perf_counter() - self._t0
        return (self.done - self._start_done) / dt if dt > 0 else 0.0

    def eta_s(self) -> float:
        if self.total is None:
            return float("nan")
        r = self.rate
        return (self.total - self.done) / r if r > 0 else float("inf")

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += int(n)
        if fields:
            self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, advance=int(n), info=self._fields_text())
        if time.perf_counter() - self._last_log >= self.log_every_s:
            self._log()

    def _count(self) -> str:
        if self.total:
            return f"{self.done}/{self.total} {self.unit} ({100.0 * self.done / self.total:.0f} %)"
        return f"{self.done} {self.unit}"

    def _fields_text(self) -> str:
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.fields.items())

    def _log(self, *, final: bool = False) -> None:
        self._last_log = time.perf_counter()
        parts = [self._count(), f"{self.rate:.3g} {self.unit}/s"]
        if final:
            parts.append(f"in {_fmt_seconds(time.perf_counter() - self._t0)}")
        elif self.total is not None:
            parts.append(f"ETA {_fmt_seconds(self.eta_s())}")
        if self.fields:
            parts.append(self._fields_text())
        logger.info("%s: %s", self.label, ", ".join(parts))


def progress(total: int | None, label: str, **options: Any) -> Progress:
    """A :class:`Progress` to use as a context manager (see the module docstring)."""
    return Progress(total, label, **options)


@contextlib.contextmanager
def log_to_file(path: str | os.PathLike, *, level: int = logging.INFO) -> Iterator[Path]:
    """Append the ``histolatent`` log to ``path`` while the block runs (the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    _ensure_stderr_handler()
    old_level = logger.level
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)
