"""Phase 2 component ``stencil-passes``: the domain passes run by an ``asp_core.PassManager``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core.components import DomainOptimizer
from asp_core.passes import PassManager

from . import dast as D
from .passes import (constant_folding, cse, dead_locals, linear_detection, output_forwarding,
                     type_check, unroll_neighbors)

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["StencilDomainOptimizer", "default_passes"]


def default_passes() -> PassManager:
    """A fresh pass manager holding the default pipeline (other plugins may extend a copy)."""
    return PassManager("stencil-domain", [unroll_neighbors, constant_folding, output_forwarding,
                                          dead_locals, cse, linear_detection, type_check])


class StencilDomainOptimizer(DomainOptimizer):
    name = "stencil-passes"

    def optimize(self, dast: D.StencilProgram, ctx: SpecializationContext) -> D.StencilProgram:
        # With ``linear-detection`` disabled the program carries no ``info["loops"]`` facts and
        # the platform optimiser offers only the schedule that needs none (no streaming stores).
        return default_passes().run(dast, ctx)
