"""The five phases of the Asp pipeline (Asp paper, Figure 3), in order."""

from __future__ import annotations

__all__ = ["PHASES", "FRONTEND", "DOMAIN_OPTIMIZATION", "PLATFORM_SELECTION",
           "PLATFORM_OPTIMIZATION", "BACKEND"]

FRONTEND = "frontend"
DOMAIN_OPTIMIZATION = "domain_optimization"
PLATFORM_SELECTION = "platform_selection"
PLATFORM_OPTIMIZATION = "platform_optimization"
BACKEND = "backend"

PHASES: tuple[str, ...] = (FRONTEND, DOMAIN_OPTIMIZATION, PLATFORM_SELECTION,
                           PLATFORM_OPTIMIZATION, BACKEND)
