"""Structure of a sparse matrix that the specializer tunes on.

One pass over the CSR arrays answers: the pattern hash (plan cache key), whether A is
symmetric, its diagonals (DIA storage pays off when few diagonals hold almost all entries, as in
stencil matrices), its bandwidth, and whether a reverse Cuthill-McKee ordering shrinks it (that
is the graph partitioner's first step for general sparsity).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Structure", "analyse", "pattern_hash", "dia_arrays", "bandwidth"]

#: DIA is chosen when at most this many diagonals ...
DIA_MAX_DIAGONALS = 27
#: ... hold the entries with at least this fill (stored nonzeros / DIA slots).
DIA_MIN_FILL = 0.6
#: Register-block sizes tried for BCSR, and the least fill (nonzeros / stored block entries)
#: at which a block size is worth proposing (explicit zeros cost bandwidth and flops).
BCSR_SIZES = (2, 3, 4)
BCSR_MIN_FILL = 0.65


def _update(h: Any, a: np.ndarray) -> None:
    """Feed an array's dtype and bytes to ``h`` without copying it (hashing runs every solve)."""
    a = np.ascontiguousarray(a)
    h.update(a.dtype.str.encode())
    h.update(memoryview(a).cast("B"))


def pattern_hash(csr: Any) -> str:
    """Hash of the sparsity pattern (shape, indptr, indices): the plan cache key."""
    h = hashlib.blake2b(digest_size=16)
    _update(h, np.asarray(csr.shape, dtype=np.int64))
    _update(h, csr.indptr)
    _update(h, csr.indices)
    return h.hexdigest()


def values_hash(csr: Any) -> str:
    """Hash of the stored values (plans hold copies of them)."""
    h = hashlib.blake2b(digest_size=16)
    _update(h, csr.data)
    return h.hexdigest()


def _entry_rows(csr: Any) -> np.ndarray:
    """The row index of every stored entry (int64, in storage order)."""
    return np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))


def bandwidth(csr: Any) -> int:
    """max |i - j| over the stored entries."""
    if csr.nnz == 0:
        return 0
    return int(np.abs(_offsets(csr)).max())


def _offsets(csr: Any) -> np.ndarray:
    rows = _entry_rows(csr)
    return csr.indices.astype(np.int64) - rows


@dataclass
class Structure:
    """What :func:`analyse` found; the domain passes read it."""

    n: int
    nnz: int
    pattern: str
    symmetric: bool
    bandwidth: int
    offsets: tuple[int, ...] | None          # the diagonals when DIA pays off, else None
    dia_fill: float
    rcm_bandwidth: int | None = None
    dia_compressible: int = 0                # diagonals holding a single nonzero value
    bcsr: tuple[int, ...] = ()               # dense r x r block sizes, best first
    notes: list[str] = field(default_factory=list)


def analyse(csr: Any, *, want_rcm: bool = True) -> Structure:
    """Analyse a canonical CSR matrix (see :func:`asp_mpk.validate.as_csr`)."""
    n, nnz = csr.shape[0], csr.nnz
    pat = pattern_hash(csr)
    diff = csr - csr.T
    symmetric = bool(diff.nnz == 0 or not np.any(diff.data))
    offs = _offsets(csr)
    bw = int(np.abs(offs).max()) if nnz else 0
    uniq = np.unique(offs)
    slots = sum(n - abs(int(o)) for o in uniq)
    fill = nnz / slots if slots else 0.0
    dia = tuple(int(o) for o in uniq) if (0 < len(uniq) <= DIA_MAX_DIAGONALS
                                           and fill >= DIA_MIN_FILL) else None
    st = Structure(n, nnz, pat, symmetric, bw, dia, fill)
    if dia is not None:
        order = np.argsort(offs, kind="stable")
        so, sv = offs[order], csr.data[order]
        cuts = np.flatnonzero(np.diff(so)) + 1
        for vals in np.split(sv, cuts):
            nzv = vals[vals != 0]
            if nzv.size == 0 or np.all(nzv == nzv[0]):
                st.dia_compressible += 1
    st.bcsr = dense_block_sizes(csr)
    if dia is None and want_rcm and n > 1 and nnz:
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        perm = reverse_cuthill_mckee(csr.tocsr(), symmetric_mode=symmetric)
        p = csr[perm][:, perm]
        st.rcm_bandwidth = bandwidth(p)
        st.notes.append(f"RCM bandwidth {st.rcm_bandwidth} vs natural {bw}")
    return st


def dense_block_sizes(csr: Any) -> tuple[int, ...]:
    """Block sizes r for which A is (mostly) made of dense r x r blocks, best first.

    Finite-element matrices with several unknowns per node (elasticity: 2 or 3) are.  Storing
    them as BCSR reads one column index per block instead of per entry and lets the kernel keep
    a block row's r sums in registers.  Ranked by bytes read per nonzero
    (``(8 + 4 / r²) / fill`` for float64), each needing fill >= :data:`BCSR_MIN_FILL`.
    """
    n, nnz = csr.shape[0], csr.nnz
    ranked = []
    rows = _entry_rows(csr)
    cols = csr.indices.astype(np.int64)
    for r in BCSR_SIZES:
        if n % r or nnz == 0 or n < 4 * r:
            continue
        blocks = np.unique(rows // r * (n // r) + cols // r).size
        fill = nnz / (blocks * r * r)
        if fill >= BCSR_MIN_FILL:
            ranked.append(((csr.dtype.itemsize + 4 / (r * r)) / fill, r))
    return tuple(r for _, r in sorted(ranked))


def dia_arrays(csr: Any, offsets: tuple[int, ...]) -> np.ndarray:
    """(ndiag, n) array: ``D[d, i] = A[i, i + offsets[d]]`` (0 where outside the matrix)."""
    n = csr.shape[0]
    offs = _offsets(csr)
    rows = _entry_rows(csr)
    index = {o: d for d, o in enumerate(offsets)}
    lut = np.searchsorted(np.asarray(offsets, dtype=np.int64), offs)
    if not np.array_equal(np.asarray(offsets, dtype=np.int64)[lut], offs):
        raise ValueError("matrix has entries outside the given diagonals")
    del index
    D = np.zeros((len(offsets), n), dtype=csr.dtype)
    D[lut, rows] = csr.data
    return D


def compress_diagonals(D: np.ndarray, offsets: tuple[int, ...]
                       ) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """Split DIA storage into constant / masked-constant / full diagonals.

    Returns ``(kinds, full, masks)``: ``kinds[d]`` is ``("const", c)``, ``("mask", j, c)``
    (value ``c`` where ``masks[j]`` is 1, else 0) or ``("full", j)`` (values ``full[j]``), with
    ``c`` a C99 hex float literal (exact).  Only entries inside the matrix count: the kernels
    never read a diagonal outside its valid rows.
    """
    n = D.shape[1]
    kinds: list[tuple] = []
    full: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for d, o in enumerate(offsets):
        lo, hi = max(0, -o), min(n, n - o)
        seg = D[d, lo:hi]
        nz = seg[seg != 0]
        vals = np.unique(nz)
        if len(vals) == 1 and len(nz) == len(seg):
            kinds.append(("const", float(vals[0]).hex()))
        elif len(vals) == 1:
            m = np.zeros(n, dtype=np.uint8)
            m[lo:hi] = seg != 0
            kinds.append(("mask", len(masks), float(vals[0]).hex()))
            masks.append(m)
        elif len(vals) == 0:
            kinds.append(("const", float(0.0).hex()))
        else:
            kinds.append(("full", len(full)))
            full.append(D[d])
    F = np.ascontiguousarray(np.stack(full)) if full else np.zeros((1, 1), dtype=D.dtype)
    M = np.ascontiguousarray(np.stack(masks)) if masks else np.zeros((1, 1), dtype=np.uint8)
    return kinds, F, M
