"""Typed decision records: what a phase, the autotuner or a runner chose, and why.

``ctx.events`` is a free-form log for ``asp explain``; code that needs to know a choice (which
platform the selection took, which variant the tuner fixed, what a runner such as the stencil's
``iterate`` picked) reads :class:`Decision` records from ``ctx.decisions`` instead of parsing that
log. The core records the ``platform`` and ``variant`` decisions; plugins add their own kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Decision", "PLATFORM", "VARIANT"]

#: the platform selection's choice (phase 3)
PLATFORM = "platform"
#: the autotuner's winner among the variants (phases 4-5)
VARIANT = "variant"


@dataclass(frozen=True)
class Decision:
    """One choice: ``what`` was decided (``"platform"``, ``"variant"``, a plugin's own kind),
    ``choice`` (a component or variant name), ``reason``, ``source`` (``"timed"``, ``"perf
    database"``, ``"default"``, ...), the ``candidates`` considered and structured ``params``
    saying what the choice applies to."""

    what: str
    choice: str
    reason: str = ""
    source: str = ""
    candidates: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
