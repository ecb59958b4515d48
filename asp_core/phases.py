"""The five phases of the Asp pipeline (Asp paper, Figure 3), in order."""

from __future__ import annotations

__all__ = ["PHASES", "FRONTEND", "DOMAIN_OPTIMIZATION", "PLATFORM_SELECTION",
           "PLATFORM_OPTIMIZATION", "BACKEND", "check_phase"]

FRONTEND = "frontend"
DOMAIN_OPTIMIZATION = "domain_optimization"
PLATFORM_SELECTION = "platform_selection"
PLATFORM_OPTIMIZATION = "platform_optimization"
BACKEND = "backend"

PHASES: tuple[str, ...] = (FRONTEND, DOMAIN_OPTIMIZATION, PLATFORM_SELECTION,
                           PLATFORM_OPTIMIZATION, BACKEND)


def check_phase(phase: str) -> str:
    """Return ``phase`` if it names one of :data:`PHASES`, else raise ``ValueError``."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
    return phase
