"""Phase 3 component ``openmp-temporal``: the temporally blocked OpenMP C of a kernel's sweep.

The program it lowers to runs ``steps`` sweeps in one call (see :mod:`.codegen`), not the one
sweep a kernel call makes, so its ``check`` declines every ordinary call: only
``StencilKernel.iterate`` uses it, naming it through the dispatcher
(``Dispatcher.variants_for("openmp-temporal", *grids)``, which skips the check). Phases 1-2,
4 and 5 are the registry's choice as for any call, so another installed plugin can replace
the tuning points (:mod:`.variants`) or the backend (:mod:`.backend`) of the blocked iteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core.components import Platform, PlatformProgram
from asp_core.pipeline import NoPlatform

from .. import dast as D
from ..lower_c import refusals_unsupported
from .analysis import temporal_plan
from .codegen import temporal_source

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["TemporalPlatform", "PLATFORM"]

#: the platform's name, which ``iterate`` asks the dispatcher for
PLATFORM = "openmp-temporal"


class TemporalPlatform(Platform):
    """Phase 3 component ``openmp-temporal`` (lowest priority; named by ``iterate`` only)."""

    name = PLATFORM

    def check(self, dast: D.StencilProgram, ctx: SpecializationContext) -> str | None:
        return ("it runs only multi-step iterations, which StencilKernel.iterate requests "
                "by name")

    def lower(self, dast: D.StencilProgram, ctx: SpecializationContext) -> PlatformProgram:
        """The C source of the blocked iteration; ``NoPlatform`` with the plan's reason where
        blocking does not apply (``iterate`` then runs plain sweeps)."""
        from asp_core.toolchain import find_toolchain

        plan = temporal_plan(dast)
        if isinstance(plan, str):
            raise NoPlatform(plan)
        if not find_toolchain("c").has_openmp:
            raise NoPlatform("the C compiler has no OpenMP")
        with refusals_unsupported(ctx):
            source = temporal_source(dast, plan)
        return PlatformProgram(PLATFORM, source, {"dast": dast, "plan": plan})
