"""Plans: the matrix data each kernel variant runs on, built once and cached by pattern hash.

A plan is everything the analysis and partitioning produce for one matrix and one set of
tuning parameters: DIA diagonals and block boundaries, or the PA1 ghost closures with their
local CSR matrices, or the plain CSR arrays of the naive baseline.  Building closures for a
million-row matrix takes a noticeable fraction of a second, so plans live in an in-process
cache keyed by (pattern hash, values hash, dtype, parameters); the compiled code is cached on
disk by the core.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from asp_mpk.analysis import compress_diagonals, dia_arrays
from asp_mpk.partition import ClosurePlan, block_bounds, build_closures

__all__ = ["DiaPlan", "CsrPlan", "NaivePlan", "Plan", "block_graph", "dia_storage", "get_plan"]


@dataclass
class DiaPlan:
    offsets: tuple[int, ...]
    dvals: np.ndarray          # (number of "full" diagonals, n) values
    bounds: np.ndarray         # nblocks+1 row boundaries
    kinds: list[tuple]         # per diagonal, see analysis.compress_diagonals
    masks: np.ndarray          # (number of "mask" diagonals, n) uint8

    @property
    def nbytes(self) -> int:
        return int(self.dvals.nbytes + self.masks.nbytes)


@dataclass
class CsrPlan:
    order: np.ndarray
    closures: dict[int, ClosurePlan] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(sum(c.local_bytes for c in self.closures.values()))


@dataclass
class NaivePlan:
    indptr: np.ndarray         # int64
    indices: np.ndarray        # int32
    data: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes + self.data.nbytes)


#: what :func:`get_plan` returns
Plan = Union[DiaPlan, CsrPlan, NaivePlan]

_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple, Plan] = OrderedDict()
#: counts :func:`forget` and :func:`clear`: a plan built meanwhile (on a background thread)
#: is returned but not kept, as it may be of a matrix dropped while it was built
_DROPS = [0]
#: the CSR copies :func:`forget` dropped, by id while they live: no plan of one is kept
#: (their specialisations may go on building plans on a background thread)
_DROPPED: dict[int, weakref.ref] = {}
#: plans are kept for this many matrices (pattern, values, dtype) at most, the least recently
#: used dropped first: a kernel keeps its own plan alive, so the cache only saves rebuilding
#: the plans of a matrix analysed again.  Bounded by bytes alone, a process that went through
#: new matrices (a time-stepping loop) kept every one's plans, then up to 4 GiB
_MAX_MATRICES = 16


def _was_dropped(csr: Any) -> bool:
    ref = _DROPPED.get(id(csr))
    return ref is not None and ref() is csr


def kept_bytes() -> int:
    """The bytes asp-mpk keeps of each kind of copy of matrices no call holds (plans here, the
    analysed CSR copies in :mod:`asp_mpk.matrix`): a sixteenth of the machine's memory, at most
    4 GiB. A count alone kept eight copies and sixteen matrices' plans of large matrices
    deleted long before (a time-stepping loop over new 600 MB matrices: gigabytes)."""
    from asp_core.hardware import query

    return min(4 << 30, max(64 << 20, query().memory_bytes // 16))


def forget(csr: Any, matrix: tuple[str, str, str] | None) -> None:
    """Drop the plans and DIA storage of the analysed copy ``csr`` (no longer kept; ``matrix``:
    its pattern, values and dtype fingerprints, None where none was made yet, and so no plan),
    and keep none made of it later. A kernel keeps its own plan alive."""
    with _LOCK:
        _DROPS[0] += 1
        at = id(csr)
        _DROPPED[at] = weakref.ref(csr, lambda _: _DROPPED.pop(at, None))
        if matrix is not None:
            for table in (_CACHE, _DIA):
                for key in [k for k in table if k[:3] == matrix]:
                    del table[key]


def clear() -> None:
    """Drop every cached plan and DIA storage."""
    with _LOCK:
        _DROPS[0] += 1
        _CACHE.clear()
        _DIA.clear()


def _key(csr: Any, pattern: str, values: str, params: dict[str, Any]) -> tuple:
    return (pattern, values, str(csr.dtype), tuple(sorted(params.items())))


def get_plan(csr: Any, pattern: str, values: str, params: dict[str, Any], *,
             order: np.ndarray | None = None) -> Plan:
    """The plan for ``csr`` with tuning ``params`` (cached).

    params: ``format`` ("dia", "csr", "naive"); for dia ``offsets`` and ``nblocks``; for csr
    ``nblocks``, ``ks`` (tuple of level counts whose closures are needed), ``sym`` and
    ``block`` (r > 1: closures over the r x r block graph, BCSR values; ``order`` then orders
    block rows).
    """
    key = _key(csr, pattern, values, params)
    with _LOCK:
        plan = _CACHE.get(key)
        if plan is not None:
            _CACHE.move_to_end(key)
            return plan
        drops = _DROPS[0]
    fmt = params["format"]
    n = csr.shape[0]
    if fmt == "dia":
        offsets = tuple(params["offsets"])
        kinds, F, M = dia_storage(csr, pattern, values, offsets, bool(params.get("compress")),
                                  bool(params.get("constants", True)))
        plan = DiaPlan(offsets, F, block_bounds(n, params["nblocks"]), kinds, M)
    elif fmt == "csr":
        r = int(params.get("block", 1))
        graph, blocks = (csr, None) if r == 1 else block_graph(csr, r)
        if order is None:
            order = np.arange(graph.shape[0], dtype=np.int64)
        bounds = block_bounds(graph.shape[0], params["nblocks"])
        plan = CsrPlan(order)
        for k in params["ks"]:
            plan.closures[int(k)] = build_closures(graph, order, bounds, int(k),
                                                   sym=bool(params.get("sym", False)),
                                                   values=blocks)
    elif fmt == "naive":
        plan = NaivePlan(np.ascontiguousarray(csr.indptr, dtype=np.int64),
                         np.ascontiguousarray(csr.indices, dtype=np.int32),
                         np.ascontiguousarray(csr.data))
    else:
        raise ValueError(f"unknown plan format {fmt!r}")
    budget = kept_bytes()
    with _LOCK:
        if drops != _DROPS[0] or _was_dropped(csr):
            return plan
        _CACHE[key] = plan
        total = sum(p.nbytes for p in _CACHE.values())
        while total > budget and len(_CACHE) > 1:
            _, old = _CACHE.popitem(last=False)
            total -= old.nbytes
        matrices = OrderedDict.fromkeys(k[:3] for k in reversed(_CACHE))   # newest first
        for stale in list(matrices)[_MAX_MATRICES:]:
            for k in [k for k in _CACHE if k[:3] == stale]:
                del _CACHE[k]
    return plan


_DIA: OrderedDict[tuple, tuple] = OrderedDict()


def dia_storage(csr: Any, pattern: str, values: str, offsets: tuple[int, ...], compress: bool,
                constants: bool = True) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """``(kinds, full, masks)`` DIA storage of A (see :func:`compress_diagonals`; ``constants``:
    its argument), shared by every block count of the DIA variants (the last two matrices'
    are kept)."""
    key = (pattern, values, str(csr.dtype), offsets, compress, constants)
    with _LOCK:
        got = _DIA.get(key)
        drops = _DROPS[0]
    if got is not None:
        return got
    D = np.ascontiguousarray(dia_arrays(csr, offsets))
    if compress:
        got = compress_diagonals(D, offsets, constants)
    else:
        got = [("full", d) for d in range(len(offsets))], D, np.zeros((1, 1), dtype=np.uint8)
    with _LOCK:
        if drops != _DROPS[0] or _was_dropped(csr):   # see _DROPS
            return got
        _DIA[key] = got
        while len(_DIA) > 4:
            _DIA.popitem(last=False)
    return got


def block_graph(csr: Any, r: int) -> tuple[Any, np.ndarray]:
    """The BCSR view of ``csr``: the pattern of its r x r blocks as an (n/r)-row CSR matrix
    (what the partitioner and the ghost closures work on) and the ``(nblocks, r, r)`` values."""
    import scipy.sparse as sp

    bsr = csr.tobsr(blocksize=(r, r))
    bsr.sort_indices()
    nb = csr.shape[0] // r
    pattern = sp.csr_matrix((np.ones(len(bsr.indices), dtype=np.int8), bsr.indices, bsr.indptr),
                            shape=(nb, nb))
    return pattern, np.ascontiguousarray(bsr.data)
