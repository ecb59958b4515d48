"""Asp's messages: the ``asp`` logger and progress for the long steps. Until the application
configures logging, Asp writes to stderr itself (through ``rich`` on a terminal);
``ASP_LOG_LEVEL`` (default ``INFO``) sets the level.
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
    """Asp's own output until the application configures logging (then the record reaches
    the root handler by propagation, and printing it here too would duplicate it)."""

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
    """Set the ``asp`` logger's level: ``level``, else ``ASP_LOG_LEVEL`` (an unknown one is
    warned about), else ``INFO``."""
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
    """Progress of ``total`` steps (e.g. variants being tuned): a transient ``rich`` bar on a
    terminal, else a log record per :meth:`advance`."""

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
            self.log.log(level, "%s%s", description, "" if total == 1 else f" ({total} steps)")

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
