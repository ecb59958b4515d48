"""`Schedule`: the tuning parameters of the OpenMP lowering (one per variant)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """How the point loops are executed; every choice keeps each point's operation order.

    * ``nt``: streaming (non-temporal) stores of the output — each row is computed into an
      aligned per-thread buffer by a ``simd`` loop and written with ``_mm*_stream_pd``, so the
      output does not pass through the cache (worth it when it does not fit there);
    * ``vec``: with ``nt``, rows of pure arithmetic are computed with x86 intrinsics (AVX-512, AVX or SSE2) and
      streamed straight from registers (no buffer; see :mod:`asp_stencil.vector`);
    * ``block``: rows of dimension ``dim-2`` per tile (0: none); tiles become the parallel unit and
      the loop order is *tile, i, j-in-tile, k*, so the planes a tile reads stay in cache;
    * ``collapse``: ``collapse(2)`` on the two outer loops (3-D and up, unblocked);
    * ``unroll``: ``#pragma GCC unroll`` factor for the innermost loop (0: compiler's choice);
      gcc takes no second pragma on that loop, so ``omp simd`` is then left to auto-vectorisation;
    * ``simd``: ``#pragma omp simd`` on the innermost loop;
    * ``prefetch``: with ``vec``, software-prefetch the output line a row's tail writes this
      many rows ahead (0: none); the tail's regular stores then find their line owned instead
      of stalling the streaming stores behind a read-for-ownership (a float32 row of 256
      points has one such line per 16, a float64 row one per 32);
    * ``nt_edges``: with ``nt``, a row's head and tail (the partial cache lines shared with
      the ghost cells of this row and the next, which must keep their values) are written with
      non-temporal scalar stores (``movnti``) instead of regular ones: a partial line merges in
      the write-combining buffer and memory, so the core never reads the line for ownership
      (one read per row, which cost a float32 256-point row ~16 % on an AVX-512 Xeon); the
      tuner times it against ``prefetch``;
    * ``threads``: OpenMP thread count (0: the OpenMP default, 1: no parallel region);
    * ``parallel_min_points``: loops over fewer points run on one thread (fork/join costs more);
    * ``omp_schedule``: OpenMP ``schedule`` clause of the parallel loop: ``static`` (one block per
      thread) or ``dynamic,N`` (chunks of N outer iterations handed out on demand, so a thread
      descheduled by another process on a shared machine does not hold up the others).
    """

    nt: bool = False
    vec: bool = False
    block: int = 0
    collapse: bool = False
    unroll: int = 0
    simd: bool = True
    prefetch: int = 0
    nt_edges: bool = False
    threads: int = 0
    parallel_min_points: int = 32768
    omp_schedule: str = "static"

    def params(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        parts = ["nt" if self.nt else "st"]
        if self.vec:
            parts.append("vec")
        if self.block:
            parts.append(f"b{self.block}")
        if self.collapse:
            parts.append("c2")
        if self.unroll:
            parts.append(f"u{self.unroll}")
        if self.prefetch:
            parts.append(f"pf{self.prefetch}")
        if self.nt_edges:
            parts.append("ne")
        if not self.simd:
            parts.append("nosimd")
        if self.threads:
            parts.append(f"t{self.threads}")
        if self.omp_schedule != "static":
            parts.append(self.omp_schedule.replace(",", ""))
        return "-".join(parts)
