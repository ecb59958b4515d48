"""Pass ``size-blocks``: cache-driven block counts and k-splits for each format.

A PA1 block's working set (its rows of A with ghost zones plus a few level vectors) should fit in
one thread's share of the cache, and its ghost zone (k levels of neighbours) should be small next
to the block, since ghost rows are computed redundantly.  For each cache target (one L2, a
quarter and a half of the L3 per thread) the pass proposes the block count that fills it, and
when the ghost zone would dominate it splits k into shorter passes (k-splitting).  A "few big
blocks" candidate (two per thread: least redundancy) is always added; the autotuner decides.
Banded (DIA) matrices also get a wavefront candidate, first: two blocks per thread, each swept
with all levels advancing together, so that no row is computed twice inside a block and the
diagonals a level reads are still in cache for the next (measured on 1M-row 2-D problems:
25 % faster than the cache-sized blocks with variable coefficients, 15 % with constant ones).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_core.hardware import default_threads

from asp_mpk.dast import Candidate, MatrixPowersOp, kernel_format

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


#: below this many nonzeros x levels per call, single-threaded candidates come first
SMALL_WORK = 2_000_000


def _hardware(ctx: SpecializationContext) -> tuple[int, int, int]:
    try:
        hw = ctx.hardware
        l2 = int(hw.caches.get("L2", 1 << 20))
        l3 = int(hw.last_level_cache)
        cores = max(1, min(int(hw.physical_cores or hw.logical_cpus or 1), default_threads()))
    except Exception:  # hardware query failed: conservative defaults
        l2, l3, cores = 1 << 20, 8 << 20, 1
    return l2, l3, cores


#: names of the cache targets of :func:`size_blocks` (in its order) in variant names
TARGET_NAMES = ("l2", "l3q", "l3h")


def block_choices(n: int, k: int, halo: int, row_bytes: float, targets: list[int], threads: int,
                  *, allow_split: bool) -> list[tuple[int, int, str]]:
    """``(nblocks, ksplit, sizing)`` (ksplit 0 = no split) for a ghost zone of ``halo``
    rows/level; ``sizing`` names the cache target (:data:`TARGET_NAMES`) or ``few``."""
    out: list[tuple[int, int, str]] = []

    def add(nb: int, ks: int, sizing: str) -> None:
        nb = max(1, min(nb, max(1, n // 64)))
        if all((nb, ks) != (o[0], o[1]) for o in out):
            out.append((nb, ks, sizing))

    for t, tname in zip(targets, TARGET_NAMES):
        w = t / max(row_bytes, 1.0)                      # rows that fit
        ks = k
        while ks >= 1:
            b = w - 2 * ks * halo
            if b >= 2 * ks * halo and b >= 256:          # redundancy <= 50 %
                add(math.ceil(n / b), 0 if ks == k else ks, tname)
                break
            if not allow_split:
                break
            ks //= 2
    add(2 * threads, 0, "few")                           # few big blocks: least redundancy
    return out


def wave_rows(halo: int) -> int:
    """Rows per step of a wavefront sweep: about one ghost zone (fewer steps cost loop and
    window overhead; much longer ones push a level's rows out of cache before the next level
    reads them), within [512, 4096]."""
    return min(4096, max(512, halo))


@asp_pass("size-blocks")
def size_blocks(op: MatrixPowersOp, ctx: SpecializationContext) -> tuple[MatrixPowersOp, bool]:
    """Expand each candidate into block-count (and k-split) choices."""
    l2, l3, cores = _hardware(ctx)
    m = op.matrix
    n, k = m.n, max(op.k, 1)
    isz = 8 if op.dtype == "float64" else 4
    nnz_row = m.nnz / max(n, 1)
    targets = [l2, l3 // (4 * cores), l3 // (2 * cores)]
    split_ok = not op.gram                               # the fused Gram needs one pass
    out: list[Candidate] = []
    for c in op.candidates:
        if c.format == "naive":
            out.append(c.replace(threads=1 if m.nnz * k < SMALL_WORK else cores))
            continue
        if c.format in ("dia", "dia-c"):
            nd = len(m.offsets or ())
            halo = max((abs(o) for o in (m.offsets or (0,))), default=0)
            # full diagonals (constants compiled in only while values do not vary); a
            # symmetric A keeps the upper ones and the main one
            stored = nd - (0 if m.values_vary else m.dia_compressible)
            if m.symmetric:
                stored = (stored + 1) // 2
            mat: float = nd * isz if c.format == "dia" else stored * isz + nd
            choices = block_choices(n, k, halo, mat + 3 * isz, targets, cores,
                                    allow_split=split_ok)
        else:
            bw = m.bandwidth if op.ordering == "natural" else (m.rcm_bandwidth or m.bandwidth)
            r = kernel_format(c.format)[1]
            mat = nnz_row * (isz + 4 / (r * r)) * (0.6 if c.format == "csr-sym" else 1.0)
            choices = block_choices(n, k, min(bw, n), mat + isz * (k + 1) * op.nvec,
                                    targets[:2], cores, allow_split=False)
        # small problems: a call lasts microseconds, so fork/join (and, on a busy machine,
        # waiting for a descheduled thread) costs more than a second core gains
        small = m.nnz * k < SMALL_WORK
        if small:   # one block, one thread: every sizing is the same variant
            choices = [(1, ks, "one") for ks in dict.fromkeys(ks for _, ks, _ in choices)]
        mine = [c.replace(nblocks=nb, ksplit=ks, threads=1 if small else cores, sizing=sizing)
                for nb, ks, sizing in choices]
        if small and cores > 1:
            mine.append(mine[-1].replace(nblocks=2 * cores, threads=cores, sizing="few"))
        if c.format in ("dia", "dia-c") and not small and split_ok:
            mine.insert(0, c.replace(nblocks=2 * cores, threads=cores, sizing="wave",
                                     wave=wave_rows(halo)))
        if c is op.candidates[0] and c.format in ("dia", "dia-c"):
            mine = streaming_twins(mine, op, l2 * cores)
        if not small and cores > 1 and c is op.candidates[0]:
            # one single-threaded twin of the first variant (same plan, same code): on a busy
            # machine a second thread that is descheduled stalls every parallel region
            mine.append(mine[0].replace(threads=1))
        out.extend(mine)
    return op.replace(candidates=out), out != list(op.candidates)


def streaming_twins(cands: list[Candidate], op: MatrixPowersOp, l2_total: int
                    ) -> list[Candidate]:
    """``cands`` with streaming-store twins (same plan, same code: a runtime flag that writes
    the basis with streaming stores), where those exist (x86) and the basis is written without
    being read back (no Gram matrix) and is larger than the cores' L2 caches.  Past four times
    those caches the basis cannot stay in cache for the caller anyway and regular stores cost a
    read of each line for ownership: the twins then replace the candidates (first, the default
    before tuning) but for the first, left for the tuner to time against them; below that both
    are timed.  Every twin is one more timed call while tuning."""
    import platform

    isz = 8 if op.dtype == "float64" else 4
    basis = op.nvec * (op.k + 1) * op.matrix.n * isz
    if op.gram or basis <= l2_total or \
            platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return cands
    twins = [c.replace(nt=True) for c in cands]
    return twins + cands[:1] if basis > 4 * l2_total else cands + twins
