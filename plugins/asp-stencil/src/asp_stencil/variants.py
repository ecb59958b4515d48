"""Phase 4 component ``schedules``: one variant per loop schedule, best guess first.

The guess follows the roofline of this kind of machine (see ENVIRONMENT.md): a stencil that
writes an output much larger than the last-level cache without reading it is limited by memory
traffic, and streaming stores save the read-for-ownership of every output line, so they come
first (``nt-vec``, rows of pure arithmetic computed with intrinsics and streamed from registers,
their partial edge lines written with non-temporal scalar stores (``ne``) or with regular stores
after a software prefetch of the line (``pf``); the buffered ``nt``, with and without ``ne``,
where intrinsic rows do not apply); small outputs stay in cache and use regular stores. The reported
cache size only orders the guesses: both store kinds are timed for any output beyond 1 MiB, so
a virtual machine reporting its host's L3 still gets streaming stores when they win. The other
alternatives: a dynamic OpenMP schedule (robust when other processes share the cores), one
thread (for grids below ~1M points, too small to amortise a parallel region), 3-D tiling (loop
order tile→i→j→k), ``collapse(2)`` and an unrolled inner loop. Each variant re-lowers the DAST
with its :class:`~asp_stencil.schedule.Schedule`.
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from asp_core.components import PlatformOptimizer, PlatformProgram, Variant

from . import dast as D
from .openmp import lower_openmp
from .schedule import Schedule
from .vector import vector_isa, vectorizable

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["ScheduleVariants", "candidate_schedules", "usable_cache"]


def candidate_schedules(prog: D.StencilProgram, llc_bytes: int, max_variants: int = 5,
                        isa: tuple[str, ...] = ()) -> list[Schedule]:
    """Schedules worth timing for ``prog``, the expected best first.

    ``llc_bytes`` only orders the guesses (streaming stores first for outputs well beyond it);
    every store kind the kernel allows is proposed whenever the output exceeds 1 MiB, so the
    autotuner decides on the real inputs even where the reported cache size is wrong.
    """
    loops = prog.info.get("loops", [])
    parallel = [lp for lp in loops if not lp["sequential"]]
    if not parallel:
        return [Schedule()]
    dim = prog.dim
    points = prod(prog.output.shape)
    out_bytes = points * np.dtype(prog.output.dtype).itemsize
    reads_out = any(lp["reads_output"] for lp in parallel if lp["region"] == "interior")
    nt_ok = dim >= 2 and prog.output.shape[-1] >= 16 and vector_isa(isa) is not None
    interior = [lp for lp in prog.body
                if isinstance(lp, D.PointLoop) and lp.region == "interior" and not lp.sequential]
    # straight from registers to memory: the roofline variant (ENVIRONMENT.md measured
    # 71-105 % of STREAM copy for such code, against 52-77 % for plain omp simd)
    # intrinsic rows: every grid float64, or every grid float32
    one_float = {g.dtype for g in prog.grids} in ({"<f8"}, {"<f4"})
    vec_ok = nt_ok and bool(interior) and one_float and \
        all(vectorizable(lp, prog.output.dtype) for lp in interior)
    # a row shares its edge lines with ghost cells (its own and the next row's), which must
    # keep their values, so those lines are not streamed whole. Either their points go out as
    # non-temporal scalar stores (``nt_edges``: no read for ownership; 15 % faster on float32
    # 256-point rows, which have such a line every 1 KiB, 7 % on float64, AVX-512 Xeon), or
    # as regular stores after a prefetch of the line ~4 KiB ahead (7-10 % faster than without
    # the prefetch there). Which wins is the memory system's business: both are timed
    row_bytes = prog.output.shape[-1] * np.dtype(prog.output.dtype).itemsize
    ahead = max(1, 4096 // row_bytes)
    # intrinsic rows do what the buffered ``nt`` rows do minus a copy through a buffer (25-30 %
    # faster on the 256^3 Laplacian, float32 and float64): where they apply, ``nt`` is not
    # timed, nor the plain rows both edge treatments beat, which leaves room for the tiling
    # among the first five
    # (buffered rows: 25 % faster with ``nt_edges`` on a float32 256^3 Laplacian taking a
    # square root, 18 % on float64)
    streaming = [Schedule(nt=True, vec=True, nt_edges=True),
                 Schedule(nt=True, vec=True, prefetch=ahead)] if vec_ok else \
        [Schedule(nt=True, nt_edges=True), Schedule(nt=True)]
    big = out_bytes > max(llc_bytes // 2, 4 << 20)
    if nt_ok and big and not reads_out:
        out = streaming + [Schedule()]
    elif nt_ok and out_bytes > (1 << 20):
        out = [Schedule()] + streaming
    else:
        out = [Schedule()]
    first = out[0]
    parallel_size = points >= first.parallel_min_points
    if parallel_size:
        # shared machines: a thread descheduled by another process stalls a static schedule
        out.append(replace(first, omp_schedule="dynamic,2"))
    if parallel_size and points < (1 << 20):
        # below ~1M points fork/join can cost more than the second core gives; above, a
        # one-thread win only reflects a momentarily oversubscribed machine at tuning time
        out.append(replace(first, threads=1))
    if dim >= 3 and prog.output.shape[-2] >= 64:
        out.append(replace(first, block=16))
    if dim >= 3:
        out.append(replace(first, collapse=True))
    out.append(replace(first, unroll=2))
    seen: list[Schedule] = []
    for s in out:
        if s not in seen:
            seen.append(s)
    return seen[:max_variants]


def usable_cache(hardware: Any) -> int:
    """The last-level cache this process can count on: the reported size, but at most 8 MiB per
    core it may run on (a virtual machine reports the host's whole L3, e.g. 480 MiB)."""
    cores = max(1, int(getattr(hardware, "physical_cores", 1) or 1))
    return min(int(hardware.last_level_cache), cores * (8 << 20))


class ScheduleVariants(PlatformOptimizer):
    name = "schedules"
    platforms = ("openmp",)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        prog: D.StencilProgram = program.meta["dast"]
        isa = program.meta.get("isa", ())
        llc = usable_cache(ctx.hardware)
        max_v = int(ctx.options.get("max_variants", 5))
        out = []
        for sched in candidate_schedules(prog, llc, max_v, isa):
            ir = program.ir if sched == program.meta.get("schedule") else lower_openmp(prog, sched, isa)
            meta = dict(program.meta, schedule=sched)
            out.append(Variant(sched.label, PlatformProgram(program.platform, ir, meta),
                               sched.params()))
        siblings = tuple((v.name, v.program) for v in out)  # the backend pre-compiles them
        for v in out:
            v.program.meta["siblings"] = siblings
        return out
