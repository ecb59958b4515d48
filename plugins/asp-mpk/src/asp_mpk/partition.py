"""Graph partitioning of the rows and the k-level ghost closures of PA1.

The partitioner needs no external library: rows are ordered to make the graph "thin" (natural
order when it is already banded, else reverse Cuthill-McKee, a BFS level-set ordering) and cut
into contiguous ranges of that order.  Consecutive BFS level sets touch only their neighbours,
so each part's k-level closure is the part plus at most k level sets on either side.

For a part B the closure is R_k = B, R_{j-1} = R_j ∪ adj(R_j); level j of the basis is needed on
R_j.  Local numbering puts R_k first, then the new rows of each wider level, so every R_j is a
prefix [0, m_j) of the local vector and the kernel's loops have simple bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from asp_mpk import native

__all__ = ["block_bounds", "ClosurePlan", "ClosureTooLarge", "build_closures", "gather_rows"]


def block_bounds(n: int, nblocks: int) -> np.ndarray:
    """``nblocks + 1`` boundaries splitting ``range(n)`` into near-equal contiguous ranges."""
    nblocks = max(1, min(int(nblocks), max(n, 1)))
    return np.linspace(0, n, nblocks + 1).round().astype(np.int64)


def gather_rows(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in ``indices`` of all entries of ``rows`` (concatenated, row order kept)."""
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) - np.repeat(first, lens) + np.repeat(starts, lens)


@dataclass
class ClosurePlan:
    """Concatenated per-block arrays consumed by ``mpk_csr`` (see the template's comment)."""

    k: int
    nblocks: int
    meta: np.ndarray       # (nblocks, k+2) int64: m_0..m_k, contiguous flag
    gofs: np.ndarray       # (nblocks+1,) offsets into glob
    glob: np.ndarray       # local -> global rows, concatenated
    rofs: np.ndarray       # (nblocks+1,) offsets into rp
    rp: np.ndarray         # local row pointers (absolute into ci/va), m_1+1 per block
    ci: np.ndarray         # int32 local column indices
    va: np.ndarray         # values
    sym: bool
    redundancy: float      # (sum of computed rows over levels) / (k n) - 1
    local_bytes: int       # bytes of the local matrices (read once per call)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"meta": self.meta, "gofs": self.gofs, "glob": self.glob, "rofs": self.rofs,
                "rp": self.rp, "ci": self.ci, "va": self.va}


class ClosureTooLarge(ValueError):
    """The ghost closures would hold too many copies of A (PA1 cannot pay off)."""


def build_closures(csr: Any, order: np.ndarray, bounds: np.ndarray, k: int, *,
                   sym: bool = False, max_copies: float = 4.0,
                   values: np.ndarray | None = None) -> ClosurePlan:
    """Ghost closures and local CSR matrices for parts ``order[bounds[b]:bounds[b+1]]``.

    ``sym``: store each local matrix as its upper triangle (incl. diagonal) in local numbering;
    only valid for a symmetric ``csr``.  ``values``: what to store for each entry of ``csr``
    instead of ``csr.data`` (BCSR passes the pattern of its blocks as ``csr`` and the
    ``(nblocks, r, r)`` block values here).
    """
    n = csr.shape[0]
    data = csr.data if values is None else values
    nb = len(bounds) - 1
    max_entries = int(max_copies * max(csr.nnz, 1) + 100_000)
    if native.planner() is not None:
        built = native.closures(csr, order, bounds, k, sym, max_entries)
        if built is None:
            raise ClosureTooLarge(f"ghost closures exceed {max_copies}x the nonzeros of A")
        va = np.ascontiguousarray(data[built.pop("pos")])
        computed = built.pop("computed")
        return ClosurePlan(
            k=k, nblocks=nb, **built, va=va, sym=sym,
            redundancy=(computed / (k * n) - 1.0) if k and n else 0.0,
            local_bytes=int(va.nbytes + built["ci"].nbytes + 8 * built["rofs"][-1]))
    indptr = csr.indptr.astype(np.int64)
    indices = csr.indices.astype(np.int64)
    mark = np.zeros(n, dtype=bool)
    loc = np.full(n, -1, dtype=np.int64)
    metas, globs, rps, cis, vas = [], [], [], [], []
    nnz_pos = 0
    computed = 0
    for b in range(nb):
        own = np.sort(order[bounds[b]:bounds[b + 1]].astype(np.int64))
        layers = [own]
        mark[own] = True
        frontier = own
        for _ in range(k):
            nbrs = indices[gather_rows(indptr, frontier)]
            nbrs = np.unique(nbrs[~mark[nbrs]])
            mark[nbrs] = True
            layers.append(nbrs)
            frontier = nbrs
        glob = np.concatenate(layers)
        mark[glob] = False
        sizes = np.cumsum([len(x) for x in layers])        # |R_k|, |R_k-1|, ..., |R_0|
        m = sizes[::-1].copy()                             # m_0 .. m_k
        contiguous = int(len(own) > 0 and own[-1] - own[0] + 1 == len(own))
        metas.append(np.concatenate([m, [contiguous]]))
        computed += int(m[1:].sum())
        loc[glob] = np.arange(len(glob), dtype=np.int64)
        m1 = int(m[1]) if k >= 1 else 0
        pos = gather_rows(indptr, glob[:m1])
        lens = indptr[glob[:m1] + 1] - indptr[glob[:m1]]
        cols = loc[indices[pos]]
        vals = data[pos]
        if sym:
            rows_local = np.repeat(np.arange(m1, dtype=np.int64), lens)
            keep = cols >= rows_local
            cols, vals = cols[keep], vals[keep]
            lens = np.bincount(rows_local[keep], minlength=m1).astype(np.int64)
        if np.any(cols < 0):
            raise AssertionError("closure is missing a neighbour (internal error)")
        rp = np.empty(m1 + 1, dtype=np.int64)
        rp[0] = 0
        np.cumsum(lens, out=rp[1:])
        rp += nnz_pos
        nnz_pos += int(lens.sum())
        if nnz_pos > max_entries:
            raise ClosureTooLarge(f"ghost closures exceed {max_copies}x the nonzeros of A "
                                  f"after {b + 1} of {nb} blocks")
        loc[glob] = -1
        globs.append(glob)
        rps.append(rp)
        cis.append(cols.astype(np.int32))
        vas.append(vals)
    gofs = np.zeros(nb + 1, dtype=np.int64)
    gofs[1:] = np.cumsum([len(g) for g in globs])
    rofs = np.zeros(nb + 1, dtype=np.int64)
    rofs[1:] = np.cumsum([len(r) for r in rps])
    va = np.concatenate(vas) if vas else np.zeros(0, dtype=data.dtype)
    ci = np.concatenate(cis) if cis else np.zeros(0, dtype=np.int32)
    plan = ClosurePlan(
        k=k, nblocks=nb, meta=np.ascontiguousarray(np.stack(metas).astype(np.int64)),
        gofs=gofs, glob=np.concatenate(globs), rofs=rofs, rp=np.concatenate(rps), ci=ci,
        va=np.ascontiguousarray(va), sym=sym,
        redundancy=(computed / (k * n) - 1.0) if k and n else 0.0,
        local_bytes=int(va.nbytes + ci.nbytes + 8 * rofs[-1]))
    return plan
