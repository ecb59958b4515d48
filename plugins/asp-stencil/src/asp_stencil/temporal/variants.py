"""Phase 4 component ``temporal-params``: the tuning points of a kernel's blocked iteration.

The blocked library takes its tuning point at run time (block depth, tiles, engines: see
:class:`TemporalParams`), so every variant is the one ``openmp-temporal`` program with other
parameters: :func:`candidate_params` proposes the points worth timing (expected best first), and
``StencilKernel.iterate`` times them against plain sweeps on real calls. ``ASP_STENCIL_TEMPORAL_PARAMS``
pins one point (benchmarks, debugging).

Whether to propose the full-width (512-bit) engine is decided here, before anything is
compiled, from what makes the template compile one (:func:`wide_engine`); the backend refuses a
full-width variant should the library lack the engine after all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from asp_core.components import PlatformOptimizer, PlatformProgram, Variant
from asp_core.hardware import default_threads

from ..variants import usable_cache
from .analysis import TemporalPlan
from .platform import PLATFORM
from .rows import xshiftable

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["TemporalParams", "TemporalVariants", "candidate_params", "ring_bytes",
           "wide_engine"]


@dataclass(frozen=True)
class TemporalParams:
    """One tuning point: block depth ``K`` (odd), ``B0`` planes per chunk, ``B1`` rows per tile,
    ``B2`` points per row segment (0: whole rows; segments keep long rows' levels in cache at
    the price of halo points at their ends), ``SK`` rows skewed level by level (each level
    reads the row the level below produced last while it is in L1), ``NT`` streaming stores for
    each block's last level (written once, never re-read), ``W`` the full-width vector engine
    (AVX-512 ``zmm``, where :func:`wide_engine` expects the library to have it; ``2``: with its
    x-shifted rows, :func:`~.rows.xshift_row`, where the kernel has them), ``WT`` wavefront
    tiles (3-D: one thread sweeps the tiles of its chunk in order and passes each tile's edge
    rows on to the next instead of every tile recomputing them; ``B2`` and ``SK`` do not apply),
    ``JM`` unroll-and-jam of two rows, so the input rows both read are loaded once: ``1`` rows
    y and y + 1 of a plane (where rows are not skewed), ``2`` row y of planes p and p + 1 (the
    wavefront advances two planes a step; the ring keeps one plane more per level)."""

    K: int
    B0: int
    B1: int
    NT: int = 0
    W: int = 0
    B2: int = 0
    SK: int = 0
    WT: int = 0
    JM: int = 0

    @property
    def label(self) -> str:
        return (f"K{self.K}-B0_{self.B0}-B1_{self.B1}" + (f"-B2_{self.B2}" if self.B2 else "")
                + ("-sk" if self.SK else "") + ("-wt" if self.WT else "")
                + ("-jy" if self.JM == 1 else "-jz" if self.JM else "")
                + ("-nt" if self.NT else "") + ("-wx" if self.W == 2 else "-w" if self.W else ""))

    def as_dict(self) -> dict[str, int]:
        return {"K": self.K, "B0": self.B0, "B1": self.B1, "B2": self.B2, "SK": self.SK,
                "WT": self.WT, "JM": self.JM, "NT": self.NT, "W": self.W}


def ring_bytes(plan: TemporalPlan, tp: TemporalParams) -> int:
    """Per-thread scratch of ``tp`` under ``plan`` (the in-cache working set of one unit)."""
    n0, n1, n2 = plan.shape
    r0, r1, r2 = plan.radius
    if tp.K <= 1:
        return 8
    slots = 2 * r0 + 1 + int(tp.JM == 2)  # two planes a step keep one more alive
    if tp.WT:  # whole rows padded to an odd number of cache lines (WRS in the template)
        lines = -(-n2 // 8)
        return 8 * (tp.K - 1) * slots * (min(tp.B1, n1) + r1 * tp.K) * 8 * (
            lines if lines % 2 else lines + 1)
    row = n2 if not 0 < tp.B2 < n2 else min(n2, -(-(tp.B2 + 2 * r2 * tp.K) // 8) * 8)
    return 8 * (tp.K - 1) * slots * (min(tp.B1, n1) + 2 * r1 * tp.K) * row


def candidate_params(plan: TemporalPlan, threads: int | None = None, l2_bytes: int = 1 << 20,
                     max_variants: int = 12, llc_bytes: int = 32 << 20, wide: bool = False,
                     xshift: bool = False) -> list[TemporalParams]:
    """Tuning points worth timing for ``plan``, the expected best first.

    Geometries come in three families: for 3-D, wavefront tiles (``WT``: no redundant rows, the
    ring within about the per-core L2, proposed twice as often as the others since they won
    every 3-D timing so far); units whose working set (``ring_bytes``) stays within about
    the per-core L2 (tiles of ``B1`` rows, redundant halo rows ``R1·K/B1``); and, for 3-D, whole
    planes per unit resident in a share of the last-level cache (no halo rows, but chunks of
    ``B0`` planes per thread redo about ``R0·K`` planes at their edges). Deeper blocks save
    memory traffic (``1/K``) but redo more halo work; the guess balances the two and the
    autotuner measures. The best geometries are proposed in the full-width engine where the
    library has one (``wide``: the blocked loops run from cache, so they are compute-bound), and
    the first few again in the default-width engine, with rows skewed level by level (3-D), and
    with streaming stores of the last level (saves the read for ownership of the destination;
    worth most for shallow blocks). With ``xshift`` (the full-width engine has x-shifted rows
    for this kernel) the first geometries, and the two-plane jams, come again with those rows
    (``W = 2``; 7-20 % faster on AMD Zen 4, where the blocked loops are bound by 512-bit loads),
    and the jams in deeper blocks whose rings fit twice the L2, beyond ``max_variants``: they
    are timed besides the others, not instead of them.
    """
    n0, n1, n2 = plan.shape
    r0, r1, r2 = plan.radius
    nt = max(1, threads or default_threads())
    budget = 2 * l2_bytes
    # tiles, chunks, segments, ring budget, wavefront tiles
    groups: list[tuple[list[int], list[int], list[int], int, int]] = []
    if n1 > 1:
        # wavefront tiles first: no redundant rows, the ring within 3/4 of the per-core L2
        # (the rest for the grid rows and halo rows streaming through: fuller rings lost every
        # timing); a chunk of planes per thread, or two (more overlap, but a thread slowed by
        # other work holds the others up less)
        groups.append(([b for b in (16, 20, 24, 32, 48) if b < n1] or [n1],
                       sorted({-(-n0 // nt), -(-n0 // (2 * nt))}, reverse=True), [0],
                       3 * l2_bytes // 4, 1))
        tiles = [b for b in (8, 16, 32, 64) if b < n1] or [n1]
        chunk_opts = [n0] if -(-n1 // min(tiles)) >= 2 * nt else [-(-n0 // nt)]
        # whole rows: 3-D segments add halo in a second dimension, and lost every timing
        # against whole rows (the C takes them: ASP_STENCIL_TEMPORAL_PARAMS)
        groups.append((tiles, chunk_opts, [0], budget, 0))
        groups.append(([n1], [-(-n0 // nt)], [0], int(0.6 * llc_bytes / nt), 0))
    else:
        # planes of one row: whole rows, or segments whose levels stay in the L1/L2 cache
        segs = [0] + [b for b in (1024, 256) if 2 * b <= n2]
        groups.append(([1], sorted({-(-n0 // nt), -(-n0 // (2 * nt))}, reverse=True), segs,
                       budget, 0))
    ranked: list[list[TemporalParams]] = []
    for tiles, chunk_opts, segs, limit, wt in groups:
        cands: list[tuple[float, TemporalParams]] = []
        for b1 in tiles:
            for b0 in chunk_opts:
                for b2 in segs:
                    b0 = max(1, b0)
                    for k in (3, 5, 7, 9, 11, 15, 21, 31):
                        tp = TemporalParams(k, b0, b1, B2=b2, WT=wt)
                        if ring_bytes(plan, tp) > limit and k > 3 or wt and k * r1 > b1:
                            continue
                        # wavefront tiles recompute no rows but move 2 R1 halo rows per level
                        halo = 1.0 + (r1 * (k - 1) / b1 if b1 < n1 and not wt else 0.0)
                        moved = 4.0 * r1 * (k - 1) / (b1 * k) if wt and b1 < n1 else 0.0
                        warm = 1.0 + (r0 * (k - 1) / b0 if b0 < n0 else 0.0)
                        seg = 1.0 + (r2 * (k - 1) / b2 if 0 < b2 < n2 else 0.0)
                        # compute (in cache) + memory traffic
                        cands.append((halo * warm * seg + 3.0 / k + moved, tp))
        cands.sort(key=lambda c: c[0])
        # the best depth of every tile shape first (the cost guess is rough; the tuner sees
        # each shape), then the other depths
        best: dict[tuple[int, int, int], TemporalParams] = {}
        for _, tp in cands:
            best.setdefault((tp.B0, tp.B1, tp.B2), tp)
        order = sorted(cands, key=lambda c: (best[(c[1].B0, c[1].B1, c[1].B2)] != c[1], c[0]))
        if not order and wt:
            continue
        ranked.append([tp for _, tp in order])
    # variations of the first geometries: default width (where there is a full-width engine),
    # rows skewed level by level (where levels read other rows of a plane: the same work with
    # the freshest row still in L1; it loses as often as it wins), streaming stores
    skew = int(n1 > 1 and r1 > 0)
    # two planes per pass (3-D wavefront tiles: each pair of rows loads the input rows the two
    # share once; won by a few percent in single-thread timings of heat 3-D)
    jam = int(n0 > 1 and n1 > 1 and any(tp.WT for group in ranked for tp in group))
    families = 1 + int(wide) + skew + jam
    extra = max(1, max_variants // 6)
    n_geo = max(1, max_variants - extra * families)
    geo: list[TemporalParams] = []
    for i in range(max(map(len, ranked), default=0)):  # round robin: every family is timed,
        for group in ranked:                            # wavefront tiles twice as often
            for tp in group[2 * i:2 * i + 2] if group[0].WT else group[i:i + 1]:
                if tp not in geo and len(geo) < n_geo:
                    geo.append(tp)
    geo = geo or [TemporalParams(3, n0, max(1, n1))]
    w = int(wide)
    out = [replace(tp, W=w) for tp in geo]
    if wide:
        out += geo[:extra]
    if skew:
        out += [replace(tp, W=w, SK=1) for tp in geo[:extra]]
    # the expected best wavefront tiles (they won with streaming stores in most timings),
    # else the shallowest blocks (where streaming saves most)
    first = [tp for tp in geo if tp.WT]
    out += [replace(tp, NT=1, W=w) for tp in first + sorted(
        (tp for tp in geo if not tp.WT), key=lambda t: t.K)][:extra]
    jams = []
    if jam:  # the ring keeps one plane more a level: tiles shrunk until it fits as before
        for tp in first[:extra]:
            tj = replace(tp, NT=1, W=w, JM=2)
            while tj.B1 > max(1, tj.K * r1) and ring_bytes(plan, tj) > 3 * l2_bytes // 4:
                tj = replace(tj, B1=tj.B1 - 1)
            jams.append(tj)
    out += jams
    if wide and xshift:
        # the jams (else the first geometries) again, and the jams in deeper blocks whose
        # rings fit the overlapped tiles' budget (twice the per-core L2) rather than 3/4 of
        # it: with their loads halved and prefetched these rows run from L2 and L3 alike (heat
        # 3-D 256^3 on AMD Zen 4, 1 MiB L2: K7 with 32-row tiles 66.8 GB/s effective against
        # 64.3 for the L2-sized K5 with 18)
        shifted = geo[:1 if jams else extra] + jams
        for k in (7, 9) if jams else ():
            fits = [replace(jams[0], K=k, B1=b) for b in (16, 20, 24, 32, 40, 48, 64)
                    if k * r1 <= b < n1]
            shifted += [tp for tp in fits if ring_bytes(plan, tp) <= budget][-1:]
        out += [replace(tp, W=2) for tp in shifted]
    return list(dict.fromkeys(out))   # two tiles may shrink to one jam


def wide_engine(isa: tuple[str, ...], compiler_family: str) -> bool:
    """Whether the blocked library will hold the full-width engine: the template compiles it
    where gcc targets AVX-512 (``-march=native`` on a CPU with ``avx512f``; clang lacks the
    per-function vector-width option it uses)."""
    return "avx512f" in isa and compiler_family == "gcc"


def forced_params() -> TemporalParams | None:
    """The point ``ASP_STENCIL_TEMPORAL_PARAMS="K,B0,B1[,NT[,W[,B2[,SK[,WT[,JM]]]]]]"`` pins."""
    forced = os.environ.get("ASP_STENCIL_TEMPORAL_PARAMS")
    if not forced:
        return None
    # a malformed value said "invalid literal for int()" or "TemporalParams.__init__() missing
    # 1 required positional argument", naming neither the variable nor the format
    try:
        values = [int(v) for v in forced.split(",")]
    except ValueError:
        values = []
    if not 3 <= len(values) <= 9:
        raise ValueError(f"ASP_STENCIL_TEMPORAL_PARAMS={forced!r}: expected 3 to 9 "
                         "comma-separated integers K,B0,B1[,NT[,W[,B2[,SK[,WT[,JM]]]]]]")
    return TemporalParams(*values)


class TemporalVariants(PlatformOptimizer):
    """Phase 4 component ``temporal-params`` for the ``openmp-temporal`` platform: one
    variant per tuning point, all sharing the platform's program."""

    name = "temporal-params"
    platforms = (PLATFORM,)

    def variants(self, program: PlatformProgram, ctx: SpecializationContext) -> list[Variant]:
        from asp_core.toolchain import find_toolchain

        hw = ctx.hardware
        forced = forced_params()
        plan = program.meta["plan"]
        points = [forced] if forced else candidate_params(
            plan, l2_bytes=hw.caches.get("L2", 1 << 20), llc_bytes=usable_cache(hw),
            wide=wide_engine(tuple(hw.isa), find_toolchain("c").family),
            xshift=xshiftable(program.meta["dast"], plan))
        return [Variant(tp.label, program, tp.as_dict()) for tp in points]

