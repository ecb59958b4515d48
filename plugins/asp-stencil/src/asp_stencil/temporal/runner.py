"""Compile and run the temporally blocked ``iterate`` of a kernel instance.

:func:`get_iterator` specialises the kernel exactly as a call would (same frontend and domain
passes, through an ``asp_core.SpecializationContext``), checks the plan, compiles the generated
C through the core's cache and returns a :class:`BlockedIterator` that runs ``steps`` sweeps in
one C call. Block depth ``K`` and tile sizes ``B0``/``B1`` are runtime arguments of that one
library; :func:`candidate_params` proposes the ones worth timing, and
:mod:`.iterate` times them against plain sweeps on real calls.
"""

from __future__ import annotations

import ctypes
import math
import os
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from asp_core import interrupt
from asp_core.context import SpecializationContext
from asp_core.errors import CompileError, SpecializationWarning
from asp_core.hardware import default_threads

from .. import dast as D
from ..kernel import kernel_function
from ..signature import check_grids, stencil_signature
from ..variants import usable_cache
from .analysis import TemporalPlan, temporal_plan
from .codegen import run_symbol, scratch_symbol, symbol_prefix, temporal_source

__all__ = ["BlockedIterator", "TemporalParams", "candidate_params", "compile_iterator",
           "get_iterator", "specialise"]

_ITERATORS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()

#: compiler flags keeping libm calls as Python makes them (see :func:`compile_iterator`)
EXACT_FLAGS = ("-fno-builtin-pow",)


@dataclass(frozen=True)
class TemporalParams:
    """One tuning point: block depth ``K`` (odd), ``B0`` planes per chunk, ``B1`` rows per tile,
    ``NT`` streaming stores for each block's last level (written once, never re-read)."""

    K: int
    B0: int
    B1: int
    NT: int = 0

    @property
    def label(self) -> str:
        return f"K{self.K}-B0_{self.B0}-B1_{self.B1}" + ("-nt" if self.NT else "")

    def as_dict(self) -> dict[str, int]:
        return {"K": self.K, "B0": self.B0, "B1": self.B1, "NT": self.NT}


def ring_bytes(plan: TemporalPlan, tp: TemporalParams) -> int:
    """Per-thread scratch of ``tp`` under ``plan`` (the in-cache working set of one unit)."""
    n0, n1, n2 = plan.shape
    r0, r1, _ = plan.radius
    if tp.K <= 1:
        return 8
    return 8 * (tp.K - 1) * (2 * r0 + 1) * (min(tp.B1, n1) + 2 * r1 * tp.K) * n2


def candidate_params(plan: TemporalPlan, threads: int | None = None, l2_bytes: int = 1 << 20,
                     max_variants: int = 8, llc_bytes: int = 32 << 20) -> list[TemporalParams]:
    """Tuning points worth timing for ``plan``, the expected best first.

    Two families: units whose working set (``ring_bytes``) stays within about the per-core L2
    (tiles of ``B1`` rows, redundant halo rows ``R1·K/B1``), and, for 3-D, whole planes per unit
    resident in a share of the last-level cache (no halo rows, but chunks of ``B0`` planes per
    thread redo about ``R0·K`` planes at their edges). Deeper blocks save memory traffic (``1/K``)
    but redo more halo work; the guess balances the two and the autotuner measures.
    """
    n0, n1, n2 = plan.shape
    r0, r1, _ = plan.radius
    nt = max(1, threads or default_threads())
    budget = 2 * l2_bytes
    groups: list[tuple[list[int], list[int], int]] = []  # (tiles, chunks, ring budget)
    if n1 > 1:
        tiles = [b for b in (16, 32, 64) if b < n1] or [n1]
        chunk_opts = [n0] if -(-n1 // min(tiles)) >= 2 * nt else [-(-n0 // nt)]
        groups.append((tiles, chunk_opts, budget))
        groups.append(([n1], [-(-n0 // nt)], int(0.6 * llc_bytes / nt)))
    else:
        groups.append(([1], sorted({-(-n0 // nt), -(-n0 // (2 * nt))}, reverse=True), budget))
    ranked: list[list[TemporalParams]] = []
    for tiles, chunk_opts, limit in groups:
        cands: list[tuple[float, TemporalParams]] = []
        for b1 in tiles:
            for b0 in chunk_opts:
                b0 = max(1, b0)
                for k in (3, 5, 7, 9, 11, 15, 21):
                    tp = TemporalParams(k, b0, b1)
                    if ring_bytes(plan, tp) > limit and k > 3:
                        continue
                    halo = 1.0 + (r1 * (k - 1) / b1 if b1 < n1 else 0.0)
                    warm = 1.0 + (r0 * (k - 1) / b0 if b0 < n0 else 0.0)
                    cost = halo * warm * 1.0 + 3.0 / k  # compute (in cache) + memory traffic
                    cands.append((cost, tp))
        cands.sort(key=lambda c: c[0])
        ranked.append([tp for _, tp in cands])
    plain: list[TemporalParams] = []
    want = max(1, max_variants - max_variants // 3)
    for i in range(max(map(len, ranked), default=0)):  # round robin: every family is timed
        for group in ranked:
            if i < len(group) and group[i] not in plain and len(plain) < want:
                plain.append(group[i])
    plain = plain or [TemporalParams(3, n0, max(1, n1))]
    # the best guesses again with streaming stores of the last level (saves the read for
    # ownership of the destination; worth most for shallow blocks, which move more data)
    streamed = [TemporalParams(tp.K, tp.B0, tp.B1, 1)
                for tp in sorted(plain, key=lambda t: t.K)[:max_variants // 3]]
    return plain + streamed


def specialise(kernel: Any, grids: tuple) -> tuple[SpecializationContext, D.StencilProgram]:
    """The optimised DAST of ``kernel`` for ``grids`` (the same phases 1-2 a call runs)."""
    from ..domain import StencilDomainOptimizer
    from ..frontend import StencilFrontend

    func = kernel_function(kernel)
    ctx = SpecializationContext(specializer="stencil", func=func, args=tuple(grids),
                                instance=kernel, kernel_name=type(kernel).__name__,
                                variant="temporal")
    prog = StencilFrontend().parse(ctx)
    prog = StencilDomainOptimizer().optimize(prog, ctx)
    return ctx, prog


@dataclass
class BlockedIterator:
    """The compiled blocked iteration of one specialisation.

    ``choices`` holds the plain-vs-blocked tuners of :mod:`.iterate` (one per chunk length and
    mode), ``on_event`` records their decisions in the specialisation's context.
    """

    prog: D.StencilProgram
    plan: TemporalPlan
    cfunc: Any
    scratch: Any
    candidates: list[TemporalParams]
    key: str
    on_event: Any = None
    choices: dict = field(default_factory=dict)

    def run(self, grids: tuple, steps: int, params: TemporalParams) -> None:
        """``steps`` sweeps of ``params`` on ``grids`` (state = ``grids[-2]``, output =
        ``grids[-1]``); like plain sweeps, the result is in the output grid if ``steps`` is odd,
        else in the state grid."""
        data = check_grids(grids)  # read once: the arrays checked are the ones passed to C
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
        tp = params
        args = (state.ctypes.data, out.ctypes.data, *(d.ctypes.data for d in data[:-2]),
                int(steps), tp.K, tp.B0, tp.B1, tp.NT)
        rc = interrupt.run(self.cfunc, *args, keep=data, work=math.prod(shape) * int(steps))
        if rc != 0:
            raise MemoryError("temporal blocking: could not allocate the per-thread scratch")


def compile_iterator(ctx: SpecializationContext, prog: D.StencilProgram, plan: TemporalPlan
                     ) -> BlockedIterator:
    """Generate, compile (through the core's cache) and bind."""
    source = temporal_source(prog, plan)
    # -fno-builtin-pow: gcc turns pow(x, 2.0) into x*x, but Python's x ** 2 calls libm's pow,
    # which is not always correctly rounded; calling pow keeps the results bitwise equal
    lib = ctx.compile(source, lang="c", openmp=True, name=symbol_prefix(prog),
                      flags=EXACT_FLAGS,
                      specialised_on={"temporal": True, "shape": prog.output.shape,
                                      "dtype": prog.output.dtype})
    cfunc = getattr(lib.cdll, run_symbol(prog))
    n = len(prog.grids)
    cfunc.argtypes = [ctypes.c_void_p] * n + [ctypes.c_long] * 5
    cfunc.restype = ctypes.c_int
    scratch = getattr(lib.cdll, scratch_symbol(prog))
    scratch.argtypes = [ctypes.c_long, ctypes.c_long]
    scratch.restype = ctypes.c_long
    hw = ctx.hardware
    l2 = hw.caches.get("L2", 1 << 20)
    cands = candidate_params(plan, l2_bytes=l2, llc_bytes=usable_cache(hw))
    forced = os.environ.get("ASP_STENCIL_TEMPORAL_PARAMS")
    if forced:  # "K,B0,B1[,NT]": pin one tuning point (benchmarks, debugging)
        values = [int(v) for v in forced.split(",")]
        cands = [TemporalParams(*values)]
    key = f"{lib.key}:temporal:{default_threads()}"
    return BlockedIterator(prog, plan, cfunc, scratch, cands, key,
                           on_event=lambda ev, **d: ctx.record(ev, **d))


def get_iterator(kernel: Any, grids: tuple) -> Union[BlockedIterator, str]:
    """The (cached) blocked iterator of ``kernel`` for ``grids``, or why there is none."""
    key = stencil_signature(tuple(grids), {}, kernel)
    try:
        per_kernel = _ITERATORS.setdefault(kernel, {})
    except TypeError:  # not weak-referenceable: no caching
        per_kernel = {}
    hit = per_kernel.get(key)
    if hit is None:
        ctx, prog = specialise(kernel, grids)
        plan = temporal_plan(prog)
        if isinstance(plan, str):
            hit = plan
        else:
            from asp_core.toolchain import find_toolchain

            if not find_toolchain("c").has_openmp:
                hit = "the C compiler has no OpenMP"
            else:
                try:
                    hit = compile_iterator(ctx, prog, plan)
                except CompileError as exc:
                    hit = f"the blocked code failed to compile: {exc}"
                    warnings.warn(f"asp: temporal blocking of {type(kernel).__name__} failed to "
                                  f"compile (a bug; please report it), plain sweeps are used: "
                                  f"{exc}", SpecializationWarning, stacklevel=4)
        per_kernel[key] = hit
    return hit
