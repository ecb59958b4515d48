"""Typed decision records (``ctx.decisions``): what a phase, the autotuner or a runner chose and
why, for code that must not parse the free-form ``ctx.events`` log of ``asp explain``. The
pipeline records one per phase that ran a component, ``what`` the phase's name
(:data:`asp_core.phases.PHASES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from asp_core.phases import PLATFORM_SELECTION

__all__ = ["Decision", "PLATFORM", "VARIANT"]

#: the platform selection's choice (phase 3), like every phase's decision named for its phase
PLATFORM = PLATFORM_SELECTION
#: the autotuner's winner among the variants (phases 4-5)
VARIANT = "variant"


@dataclass(frozen=True)
class Decision:
    """One choice of kind ``what`` (``"platform"``, ``"variant"``, a plugin's own), where it
    came from (``source``), the ``candidates`` and ``params`` saying what it applies to."""

    what: str
    choice: str
    reason: str = ""
    source: str = ""
    candidates: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
