"""Phase 5 component ``numpy``: compile the generated Python module and bind it to the grids.

No C compiler is involved: the module is compiled by Python's :func:`compile` (microseconds).
The bound callable fills periodic ghosts and validates its arguments exactly as asp-stencil's
compiled platforms do (same check, same messages) before any NumPy code runs, then calls the
generated function on the checked plain arrays with floating-point warnings silenced (Python's
scalar semantics would warn point by point; the compiled C platform does not warn either).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asp_core.components import Backend, Variant

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    name = "numpy"
    platforms = ("numpy",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., None]:
        import numpy as np  # here, not at import: `asp list` loads this module
        from asp_stencil.backend import compiled_for
        from asp_stencil.grid import fill_periodic_ghosts

        program = variant.program
        prog = program.meta["dast"]
        fn = program.ir.load()
        if program.ir.block:  # the whole-array program was already recorded by the platform
            ctx.record("program", platform="numpy", variant=variant.name, text=program.ir.text)
        check = compiled_for(prog)   # asp-stencil's own check: count, shape, each grid's dtype

        def run(*grids: Any) -> None:
            fill_periodic_ghosts(grids)  # as every stencil platform, before the arrays are read
            data = check(grids)   # plain ndarrays (an np.matrix's * is a matrix product)
            with np.errstate(all="ignore"):
                fn(*data)

        run.__name__ = f"{program.meta['function']}_{variant.name.replace('-', '_')}"
        return run
