"""Structure of a sparse matrix that the specializer tunes on.

One pass over the CSR arrays answers: the pattern hash (plan cache key), whether A is
symmetric, its diagonals (DIA storage pays off when few diagonals hold almost all entries, as in
stencil matrices), its bandwidth, and whether a reverse Cuthill-McKee ordering shrinks it (that
is the graph partitioner's first step for general sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asp_mpk import native

__all__ = ["Structure", "analyse", "pattern_hash", "values_hash", "dia_arrays",
           "dense_block_sizes", "compress_diagonals"]

#: DIA is chosen when at most this many diagonals ...
DIA_MAX_DIAGONALS = 27
#: ... hold the entries with at least this fill (stored nonzeros / DIA slots).
DIA_MIN_FILL = 0.6
#: Register-block sizes tried for BCSR, and the least fill (nonzeros / stored block entries)
#: at which a block size is worth proposing (explicit zeros cost bandwidth and flops).
BCSR_SIZES = (2, 3, 4)
BCSR_MIN_FILL = 0.65


def pattern_hash(csr: Any) -> str:
    """Fingerprint of the sparsity pattern (shape, indptr, indices): the plan cache key."""
    shape = np.asarray(csr.shape, dtype=np.int64)
    return f"{native.checksum(shape, csr.indptr, csr.indices):016x}"


def values_hash(csr: Any) -> str:
    """Fingerprint of the stored values (plans hold copies of them)."""
    return f"{native.checksum(csr.data):016x}-{csr.data.dtype.str}"


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
    rcm_order: np.ndarray | None = field(default=None, repr=False)  # the RCM permutation


def analyse(csr: Any, *, want_rcm: bool = True) -> Structure:
    """Analyse a canonical CSR matrix (see :func:`asp_mpk.validate.as_csr`) in one native pass
    (:func:`asp_mpk.native.scan`); when A is not banded, also its reverse Cuthill-McKee ordering
    (kept in ``rcm_order`` for the partitioner) and the bandwidth under it."""
    n, nnz = csr.shape[0], csr.nnz
    pat = pattern_hash(csr)
    sc = native.scan(csr, DIA_MAX_DIAGONALS, BCSR_SIZES)
    bw = int(sc["bandwidth"])
    uniq = sc["offsets"]
    dia = None
    fill = 0.0
    if uniq is not None:
        slots = sum(n - abs(int(o)) for o in uniq)
        fill = nnz / slots if slots else 0.0
        if 0 < len(uniq) and fill >= DIA_MIN_FILL:
            dia = tuple(int(o) for o in uniq)
    st = Structure(n, nnz, pat, bool(sc["symmetric"]), bw, dia, fill)
    if dia is not None:
        st.dia_compressible = int(sc["constant"])
    st.bcsr = _rank_blocks(n, nnz, csr.dtype.itemsize, sc["blocks"])
    if dia is None and want_rcm and n > 1 and nnz:
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        perm = np.asarray(reverse_cuthill_mckee(csr, symmetric_mode=st.symmetric),
                          dtype=np.int64)
        st.rcm_order = perm
        st.rcm_bandwidth = native.permuted_bandwidth(csr, perm)
        st.notes.append(f"RCM bandwidth {st.rcm_bandwidth} vs natural {bw}")
    return st


def _rank_blocks(n: int, nnz: int, itemsize: int, blocks: dict[int, int]) -> tuple[int, ...]:
    """Block sizes r for which A is (mostly) made of dense r x r blocks, best first.

    Finite-element matrices with several unknowns per node (elasticity: 2 or 3) are.  Storing
    them as BCSR reads one column index per block instead of per entry and lets the kernel keep
    a block row's r sums in registers.  Ranked by bytes read per nonzero
    (``(8 + 4 / r²) / fill`` for float64), each needing fill >= :data:`BCSR_MIN_FILL`.
    """
    ranked = []
    for r, nblocks in blocks.items():
        fill = nnz / (nblocks * r * r) if nblocks else 0.0
        if fill >= BCSR_MIN_FILL:
            ranked.append(((itemsize + 4 / (r * r)) / fill, r))
    return tuple(r for _, r in sorted(ranked))


def dense_block_sizes(csr: Any) -> tuple[int, ...]:
    """Block sizes r for which A is (mostly) made of dense r x r blocks, best first."""
    blocks = native.scan(csr, 0, BCSR_SIZES)["blocks"]
    return _rank_blocks(csr.shape[0], csr.nnz, csr.dtype.itemsize, blocks)


def dia_arrays(csr: Any, offsets: tuple[int, ...]) -> np.ndarray:
    """(ndiag, n) array: ``D[d, i] = A[i, i + offsets[d]]`` (0 where outside the matrix)."""
    return native.dia_arrays(csr, offsets)


def compress_diagonals(D: np.ndarray, offsets: tuple[int, ...], constants: bool = True
                       ) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """Split DIA storage into constant / masked-constant / mirrored / full diagonals
    (``constants=False``: mirrored / full only, so that the kernel's code does not depend on
    the values).

    Returns ``(kinds, full, masks)``: ``kinds[d]`` is ``("const", c)``, ``("mask", j, c)``
    (value ``c`` where ``masks[j]`` is 1, else 0), ``("full", j)`` (values ``full[j]``) or
    ``("mirror", j, o)``: a diagonal below the main one (offset ``o < 0``) equal to the stored
    diagonal ``-o`` read ``o`` rows earlier, ``A[i, i + o] == full[j][i + o]`` (a symmetric
    matrix's lower half: the kernels read each stored upper diagonal twice instead of both
    twins once, and the diagonal bytes are what bound a variable-coefficient kernel). ``c`` is
    a C99 hex float literal (exact). Only entries inside the matrix count: the kernels never
    read a diagonal outside its valid rows.
    """
    n = D.shape[1]
    kinds: list[tuple] = []
    masks: list[np.ndarray] = []
    for d, o in enumerate(offsets):
        if not constants:
            kinds.append(("full", d))
            continue
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
            kinds.append(("full", d))
    partner: dict[int, int] = {}   # lower full diagonal -> its full upper twin
    for d, kind in enumerate(kinds):
        twin = _upper_twin(D, offsets, d) if kind[0] == "full" and offsets[d] < 0 else None
        if twin is not None and kinds[twin][0] == "full":
            partner[d] = twin
    stored = [d for d, kind in enumerate(kinds) if kind[0] == "full" and d not in partner]
    row = {d: j for j, d in enumerate(stored)}
    kinds = [kind if kind[0] != "full" else ("full", row[d]) if d in row else
             ("mirror", row[partner[d]], offsets[d]) for d, kind in enumerate(kinds)]
    F = np.ascontiguousarray(np.stack([D[d] for d in stored])) if stored else \
        np.zeros((1, 1), dtype=D.dtype)
    M = np.ascontiguousarray(np.stack(masks)) if masks else np.zeros((1, 1), dtype=np.uint8)
    return kinds, F, M


def _upper_twin(D: np.ndarray, offsets: tuple[int, ...], d: int) -> int | None:
    """The diagonal ``-offsets[d]`` if diagonal ``d`` (below the main one) holds exactly its
    values shifted by ``offsets[d]`` rows (``A[i, i + o] == A[i + o, i]``), else None."""
    o, n = offsets[d], D.shape[1]
    twin = offsets.index(-o) if -o in offsets else None
    if twin is None or not np.array_equal(D[d, -o:], D[twin, :n + o]):
        return None
    return twin
