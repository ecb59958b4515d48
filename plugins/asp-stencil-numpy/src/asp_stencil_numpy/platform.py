"""Phase 3 component ``numpy``: can this stencil run as NumPy slicing, and its lowering.

The module imports nothing from asp-stencil at top level (the plugin must load, and ``asp list``
must show it, even when asp-stencil is blocked); :mod:`asp_stencil_numpy.support` and
:mod:`asp_stencil_numpy.lowering` are imported when a kernel reaches this platform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asp_core.components import Platform, PlatformProgram

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["PRIORITY", "NumpyPlatform"]

#: Below the OpenMP platform (10), above the pure-Python platform (-100) of asp-stencil.
PRIORITY = -10


class NumpyPlatform(Platform):
    """Vectorised NumPy: no compiler needed; float64 and (simple) float32 grids."""

    name = "numpy"

    def check(self, dast: Any, ctx: SpecializationContext) -> str | None:
        from asp_stencil_numpy.support import unsupported_reason

        # a reason names the file and line, as the other platforms' refusals do
        return unsupported_reason(dast, lambda line: f"{ctx.filename}:{ctx.firstlineno + line - 1}")

    def lower(self, dast: Any, ctx: SpecializationContext) -> PlatformProgram:
        from asp_stencil import dast as D
        from asp_stencil_numpy.lowering import lower_numpy

        reason = D.unlowered_reason(dast)   # lowered without a check: a platform named
        if reason:                           # (variants_for) raised a TypeError naming a node
            raise ValueError(f"cannot lower {ctx.kernel_name} to NumPy: {reason}")

        source = lower_numpy(dast)
        return PlatformProgram("numpy", source, {"dast": dast, "block": None,
                                                 "function": source.function})
