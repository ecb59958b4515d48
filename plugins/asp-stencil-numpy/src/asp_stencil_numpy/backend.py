"""Phase 5 component ``numpy``: compile the generated Python module and bind it to the grids.

No C compiler is involved: the module is compiled by Python's :func:`compile` (microseconds).
The bound callable validates its arguments exactly as asp-stencil does (same messages) before
any NumPy code runs, then calls the generated function on the grids' ``.data`` arrays with
floating-point warnings silenced (Python's scalar semantics would warn point by point; the
compiled C platform does not warn either).
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
        from asp_stencil.signature import check_grids

        program = variant.program
        prog = program.meta["dast"]
        fn = program.ir.load()
        if program.ir.block:  # the whole-array program was already recorded by the platform
            ctx.record("program", platform="numpy", variant=variant.name, text=program.ir.text)
        shapes = [tuple(g.shape) for g in sorted(prog.grids, key=lambda g: g.index)]
        dtype = np.dtype(prog.output.dtype)

        def run(*grids: Any) -> None:
            check_grids(grids)
            if len(grids) != len(shapes):
                raise TypeError(f"this kernel was specialised for {len(shapes)} grids, got "
                                f"{len(grids)}")
            for i, (g, shape) in enumerate(zip(grids, shapes)):
                if g.data.shape != shape or g.data.dtype != dtype:
                    raise ValueError(f"grid {i + 1} is {g.data.dtype}{list(g.data.shape)}; this "
                                     f"kernel was specialised for {dtype}{list(shape)}")
            with np.errstate(all="ignore"):
                fn(*[g.data for g in grids])

        run.__name__ = f"{program.meta['function']}_{variant.name.replace('-', '_')}"
        return run
