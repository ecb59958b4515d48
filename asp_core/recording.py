"""Recording specialisations for ``asp explain``.

When recording is on, each finished specialisation (or fallback) appends a
:class:`KernelRecord`; the CLI runs a user's script and then renders what was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["KernelRecord", "start", "stop", "records", "is_recording", "add", "add_context"]


@dataclass
class KernelRecord:
    """Everything ``asp explain`` shows about one specialisation key of one kernel."""

    kernel: str
    specializer: str
    key: str
    filename: str = ""
    lineno: int = 0
    source: str = ""
    fallback: str | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == event]


_records: list[KernelRecord] | None = None


def start() -> None:
    global _records
    _records = []


def stop() -> list[KernelRecord]:
    global _records
    out, _records = _records or [], None
    return out


def is_recording() -> bool:
    return _records is not None


def add(record: KernelRecord) -> None:
    if _records is not None:
        _records.append(record)


def add_context(ctx: Any, kernel: str, fallback: str | None = None) -> None:
    """Record the specialisation context ``ctx`` (a ``SpecializationContext``) of ``kernel``
    when recording is on. Its event list is shared, so what is recorded on ``ctx`` later (the
    autotuner's timings and decision) shows too."""
    if _records is None:
        return
    from asp_core.errors import Unspecializable

    try:
        filename, lineno, source = ctx.filename, ctx.firstlineno, ctx.source
    except Unspecializable:
        filename, lineno, source = "", 0, ""
    _records.append(KernelRecord(kernel=kernel, specializer=ctx.specializer, key=repr(ctx.key),
                                 filename=filename, lineno=lineno, source=source,
                                 fallback=fallback, events=ctx.events))


def records() -> list[KernelRecord]:
    return list(_records or [])
