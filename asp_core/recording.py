"""Recording specialisations for ``asp explain``, which runs a user's script with recording on
and then renders one :class:`KernelRecord` per finished specialisation (or fallback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["KernelRecord", "start", "stop", "is_recording", "add_context"]


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


def add_context(ctx: SpecializationContext, kernel: str, fallback: str | None = None) -> None:
    """Record ``ctx`` of ``kernel`` when recording is on; the event list is shared, so what
    ``ctx`` records later (tuning) shows too."""
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
