"""Exceptions and warnings raised by Asp: classes, so callers tell "outside the DSL" from "cannot
compile" from "cache unusable" without parsing the (actionable) messages."""

from __future__ import annotations

import sys
import warnings
from contextvars import ContextVar
from types import FrameType
from typing import Any, Callable, TypeVar

__all__ = ["AspError", "Unspecializable", "SpecializationWarning", "ToolchainError",
           "CompilerNotFound", "CompileError", "CompileTimeout", "CacheError", "CacheWarning",
           "PluginError", "PluginWarning", "PerformanceWarning", "warn", "for_caller"]

_R = TypeVar("_R")
#: (filename, line, module globals) of the user's line a thread works for (:func:`for_caller`)
_site: ContextVar[tuple[str, int, dict[str, Any]] | None] = ContextVar("asp_site", default=None)


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the user's line: the first caller outside the core and
    the plugins' packages. A fixed ``stacklevel`` named Asp's own files when the call came
    another way (``kernel.iterate``, ``Class.kernel(instance, ...)``), which a
    ``filterwarnings(module=...)`` of the user's then missed."""
    site = _site.get()
    if site is not None:   # on a thread working for that line (its stack ends in threading)
        filename, lineno, globs = site
        warnings.warn_explicit(message, category, filename, lineno,
                               module=str(globs.get("__name__", "")),
                               registry=globs.setdefault("__warningregistry__", {}),
                               module_globals=globs)
        return
    _, level = _user_frame(sys._getframe(1))
    warnings.warn(message, category, stacklevel=level + 1)


def for_caller(fn: Callable[..., _R]) -> Callable[..., _R]:
    """``fn`` made to run on another thread (a background specialisation) with :func:`warn`
    attributing its warnings to the user's line that calls this now: from the thread's own
    stack they named ``threading.py``, which no ``filterwarnings(module=...)`` matched.
    The caller's package counts as a plugin's (its entry point may not be loaded yet)."""
    site = _site.get()
    if site is None:   # else a thread started by one working for that line: the same line
        caller = sys._getframe(1)
        frame, _ = _user_frame(caller, _package(caller))
        site = (frame.f_code.co_filename, frame.f_lineno, frame.f_globals)

    def run(*args: Any, **kwargs: Any) -> _R:
        token = _site.set(site)
        try:
            return fn(*args, **kwargs)
        finally:
            _site.reset(token)
    return run


def _user_frame(frame: FrameType, *also: str) -> tuple[FrameType, int]:
    """The first frame from ``frame`` outwards outside the core, the plugins' packages and
    ``also``, and its ``stacklevel`` counted from ``frame`` (1)."""
    from asp_core.plugins import plugin_packages

    ours, level = plugin_packages().union(also), 1
    while frame.f_back is not None and _package(frame) in ours:
        frame, level = frame.f_back, level + 1
    return frame, level


def _package(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", "")).partition(".")[0]


class AspError(Exception):
    """Base class of every exception Asp raises on purpose."""


class Unspecializable(AspError):
    """The kernel uses a construct outside the DSL; carries where and what, so the fallback
    warning and ``asp explain`` point at the exact spot."""

    def __init__(self, construct: str, *, filename: str = "<unknown>", lineno: int = 0,
                 col: int = 0, reason: str = "") -> None:
        self.construct = construct
        self.filename = filename
        self.lineno = lineno
        self.col = col
        self.reason = reason
        super().__init__(f"{self.where}: unsupported construct: {construct}"
                         + (f" ({reason})" if reason else ""))

    @property
    def where(self) -> str:
        """``file:line:column``, without the parts not known (line and column count from 1)."""
        return self.filename + "".join(f":{n}" for n in (self.lineno, self.col) if n > 0) \
            if self.lineno > 0 else self.filename


class SpecializationWarning(UserWarning):
    """A kernel runs in pure Python instead of specialised code; the message says why."""


class PerformanceWarning(UserWarning):
    """A kernel is specialised, but the way it is called costs more than it runs (a kernel
    compiled again at every call); the message says what to change."""


class ToolchainError(AspError):
    """Base class for problems with compilers."""


class CompilerNotFound(ToolchainError):
    """No usable compiler for the requested language; the message says how to install one."""


class CompileError(ToolchainError):
    """The compiler rejected generated code: a bug in a specializer, reported with the log."""

    def __init__(self, message: str, *, command: list[str], log: str, source_path: str) -> None:
        self.message = message
        self.command = command
        self.log = log
        self.source_path = source_path
        super().__init__(f"{message}\ncommand: {' '.join(command)}\nsource: {source_path}\n{log}")

    def __reduce__(self) -> tuple:   # copy and pickle (the keyword-only arguments)
        return _compile_error, (self.message, self.command, self.log, self.source_path)


def _compile_error(message: str, command: list[str], log: str, source_path: str
                   ) -> CompileError:
    return CompileError(message, command=command, log=log, source_path=source_path)


class CompileTimeout(ToolchainError):
    """A compile ran past the limit (``ASP_COMPILE_TIMEOUT``, :attr:`limit` seconds) and was
    killed with every process it started."""

    def __init__(self, message: str, limit: float) -> None:
        self.limit = limit
        super().__init__(message)

    def __reduce__(self) -> tuple:
        return CompileTimeout, (self.args[0], self.limit)


class CacheError(AspError):
    """The code cache cannot be used safely (wrong owner, permissions, corrupted beyond repair)."""


class CacheWarning(UserWarning):
    """The configured cache or tuning database cannot be used; Asp works around it (private
    temporary cache, untuned defaults) and says so once."""


class PluginError(AspError):
    """A plugin registered something inconsistent (duplicate component, unknown phase, ...)."""


class PluginWarning(UserWarning):
    """A plugin failed to load or register (it is skipped and listed as broken), or a setting
    names a specializer that no installed plugin registers."""
