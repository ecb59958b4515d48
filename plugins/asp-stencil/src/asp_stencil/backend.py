"""Phase 5 component ``c``: print the variant's PAST, compile it through the core, bind it.

The compiled function takes one data pointer per grid (inputs first, output last). The returned
callable takes the kernel's own arguments (the grids), re-validates them (a cheap check: the
dispatcher's key function did the full one) and calls the C function through ctypes, which
releases the GIL for the duration of the call; calls on large grids run through
:func:`asp_core.interrupt.run`, so Ctrl-C interrupts them.
"""

from __future__ import annotations

import ctypes
import math
from concurrent import futures
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from asp_core import cast as C
from asp_core import background, interrupt
from asp_core.components import Backend, PlatformProgram, Variant

from . import dast as D
from .grid import fill_periodic_ghosts
from .signature import check_grids

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["OpenMPBackend", "bind", "compiled_for"]


def compiled_for(prog: D.StencilProgram) -> Callable[[tuple], list[Any]]:
    """A check that grids match what ``prog`` was compiled for (count, shape, each grid's dtype,
    outputs that share no memory with another grid); returns their arrays."""
    n = len(prog.grids)
    shape = prog.output.shape
    dtypes = [g.dtype for g in prog.grids]
    extra_outputs = [g.index for g in prog.outputs if g.index != n - 1]
    name = prog.name

    def check(grids: tuple) -> list[Any]:
        if len(grids) != n:
            raise TypeError(f"{name}() takes {n} grids, got {len(grids)}")
        data = check_grids(grids)  # the arrays checked are the ones returned
        if data[0].shape != shape or [d.dtype.str for d in data] != dtypes:
            raise ValueError(f"{name}: compiled for shape {shape} and dtypes {dtypes}, called "
                             f"with {data[0].shape} {[d.dtype.str for d in data]}")
        for i in extra_outputs:
            if not data[i].flags.writeable:
                raise ValueError(f"grid {i + 1} is written by the kernel but its .data is "
                                 "read-only")
            for j, other in enumerate(data):
                if j != i and np.may_share_memory(data[i], other):
                    raise ValueError(f"grid {i + 1}, which the kernel writes, shares memory "
                                     f"with grid {j + 1}; pass separate grids")
        return data

    return check


def bind(cfunc: Any, prog: D.StencilProgram) -> Callable[..., None]:
    """A Python callable running ``cfunc`` on grids shaped as ``prog`` was specialised for."""
    n = len(prog.grids)
    cfunc.argtypes = [ctypes.c_void_p] * n
    cfunc.restype = None
    check = compiled_for(prog)
    points = math.prod(prog.output.shape)

    def run(*grids: Any) -> None:
        fill_periodic_ghosts(grids)  # Python hooks first: then the arrays passed to C are checked
        data = check(grids)
        # a long call: Ctrl-C interrupts the wait, not the C code (see asp_core.interrupt)
        interrupt.run(cfunc, *[d.ctypes.data for d in data], keep=data, work=points)

    run.__name__ = f"{prog.name}_compiled"
    return run


def _compile_args(name: str, program: PlatformProgram) -> dict[str, Any]:
    """``ctx.compile`` arguments of one variant (the same for a build and a pre-compile, so the
    second finds the first in the cache)."""
    prog: D.StencilProgram = program.meta["dast"]
    return {"source": C.print_c(program.ir), "lang": "c", "openmp": True,
            "name": program.meta["function"], "variant": name,
            "specialised_on": {"variant": name, "shape": prog.output.shape,
                               "dtype": [g.dtype for g in prog.grids]}}


class OpenMPBackend(Backend):
    """Phase 5 component ``c`` for the ``openmp`` platform."""

    name = "c"
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., None]:
        program = variant.program
        lib = ctx.compile(**_compile_args(variant.name, program))
        if not lib.cached:
            self._precompile_siblings(variant, ctx)
        return bind(lib.function(program.meta["function"]), program.meta["dast"])

    @staticmethod
    def _precompile_siblings(variant: Variant, ctx: SpecializationContext) -> None:
        """On a cold cache, compile the variants the autotuner will time next, in parallel on
        the core's background pool, and wait for them: otherwise each of the next calls would
        pay a compile, and the variants timed meanwhile would share the cores with gcc.  A
        sibling that fails is left to the tuner (its build raises the error and the tuner
        excludes the variant)."""
        siblings = [(n, p) for n, p in variant.program.meta.get("siblings", ())
                    if n != variant.name]
        if siblings:
            futures.wait([background.submit(ctx, **_compile_args(n, p)) for n, p in siblings])
