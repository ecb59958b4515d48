"""Phase 5 component ``c``: print the variant's PAST, compile it through the core, bind it.

The compiled function takes one data pointer per grid (inputs first, output last). The returned
callable takes the kernel's own arguments (the grids), re-validates them (a cheap check: the
dispatcher's key function did the full one) and calls the C function through ctypes, which
releases the GIL for the duration of the call; calls on large grids run through
:func:`asp_core.interrupt.call`, so Ctrl-C interrupts them.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Callable

from asp_core import cast as C
from asp_core import interrupt
from asp_core.components import Backend, Variant

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
    big = interrupt.worth_it(math.prod(shape))

    def run(*grids: Any) -> None:
        if len(grids) != n:
            raise TypeError(f"{name}() takes {n} grids, got {len(grids)}")
        data = check_grids(grids)  # the exact arrays checked are the ones passed to C
        if data[0].shape != shape or data[0].dtype.str != dtype:
            raise ValueError(f"{name}: compiled for shape {shape} {dtype}, called with "
                             f"{data[0].shape} {data[0].dtype.str}")
        if big:  # Ctrl-C interrupts the wait, not the C code (see asp_core.interrupt)
            interrupt.call(cfunc, *[d.ctypes.data for d in data], keep=data)
        else:
            cfunc(*[d.ctypes.data for d in data])

    run.__name__ = f"{name}_compiled"
    return run


class OpenMPBackend(Backend):
    """Phase 5 component ``c`` for the ``openmp`` platform."""

    name = "c"
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: Any) -> Callable[..., None]:
        program = variant.program
        prog: D.StencilProgram = program.meta["dast"]
        source = C.print_c(program.ir)
        fname = program.meta["function"]
        lib = ctx.compile(source, lang="c", openmp=True, name=fname,
                          specialised_on={"variant": variant.name, "shape": prog.output.shape,
                                          "dtype": prog.output.dtype})
        return bind(getattr(lib.cdll, fname), prog)
