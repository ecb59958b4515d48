"""Phase 5 component ``c-temporal``: compile the blocked iteration and bind one tuning point.

Every variant of the ``openmp-temporal`` platform is the same program (its tuning point is a
run-time argument), so the first build compiles it through the core's cache and the others
reuse that library (kept in the program's ``meta``); each is bound as a
:class:`BlockedSweeps`, which runs ``steps`` sweeps with that variant's point in one C call.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from asp_core import interrupt
from asp_core.components import Backend, PlatformProgram, Variant
from asp_core.errors import AspError

from .. import dast as D
from ..backend import RUN_TIME_ROUNDING
from ..signature import check_grids
from .codegen import run_symbol, symbol_prefix, wide_symbol
from .platform import PLATFORM
from .variants import TemporalParams

if TYPE_CHECKING:
    from asp_core.build import CompiledLibrary
    from asp_core.context import SpecializationContext

__all__ = ["BlockedSweeps", "TemporalBackend", "EXACT_FLAGS", "compile_args",
           "library_cached"]

#: compiler flags keeping libm calls as Python makes them: gcc turns pow(x, 2.0) into x*x, but
#: Python's x ** 2 calls libm's pow, which is not always correctly rounded; calling pow keeps
#: the results bitwise equal (and :data:`~asp_stencil.backend.RUN_TIME_ROUNDING`)
EXACT_FLAGS = ("-fno-builtin-pow", *RUN_TIME_ROUNDING)


class BlockedSweeps:
    """``fn(*grids, steps=n)``: ``n`` blocked sweeps with one tuning point (state =
    ``grids[-2]``, output = ``grids[-1]``); like plain sweeps, the result is in the output grid
    if ``n`` is odd, else in the state grid."""

    def __init__(self, cfunc: Any, prog: D.StencilProgram, params: TemporalParams) -> None:
        self.cfunc = cfunc
        self.prog = prog
        self.params = params

    def __call__(self, *grids: Any, steps: int) -> None:
        data = check_grids(grids)  # read once: the arrays checked are the ones passed to C
        if len(data) != len(self.prog.grids):
            raise TypeError(f"{self.prog.name}() takes {len(self.prog.grids)} grids, got "
                            f"{len(data)}")
        state, out = data[-2], data[-1]
        shape = self.prog.output.shape
        if out.shape != shape or out.dtype != np.float64:
            raise ValueError(f"compiled for shape {shape} float64, called with "
                             f"{out.shape} {out.dtype}")
        if np.may_share_memory(state, out):
            raise ValueError("the state grid and the output grid share memory")
        if not state.flags.writeable:
            raise ValueError("iterate writes the last input grid too (ping-pong), but its .data "
                             "is read-only")
        tp = self.params
        args = (state.ctypes.data, out.ctypes.data, *(d.ctypes.data for d in data[:-2]),
                int(steps), tp.K, tp.B0, tp.B1, tp.B2, tp.SK, tp.JM, tp.WT, tp.NT, tp.W)
        rc = interrupt.run(self.cfunc, *args, keep=data, work=math.prod(shape) * int(steps))
        if rc != 0:
            raise MemoryError("temporal blocking: could not allocate the per-thread scratch")


def has_wide_engine(lib: CompiledLibrary, prog: D.StencilProgram) -> bool:
    """Whether the compiled library holds the full-width engine (``<prefix>_wide()``)."""
    wide = lib.function(wide_symbol(prog))
    wide.argtypes, wide.restype = [], ctypes.c_long
    return bool(wide())


def compile_args(program: PlatformProgram) -> dict[str, Any]:
    """The ``ctx.compile`` arguments of a blocked program's library: its build, and the check
    of whether the code cache has it (:func:`library_cached`), ask for the same."""
    prog: D.StencilProgram = program.meta["dast"]
    return {"source": program.ir, "lang": "c", "openmp": True, "name": symbol_prefix(prog),
            "flags": EXACT_FLAGS, "specialised_on": {"temporal": True,
                                                     "shape": prog.output.shape,
                                                     "dtype": prog.output.dtype}}


def library_cached(program: PlatformProgram) -> bool:
    """Whether the code cache holds the library of ``program`` (building it is loading it)."""
    from asp_core.build import is_cached

    args = compile_args(program)
    del args["name"]
    return is_cached(**args)


class TemporalBackend(Backend):
    """Phase 5 component ``c-temporal`` for the ``openmp-temporal`` platform."""

    name = "c-temporal"
    platforms = (PLATFORM,)

    def build(self, variant: Variant, ctx: SpecializationContext) -> BlockedSweeps:
        program = variant.program
        prog: D.StencilProgram = program.meta["dast"]
        # the variants share their program (lowered for this specialisation): one compile
        lib = program.meta.get("library")
        if lib is None:
            lib = program.meta["library"] = ctx.compile(**compile_args(program))
        params = TemporalParams(**variant.params)
        if params.W and not has_wide_engine(lib, prog):
            # phase 4 expected the engine (see variants.wide_engine); without it the variant
            # would time the default engine twice
            raise AspError(f"variant {variant.name}: the compiled library has no full-width "
                           "engine")
        cfunc = lib.function(run_symbol(prog))
        cfunc.argtypes = [ctypes.c_void_p] * len(prog.grids) + [ctypes.c_long] * 10
        cfunc.restype = ctypes.c_int
        return BlockedSweeps(cfunc, prog, params)
