"""Phase 5 component ``c``: print the variant's PAST, compile it through the core, bind it.

The compiled function takes one data pointer per grid (inputs first, output last), then the
value of each kernel attribute it reads at each call (its parameters, by name). The returned
callable takes the kernel's own arguments (the grids), re-validates them (a cheap check: the
dispatcher's key function did the full one) and calls the C function through ctypes, which
releases the GIL for the duration of the call; calls on large grids run through
:func:`asp_core.interrupt.run`, so Ctrl-C interrupts them.
"""

from __future__ import annotations

import ctypes
import math
from concurrent import futures
from ctypes import addressof
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from asp_core import cast as C
from asp_core import background, interrupt
from asp_core.components import Backend, PlatformProgram, Variant
from asp_core.decisions import VARIANT

from . import dast as D
from .grid import fill_periodic_ghosts
from .signature import check_grids, check_written, note_attribute_values

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["OpenMPBackend", "RUN_TIME_ROUNDING", "bind", "compiled_for", "exactness_flags",
           "short_rows", "uses_float32"]


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
        check_written(data, extra_outputs)
        return data

    return check


def _addresses(arrays: list[np.ndarray]) -> list[int]:
    """The data addresses of ``arrays``: through a ctypes view of each buffer, 0.3 us, where
    ``.ctypes.data`` builds an object costing 0.9 us an array of every call (small grids'
    calls are mostly such costs); through ``.ctypes`` where a view is refused (a read-only
    array, one whose buffer cannot be exported writable, an empty one)."""
    try:
        return [addressof(_view(d)) for d in arrays]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return [d.ctypes.data for d in arrays]


_view = ctypes.c_char.from_buffer


def bind(cfunc: Any, prog: D.StencilProgram, instance: Any = None,
         python: Callable[..., Any] | None = None) -> Callable[..., None]:
    """A Python callable running ``cfunc`` on grids shaped as ``prog`` was specialised for;
    the values of its parameters (:class:`~asp_stencil.dast.Param`) come from ``instance`` at
    each call, after the grids are checked. A call whose values Python cannot compute (``2.0
    / self.t`` at ``t == 0``) runs ``python``, the kernel, instead: it raises where Python
    does, or not at all (in a branch no point takes)."""
    n = len(prog.grids)
    params = D.params_of(prog)
    cfunc.argtypes = [ctypes.c_void_p] * n + [
        ctypes.c_float if p.kind == "<f4" else ctypes.c_double for p in params]
    cfunc.restype = None
    check = compiled_for(prog)
    points = math.prod(prog.output.shape)
    checked = prog.info.get(D.CHECKED_PARAMS, ())
    if params or checked:
        from .param_values import values_reader

        values_of = values_reader(params, checked)

        def run(*grids: Any) -> None:
            fill_periodic_ghosts(grids)
            data = check(grids)
            try:   # a float32 value is exact in ctypes' float
                values = values_of(instance)
            except Exception:
                if python is None:
                    raise
                return python(*grids)
            interrupt.run(cfunc, *_addresses(data), *values, keep=data, work=points)
    else:
        def run(*grids: Any) -> None:
            fill_periodic_ghosts(grids)  # Python hooks first: then the arrays given C are checked
            data = check(grids)
            # a long call: Ctrl-C interrupts the wait, not the C code (see asp_core.interrupt)
            interrupt.run(cfunc, *_addresses(data), keep=data, work=points)

    run.__name__ = f"{prog.name}_compiled"
    return run


def uses_float32(prog: D.StencilProgram) -> bool:
    """Whether ``prog`` computes anything in float32 (a float32 grid or NumPy constant)."""
    return any(g.dtype == "<f4" for g in prog.grids) or any(
        isinstance(n, D.Const) and isinstance(n.value, np.float32) for n in D.expr_nodes(prog))


#: rows of at most this many points GCC unrolls completely (its ``max-completely-peel-times``)
SHORT_ROW = 16


def short_rows(prog: D.StencilProgram) -> bool:
    """Whether a point loop of ``prog`` runs rows GCC would unroll completely (an interior row
    of at most :data:`SHORT_ROW` points, a border loop's ghost rows) or is sequential."""
    n = prog.output.shape[-1]
    for s in prog.body:
        if isinstance(s, D.PointLoop):
            g = prog.grid(s.grid).ghost_depth
            if s.sequential or (s.region == "border" and g > 0) or (
                    s.region == "interior" and 0 < n - 2 * g <= SHORT_ROW):
                return True
    return False


#: ``-frounding-math``: what GCC may not assume of the rounding mode it may not evaluate at
#: compile time either, so the code computes as Python does, at run time.  GCC 12.2 folded
#: ``0.0 - x`` to ``-x`` (and ``-x + 0.0`` to ``-x``) where ``x`` cannot be ``-0.0`` (an int
#: converted, a ``fabs``), wrong for ``x == +0.0`` (Python: ``0.0``, compiled: ``-0.0``), and
#: computed ``sin``/``cos``/``exp``/``log`` of an argument it proved constant exactly rounded
#: (MPFR), where Python's libm call differs in the last bit.  The benchmarks' kernels compile
#: to the same instructions with it.
RUN_TIME_ROUNDING = ("-frounding-math",)


def exactness_flags(prog: D.StencilProgram, lang: str = "c") -> tuple[str, ...]:
    """GCC flags that keep ``prog``'s generated code bitwise equal to Python (none for other
    compilers). Each works around wrong code GCC 12.2 generated for kernels of the
    differential tests (``test_stencil_differential.py``):

    * :data:`RUN_TIME_ROUNDING` for every kernel;
    * ``-fno-tree-slp-vectorize`` for kernels computing in float32: GCC folds
      ``(double)(float)x`` to ``x`` once its SLP vectorizer has made the two conversions
      vector ones of equal lane counts (``vector(2) double`` → ``vector(2) float`` →
      ``vector(2) double``; the fold compares the vector types' "precisions", which are their
      lane counts), so a float32 value rounded from a double and then used in double
      arithmetic (a float32 store read back by ``out[x] *= ...``, a float32 product times a
      float64 value) lost its rounding in rows of a few points and in unrolled variants. The
      loop vectorizer widens with unpack instructions, which are not folded.
    * ``--param max-completely-peel-times=1`` where rows are short (:func:`short_rows`): GCC
      unrolled a row loop of a few points completely and then vectorized the loop around it
      with strided accesses, wrongly: a Gauss-Seidel loop reading the previous row's
      updated value (``out[x + (-1, -1)]``) read the old one, and a conditional int64 update
      (``u2`` schedule, rows of one point) computed wrong values. Rows stay loops then (the
      loop vectorizer takes them as it takes long rows); long rows are never unrolled whole,
      so kernels of large grids compile as before.
    """
    from asp_core.toolchain import find_toolchain

    if find_toolchain(lang).family != "gcc":
        return ()
    flags: tuple[str, ...] = RUN_TIME_ROUNDING
    if uses_float32(prog):
        flags += ("-fno-tree-slp-vectorize",)
    if short_rows(prog):
        flags += ("--param", "max-completely-peel-times=1")
    return flags


def _compile_args(name: str, program: PlatformProgram) -> dict[str, Any]:
    """``ctx.compile`` arguments of one variant (the same for a build and a pre-compile, so the
    second finds the first in the cache)."""
    prog: D.StencilProgram = program.meta["dast"]
    # made once: the variants compiled in parallel at the first call were printed (and their
    # flags derived) again by their builds, at the first call timing each (3-4 ms a variant
    # of the 256^3 Laplacian, on calls that are tuning timings)
    if "c_source" not in program.meta:
        program.meta["c_flags"] = exactness_flags(prog)
        program.meta["c_source"] = C.print_c(program.ir)
    return {"source": program.meta["c_source"], "lang": "c", "openmp": True,
            "flags": program.meta["c_flags"],
            "name": program.meta["function"], "variant": name,
            "specialised_on": {"variant": name, "shape": prog.output.shape,
                               "dtype": [g.dtype for g in prog.grids]}}


class OpenMPBackend(Backend):
    """Phase 5 component ``c`` for the ``openmp`` platform."""

    name = "c"
    platforms = ("openmp",)

    def build(self, variant: Variant, ctx: SpecializationContext) -> Callable[..., None]:
        program = variant.program
        if ctx.instance is not None:
            # as the frontend does (it does not run for an object whose class already lowered
            # this key: a second object's time compiled twice more before it was a parameter)
            note_attribute_values(ctx.instance, ctx.key)
        lib = ctx.compile(**_compile_args(variant.name, program))
        if not lib.cached and ctx.decision(VARIANT) is None:   # the tuner will time them
            self._precompile_siblings(variant, ctx)
        return bind(lib.function(program.meta["function"]), program.meta["dast"], ctx.instance,
                    ctx.func)

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
