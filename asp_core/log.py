"""Asp's messages: one logger, ``asp``, and progress bars for the long steps.

Everything Asp reports goes through :func:`logging.getLogger` ``("asp")`` and its children
(``asp.autotune``, ``asp.plugins``, ...), so an application routes, silences or records Asp's
messages as it does any library's. While the application has configured no logging of its own
(the root logger has no handler), Asp writes them to stderr itself: through ``rich`` on a
terminal, as ``asp: message`` lines otherwise. ``ASP_LOG_LEVEL`` (``DEBUG``, ``INFO``,
``WARNING``, ``ERROR``; default ``INFO``) sets the level; the CLI's ``-q`` / ``-v`` override it.

Compiling several variants and autotuning show a :class:`Progress`: a ``rich`` bar on a terminal,
one log line per finished step elsewhere.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Any

__all__ = ["logger", "get_logger", "set_level", "Progress"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

logger = logging.getLogger("asp")


def get_logger(name: str = "") -> logging.Logger:
    """``asp`` or its child ``asp.<name>`` (a module's short name, e.g. ``"autotune"``)."""
    return logger.getChild(name) if name else logger


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class _StderrHandler(logging.Handler):
    """Asp's own output while the application has not configured logging: ``rich`` on a
    terminal, ``asp: message`` otherwise; silent once the root logger has a handler (the
    record then reaches it by propagation, and printing it here too would duplicate it)."""

    def __init__(self) -> None:
        super().__init__()
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        if _on_terminal():
            if self._rich is None:
                from rich.console import Console
                from rich.logging import RichHandler

                self._rich = RichHandler(console=Console(stderr=True), show_time=False,
                                         show_path=False, markup=False)
            self._rich.handle(record)
            return
        try:
            sys.stderr.write(f"asp: {record.getMessage()}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def set_level(level: str | int | None = None) -> None:
    """Set the ``asp`` logger's level: ``level``, else ``ASP_LOG_LEVEL``, else ``INFO``.

    An unknown ``ASP_LOG_LEVEL`` is reported (as a warning) and ``INFO`` used.
    """
    bad = None
    if level is None:
        env = os.environ.get("ASP_LOG_LEVEL", "").strip().upper()
        if env and env not in _LEVELS:
            bad, env = env, ""
        level = env or "INFO"
    logger.setLevel(level)
    if bad is not None:
        logger.warning("ASP_LOG_LEVEL=%s is not one of %s; using INFO", bad, ", ".join(_LEVELS))


if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
    logger.addHandler(_StderrHandler())
set_level()


class Progress:
    """Progress of ``total`` steps, e.g. the variants of one autotuning.

    On a terminal (with the ``asp`` logger at ``INFO`` or below) a transient ``rich`` bar on
    stderr; elsewhere one log record at ``level`` per :meth:`advance` (each step reported once).
    """

    def __init__(self, description: str, total: int, *, level: int = logging.INFO,
                 log: logging.Logger | None = None) -> None:
        self.description, self.total, self.level = description, total, level
        self.log = log or logger
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        if self.log.isEnabledFor(logging.INFO) and _on_terminal() and \
                not logging.getLogger().handlers:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn)

            self._bar = RichProgress(TextColumn("asp: {task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                                     TimeElapsedColumn(), console=Console(stderr=True),
                                     transient=True, auto_refresh=False, redirect_stdout=False,
                                     redirect_stderr=False)
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, detail="")
            self._bar.refresh()
            atexit.register(self.close)
        else:
            self.log.log(level, "%s" if total == 1 else "%s (%d steps)",
                         *((description,) if total == 1 else (description, total)))

    def advance(self, detail: str = "", steps: int = 1) -> None:
        """``steps`` more done; ``detail`` says which (e.g. a variant and its time)."""
        self.done += steps
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, detail=detail)
            self._bar.refresh()
        else:
            self.log.log(self.level, "  [%d/%d] %s", self.done, self.total, detail)

    def close(self, summary: str = "") -> None:
        """Remove the bar; log ``summary`` (e.g. the winner) if given."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            atexit.unregister(self.close)
        if summary:
            self.log.log(self.level, "%s", summary)
