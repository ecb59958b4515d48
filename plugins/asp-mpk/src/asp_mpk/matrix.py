"""Analysed matrices, and how the functional API recognises one it has seen.

:class:`AnalysedMatrix` is a validated canonical copy of A with everything computed once per
matrix: the analysis, orderings, spectral bounds, and the :class:`~asp_mpk.powers.MatrixPowers`
objects (with their tuned kernels) for each depth k.  :func:`analysed` returns the one for a
user's matrix.  It recognises a matrix by the format, shape and dtype of its arrays plus a
position-dependent checksum of their bytes, computed natively at memory speed
(:func:`asp_mpk.native.checksum`, > 10 GB/s): cheap next to one product with A, and a matrix
whose values or structure changed in place since the last call is analysed afresh instead of
reusing stale plans.  No copy, validation or analysis happens on a hit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from asp_mpk import native
from asp_mpk.validate import as_csr

if TYPE_CHECKING:
    from asp_mpk.powers import MatrixPowers

__all__ = ["AnalysedMatrix", "analysed", "input_key", "clear_matrices"]

#: analysed matrices kept for the functional API (least recently used dropped first)
MAX_MATRICES = 8


class AnalysedMatrix:
    """A validated canonical CSR copy of A plus its analysis, shared by every depth k."""

    def __init__(self, csr: Any) -> None:
        from asp_mpk.analysis import values_hash

        self.csr = csr
        self.dtype = csr.dtype
        self.shape = csr.shape
        self.n = csr.shape[0]
        self.values = values_hash(csr)
        self._structure: Any = None
        self._structure_lock = threading.Lock()
        self._orders: dict[str, np.ndarray] = {}
        self._gershgorin: tuple[float, float] | None = None
        self._powers: dict[int, MatrixPowers] = {}
        self._lock = threading.Lock()

    @property
    def structure(self) -> Any:
        """The analysis (:func:`asp_mpk.analysis.analyse`), made on first use: only the
        specialisation needs it, and that runs in the background, so a first call goes from
        validation straight to the products."""
        if self._structure is None:
            from asp_mpk.analysis import analyse

            with self._structure_lock:
                if self._structure is None:
                    self._structure = analyse(self.csr)
        return self._structure

    @property
    def pattern(self) -> str:
        """Hash of the sparsity pattern (part of every specialisation key)."""
        return self.structure.pattern

    def order(self, kind: str, block: int = 1) -> np.ndarray:
        """Row ordering for the partitioner: ``natural`` or ``rcm``; of the block rows of the
        ``block`` x ``block`` BCSR view when ``block`` > 1."""
        with self._lock:
            key = f"{kind}/{block}"
            if key not in self._orders:
                nrows = self.n // block
                if kind == "rcm" and block == 1 and self.structure.rcm_order is not None:
                    self._orders[key] = self.structure.rcm_order
                elif kind == "rcm":
                    from scipy.sparse.csgraph import reverse_cuthill_mckee

                    from asp_mpk.plan import block_graph

                    graph = self.csr if block == 1 else block_graph(self.csr, block)[0]
                    perm = reverse_cuthill_mckee(graph, symmetric_mode=self.structure.symmetric)
                    self._orders[key] = np.asarray(perm, dtype=np.int64)
                else:
                    self._orders[key] = np.arange(nrows, dtype=np.int64)
            return self._orders[key]

    def gershgorin(self) -> tuple[float, float]:
        """Gershgorin bounds (lower, upper) of A's spectrum, computed once."""
        with self._lock:
            if self._gershgorin is None:
                d = self.csr.diagonal()
                rad = np.asarray(abs(self.csr).sum(axis=1)).ravel() - np.abs(d)
                self._gershgorin = (float(np.min(d - rad)), float(np.max(d + rad)))
            return self._gershgorin

    def powers(self, k: int) -> MatrixPowers:
        """The :class:`MatrixPowers` object of depth ``k`` (created once; it keeps its tuned
        kernels, so later calls go straight to the winner)."""
        from asp_mpk.powers import MatrixPowers

        with self._lock:
            mp = self._powers.get(k)
        if mp is None:
            mp = MatrixPowers(self, k, tune=False)
            with self._lock:
                mp = self._powers.setdefault(k, mp)
        return mp


_LOCK = threading.Lock()
_MATRICES: OrderedDict[tuple, AnalysedMatrix] = OrderedDict()


def _arrays(A: Any) -> tuple[np.ndarray, ...] | None:
    """The arrays that hold a sparse matrix of a known format (None: lil, dok, ...)."""
    fmt = getattr(A, "format", None)
    if fmt in ("csr", "csc", "bsr"):
        return A.data, A.indices, A.indptr
    if fmt == "coo":
        return (A.data, A.row, A.col)
    if fmt == "dia":
        return A.data, A.offsets
    return None


def input_key(A: Any, dtype: Any = None) -> tuple | None:
    """Identity of a matrix's current contents converted to ``dtype`` (default: its own):
    format, shape, dtypes, array shapes and the checksum of the arrays' bytes (None for formats
    without flat arrays).  ``dtype=None`` and A's own dtype give the same key, so
    :func:`~asp_mpk.powers.matrix_powers` and :func:`~asp_mpk.cacg.cg` (which asks for
    float64) share one analysed matrix and its MatrixPowers objects."""
    arrays = _arrays(A)
    if arrays is None:
        return None
    target = np.dtype(A.dtype if dtype is None else dtype)
    return (A.format, A.shape, str(A.dtype), str(target),
            tuple((a.shape, a.dtype.str) for a in arrays), native.checksum(*arrays))


def analysed(A: Any, dtype: Any = None) -> AnalysedMatrix:
    """The :class:`AnalysedMatrix` of ``A`` (converted to ``dtype`` when given): reused while
    A's contents are unchanged, else validated, copied and analysed now."""
    if isinstance(A, AnalysedMatrix):
        if dtype is None or A.dtype == dtype:
            return A
        A = A.csr
    import scipy.sparse as sp

    if not sp.issparse(A):
        as_csr(A)  # raises the right error
    key = input_key(A, dtype)
    csr = None
    if key is None:   # lil, dok...: convert, then recognise the converted arrays
        csr = as_csr(A, dtype=dtype)
        key = input_key(csr, dtype)
    assert key is not None, "a CSR matrix always has a key"
    with _LOCK:
        m = _MATRICES.get(key)
        if m is not None:
            _MATRICES.move_to_end(key)
            return m
    m = AnalysedMatrix(csr if csr is not None else as_csr(A, dtype=dtype))
    with _LOCK:
        _MATRICES[key] = m
        while len(_MATRICES) > MAX_MATRICES:
            _MATRICES.popitem(last=False)
    return m


def clear_matrices() -> None:
    """Forget every analysed matrix (the plans and compiled code caches stay)."""
    with _LOCK:
        _MATRICES.clear()
