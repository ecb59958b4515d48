"""Phase 5 component ``c``: print the variant's PAST, compile it through the core, bind it.

The compiled function takes one data pointer per grid (inputs first, output last). The returned
callable takes the kernel's own arguments (the grids), re-validates them (a cheap check: the
dispatcher's key function did the full one) and calls the C function through ctypes, which
releases the GIL for the duration of the call.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

from asp_core import cast as C
from asp_core.components import Backend, Variant
from asp_core.errors import AspError

from . import dast as D
from .signature import check_grids

__all__ = ["OpenMPBackend", "bind"]


def bind(cfunc: Any, prog: D.StencilProgram) -> Callable[..., None]:
    """A Python callable running ``cfunc`` on grids shaped as ``prog`` was specialised for."""
    n = len(prog.grids)
    cfunc.argtypes = [ctypes.c_void_p] * n
    cfunc.restype = None
    shape = prog.output.shape
    dtype = prog.output.dtype
    name = prog.name

    def run(*grids: Any) -> None:
        if len(grids) != n:
            raise TypeError(f"{name}() takes {n} grids, got {len(grids)}")
        check_grids(grids)
        data = [g.data for g in grids]
        if data[0].shape != shape or data[0].dtype.str != dtype:
            raise ValueError(f"{name}: compiled for shape {shape} {dtype}, called with "
                             f"{data[0].shape} {data[0].dtype.str}")
        cfunc(*[d.ctypes.data for d in data])

    run.__name__ = f"{name}_compiled"
    return run


def _compile_args(name: str, program: Any) -> dict[str, Any]:
    """``ctx.compile`` arguments of one variant (the same for a build and a pre-compile, so the
    second finds the first in the cache)."""
    prog: D.StencilProgram = program.meta["dast"]
    return {"source": C.print_c(program.ir), "lang": "c", "openmp": True,
            "name": program.meta["function"], "variant": name,
            "specialised_on": {"variant": name, "shape": prog.output.shape,
                               "dtype": prog.output.dtype}}


class OpenMPBackend(Backend):
    """Phase 5 component ``c`` for the ``openmp`` platform."""

    name = "c"
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: Any) -> Callable[..., None]:
        program = variant.program
        lib = ctx.compile(**_compile_args(variant.name, program))
        if not lib.cached:
            self._precompile_siblings(variant, ctx)
        return bind(getattr(lib.cdll, program.meta["function"]), program.meta["dast"])

    @staticmethod
    def _precompile_siblings(variant: Variant, ctx: Any) -> None:
        """On a cold cache, compile the variants the autotuner will time next, in parallel, now:
        otherwise each of the next calls would pay a compile, and a new process would need
        more calls to reach a warm one's speed. A sibling that fails is left to the tuner."""
        siblings = [(n, p) for n, p in variant.program.meta.get("siblings", ())
                    if n != variant.name]
        if not siblings:
            return
        try:
            ctx.compile_many([_compile_args(n, p) for n, p in siblings])
        except AspError:
            pass  # the tuner builds it again, gets the error and excludes the variant
