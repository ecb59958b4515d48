"""The plan builder's entry points: the pybind11 extension ``asp_mpk._planner`` when it was built
at install time, else numpy code computing the same results (one warning, at first use).

Every function here runs once per matrix (or once per call, for :func:`checksum`), so speed
matters: the extension does each job in one pass over the CSR arrays without the GIL; the numpy
fallbacks make several passes and temporary arrays.
"""

from __future__ import annotations

import importlib
import re
import threading
import zlib
from typing import Any

import numpy as np
from asp_core.errors import warn
from asp_core.hardware import available_cpus, omp_num_threads
from asp_core.interrupt import on_forking_thread

__all__ = ["planner", "address_function", "copies", "checksum", "check_csr", "value_flags",
           "all_finite", "scan", "dia_arrays", "permuted_bandwidth", "closures", "csr_powers",
           "cg_passes", "omp_threads", "CSRProduct", "csr_product", "csr_powers_call"]

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def planner() -> Any:
    """The extension module, or None (then warn once: the Python plan builder is slow)."""
    if "mod" not in _STATE:
        with _LOCK:
            if "mod" not in _STATE:
                try:   # by name: a compiled module without type stubs
                    mod = importlib.import_module("asp_mpk._planner")
                except ImportError as exc:
                    mod = None
                    warn(
                        "asp_mpk: the native plan builder (asp_mpk._planner) is not built "
                        f"({exc}); matrix analysis runs in numpy and is several times slower. "
                        "Reinstall asp-mpk with a C++ compiler present to build it.",
                        RuntimeWarning)
                _STATE["mod"] = mod
    return _STATE["mod"]


def _c(a: np.ndarray) -> np.ndarray:
    """``a`` C-contiguous and in native byte order: the extension reads the raw bytes (a
    big-endian ``indptr`` assigned to a matrix after construction, which SciPy's own products
    accept, read as native integers named values the matrix does not have)."""
    a = np.ascontiguousarray(a)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def copies(*arrays: np.ndarray) -> list[np.ndarray]:
    """C-contiguous copies of the arrays, copied over the kernels' threads where the extension
    is built (a first call's snapshot of A: page faults and all, on every core)."""
    arrs = [_c(a) for a in arrays]
    mod = planner()
    if mod is not None:
        return list(mod.copies(arrs, _threads()))
    return [a.copy() for a in arrs]


def checksum(*arrays: np.ndarray) -> int:
    """Position-dependent 64-bit checksum of the arrays' bytes (≈ memory speed natively): how
    the functional API notices that a matrix changed in place since it was analysed."""
    arrs = [_c(a) for a in arrays]
    mod = planner()
    if mod is not None:
        return int(mod.checksum(arrs, _threads()))
    h = 0
    for a in arrs:
        h = (h * 0x100000001B3 + zlib.crc32(a.data.cast("B")) + a.nbytes) % (1 << 64)
    return h


def address_function() -> Any:
    """``addresses(*arrays)``: the data addresses of numpy arrays (None for None), for ctypes
    calls; the extension's where it is built (one call: ``a.ctypes.data`` builds a Python helper
    object per array, microseconds each right after a kernel), else numpy's."""
    mod = planner()
    return mod.addresses if mod is not None else _addresses


def _addresses(*arrays: np.ndarray | None) -> tuple[int | None, ...]:
    return tuple(None if a is None else a.ctypes.data for a in arrays)


def _threads() -> int:
    """Threads for the checksum: the kernels' rule (``OMP_NUM_THREADS``, else the CPUs this
    process may use), the latter looked up once (an affinity call, 1.6 us, at every checksum;
    the cgroup quota behind it is read once by the core); one on the thread that forked this
    process (see :func:`omp_threads`)."""
    env = omp_num_threads()
    if env is not None:
        return omp_threads(env)
    if "cpus" not in _STATE:
        _STATE["cpus"] = available_cpus()
    return omp_threads(int(_STATE["cpus"]))


def omp_threads(threads: int) -> int:
    """``threads``, or 1 on the thread that forked this process
    (:func:`asp_core.interrupt.on_forking_thread`): GNU OpenMP keeps that thread's pool of
    workers in the child, which does not have them, and its next parallel region of more than
    one thread waits for them forever (the extension's passes and the kernels run on the
    caller's thread; a ``multiprocessing`` worker forked after a call hung at its first)."""
    return 1 if on_forking_thread() else threads


def check_csr(indptr: np.ndarray, indices: np.ndarray, ncols: int, name: str = "A",
              layout: str = "CSR") -> bool:
    """Validate a CSR structure once per matrix, before C code indexes with it (SciPy checks
    none of this after construction, and C would write out of bounds): ``ValueError``
    "``name`` has an invalid CSR structure: ..." naming the first problem (indptr empty, not
    starting at 0 or decreasing, indptr[-1] past the end of indices, a column index outside the
    matrix). Returns whether the rows are canonical (sorted, no duplicates).

    ``layout`` "CSC" or "BSR": the same arrays of a CSC or BSR matrix, and the message says so
    (a row index in a column, a block column index in a block row).  Index arrays of another
    integer dtype (uint32, int16: SciPy's products take them) are checked as int64."""
    try:
        return _check_csr(_as_index(indptr, "indptr"), _as_index(indices, "indices"), ncols)
    except ValueError as exc:
        raise ValueError(f"{name} has an {_worded(str(exc), layout)}") from None


#: what a structure error calls indptr's lines and the entries of indices, per layout (the
#: checks word it for CSR: "column index 7 in row 1", "indptr decreases at row 4")
_TERMS = {"CSR": ("row", "column index"), "CSC": ("column", "row index"),
          "BSR": ("block row", "block column index")}


def _worded(message: str, layout: str) -> str:
    """A CSR structure error reworded for ``layout`` (one pass: a replaced word is not
    replaced again)."""
    line, index = _TERMS[layout]
    words = {"CSR": layout, "row": line, "column index": index}
    return re.sub(r"\b(CSR|column index|row)\b", lambda m: words[m.group(1)], message)


def _as_index(a: np.ndarray, key: str) -> np.ndarray:
    """An integer index array as the checks read it: int32 or int64 as it is (byte order is
    :func:`_c`'s job), another integer dtype converted to int64 (a uint64 value past int64's
    range is no index of any matrix: ``ValueError``)."""
    if a.dtype.kind == "i" and a.dtype.itemsize in (4, 8):
        return a
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"invalid CSR structure: {key} holds {int(a.max())}, past any index")
    return a.astype(np.int64)


def _check_csr(indptr: np.ndarray, indices: np.ndarray, ncols: int) -> bool:
    mod = planner()
    if mod is not None:
        return bool(mod.check_csr(_c(indptr), _c(indices), int(ncols), _threads())["canonical"])
    ip = np.asarray(indptr, dtype=np.int64)
    if ip.size < 1:
        raise ValueError("invalid CSR structure: indptr is empty")
    if ip[0] != 0:
        raise ValueError(f"invalid CSR structure: indptr[0] is {ip[0]}, expected 0")
    if ip[-1] > len(indices) or ip[-1] < 0:
        raise ValueError(f"invalid CSR structure: indptr[-1] is {ip[-1]} but indices has "
                         f"{len(indices)} entries")
    steps = np.diff(ip)
    if np.any(steps < 0):
        raise ValueError("invalid CSR structure: indptr decreases at row "
                         f"{int(np.argmax(steps < 0))}")
    idx = np.asarray(indices[:ip[-1]], dtype=np.int64)
    bad = np.flatnonzero((idx < 0) | (idx >= ncols))
    if bad.size:
        p = int(bad[0])
        row = int(np.searchsorted(ip, p, side="right") - 1)
        raise ValueError(f"invalid CSR structure: column index {idx[p]} in row {row} (entry {p}) "
                         f"is outside 0..{ncols - 1}")
    rows = np.repeat(np.arange(len(ip) - 1), steps)
    same_row = rows[1:] == rows[:-1]
    return bool(not np.any(same_row & (idx[1:] <= idx[:-1])))


def value_flags(data: np.ndarray) -> tuple[bool, bool]:
    """(every value finite, some value is an explicit zero)."""
    mod = planner()
    if mod is not None:
        f = mod.value_flags(_c(data), _threads())
        return bool(f["finite"]), bool(f["zeros"])
    return bool(np.all(np.isfinite(data))), bool(np.any(data == 0))


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of a float array is finite: one pass and no temporary for large
    contiguous arrays (``numpy.isfinite`` builds a boolean array as large as a column of the
    result: most of a vector check's cost on every call)."""
    mod = planner()
    if mod is not None and a.size >= 1 << 15 and a.flags.c_contiguous:
        return bool(mod.value_flags(a, _threads())["finite"])
    return bool(np.all(np.isfinite(a)))


def _pattern(csr: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` C-contiguous and of one integer dtype (what the extension takes)."""
    indptr, indices = _c(csr.indptr), _c(csr.indices)
    return (indptr if indptr.dtype == indices.dtype else indptr.astype(indices.dtype)), indices


def _entry_rows(indptr: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))


def scan(csr: Any, max_diagonals: int, block_sizes: tuple[int, ...]) -> dict[str, Any]:
    """One pass over a canonical CSR matrix: ``bandwidth``, ``symmetric`` (values included),
    ``offsets`` (sorted distinct j - i, or None beyond ``max_diagonals``), ``counts`` (entries
    per offset), ``constant`` (offsets whose nonzeros all share one value), ``blocks``
    ({r: distinct r x r blocks} for each r in ``block_sizes`` that divides n)."""
    mod = planner()
    n = csr.shape[0]
    indptr, indices = _pattern(csr)
    if mod is not None:
        found: dict[str, Any] = dict(mod.analyse(indptr, indices, _c(csr.data),
                                                 int(max_diagonals), list(block_sizes)))
        found["blocks"] = {int(r): int(c) for r, c in found["blocks"].items()}
        return found
    nnz = csr.nnz
    rows = _entry_rows(indptr, n)
    offs = indices.astype(np.int64) - rows
    diff = csr - csr.T
    out: dict[str, Any] = {"bandwidth": int(np.abs(offs).max()) if nnz else 0,
                           "symmetric": bool(diff.nnz == 0 or not np.any(diff.data))}
    uniq, counts = np.unique(offs, return_counts=True)
    if len(uniq) > max_diagonals:
        out["offsets"] = None
    else:
        out["offsets"] = [int(o) for o in uniq]
        out["counts"] = [int(c) for c in counts]
        order = np.argsort(offs, kind="stable")
        cuts = np.flatnonzero(np.diff(offs[order])) + 1
        const = 0
        for vals in np.split(csr.data[order], cuts):
            nzv = vals[vals != 0]
            const += int(nzv.size == 0 or bool(np.all(nzv == nzv[0])))
        out["constant"] = const
    cols = indices.astype(np.int64)
    out["blocks"] = {r: int(np.unique(rows // r * (n // r) + cols // r).size)
                     for r in block_sizes if not (n % r or nnz == 0 or n < 4 * r)}
    return out


def dia_arrays(csr: Any, offsets: tuple[int, ...]) -> np.ndarray:
    """(ndiag, n) array: ``D[d, i] = A[i, i + offsets[d]]`` (0 where outside the matrix)."""
    mod = planner()
    if mod is not None:
        return mod.dia_arrays(_c(csr.indptr), _c(csr.indices), _c(csr.data),
                              [int(o) for o in offsets])
    n = csr.shape[0]
    rows = _entry_rows(csr.indptr, n)
    offs = csr.indices.astype(np.int64) - rows
    ofa = np.asarray(offsets, dtype=np.int64)
    lut = np.minimum(np.searchsorted(ofa, offs), len(ofa) - 1)
    if not np.array_equal(ofa[lut], offs):
        raise ValueError("matrix has entries outside the given diagonals")
    D = np.zeros((len(offsets), n), dtype=csr.dtype)
    D[lut, rows] = csr.data
    return D


def permuted_bandwidth(csr: Any, perm: np.ndarray) -> int:
    """Bandwidth of ``A[perm][:, perm]`` (without building it)."""
    mod = planner()
    perm = np.ascontiguousarray(perm, dtype=np.int64)
    if mod is not None:
        return int(mod.permuted_bandwidth(_c(csr.indptr), _c(csr.indices), perm))
    if csr.nnz == 0:
        return 0
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    rows = _entry_rows(csr.indptr, csr.shape[0])
    return int(np.abs(inv[rows] - inv[csr.indices]).max())


def closures(csr: Any, order: np.ndarray, bounds: np.ndarray, k: int, sym: bool,
             max_entries: int) -> dict[str, Any] | None:
    """PA1 ghost closures natively (see :func:`asp_mpk.partition.build_closures`): the arrays
    ``meta, gofs, glob, rofs, rp, ci`` plus ``pos`` (each local entry's position in A's
    entries) and ``computed``; None when larger than ``max_entries`` or without the extension."""
    mod = planner()
    if mod is None:
        return None
    indptr, indices = _pattern(csr)
    out = mod.closures(indptr, indices, np.ascontiguousarray(order, dtype=np.int64),
                       np.ascontiguousarray(bounds, dtype=np.int64), int(k), bool(sym),
                       int(max_entries))
    return None if out is None else dict(out)


def csr_powers(csr: Any, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray, monomial: bool
               ) -> bool:
    """``out[v] = [xs[v], P_1(A) xs[v], ...]`` by k CSR products straight into ``out`` (no
    temporaries; each row's sum in SciPy's order), split over the kernels' threads; False
    (nothing done) without the extension."""
    mod = planner()
    if mod is None:
        return False
    indptr, indices = _pattern(csr)
    mod.csr_powers(indptr, indices, _c(csr.data), xs, out,
                   np.ascontiguousarray(coefs, dtype=np.float64), bool(monomial), _threads())
    return True


class CSRProduct:
    """``y = A x`` over the CSR arrays of an analysed matrix (the extension's
    ``csr_product_t``: SciPy's sums), with the product entry point the generated kernels
    offer (:meth:`product_entry`): what :func:`asp_mpk.spmv` of a watched matrix runs in one
    native call while the matrix's kernel is being specialised in the background (see
    :func:`asp_mpk.matrix.remember_product`), where the Python path around the same product
    cost 20 us a call against SciPy's 3 (256 rows)."""

    def __init__(self, mod: Any, csr: Any) -> None:
        indptr, indices = _pattern(csr)
        self._arrays = (indptr, indices, _c(csr.data))   # alive as long as this object
        self._entry = int(mod.csr_product_entry(indptr, self._arrays[2]))
        self.n = int(csr.shape[0])
        self.dtype = self._arrays[2].dtype
        self.pass_threads = _threads()

    def product_entry(self) -> tuple[int, tuple[int, ...]]:
        """``(address, matrix arrays' addresses)`` of ``int f(n, indptr, indices, data, x, y,
        threads)``, nonzero when some y is not finite."""
        return self._entry, tuple(a.ctypes.data for a in self._arrays)


def csr_product(csr: Any) -> CSRProduct | None:
    """A :class:`CSRProduct` of ``csr``; None without the extension."""
    mod = planner()
    return None if mod is None else CSRProduct(mod, csr)


def csr_powers_call(csr: Any, k: int, *, watch: tuple | None = None,
                    leave_a_core: bool = False) -> Any:
    """The extension's ``CSRPowers`` of ``csr`` and depth ``k``: for the watched matrix that
    ``watch`` (write check, type, array attributes, shape) vouches for, or, without it, for a
    snapshot's calls, which do not look at A; None without the extension.  ``leave_a_core``:
    one thread fewer (where there is more than one), for calls made while a kernel compiles
    (as :class:`CGPasses`)."""
    mod = planner()
    if mod is None:
        return None
    check, watched_type, names, shape = watch or (None, type(None), (), None)
    indptr, indices = _pattern(csr)
    threads = max(1, _threads() - 1) if leave_a_core else _threads()
    return mod.CSRPowers(check, watched_type, names, shape, indptr, indices, _c(csr.data), k,
                         threads)


class CGPasses:
    """The three passes of a classical CG step on a float64 CSR matrix, natively, each one
    threaded pass (``q = A p`` with ``p.q``; ``x += a p, r -= a q`` with ``r.r``; ``p = r + b
    p``): what :func:`asp_mpk.cg` runs while its generated kernel compiles.  The same calls as
    the generated kernel's ``cg_*`` functions.  One core is left to that compile (where there
    is more than one): the sooner it is done, the sooner the solve runs the generated code."""

    def __init__(self, mod: Any, csr: Any, *, leave_a_core: bool = True) -> None:
        self._mod = mod
        self._indptr, self._indices = _pattern(csr)
        self._data = _c(csr.data)
        self._threads = max(1, _threads() - 1) if leave_a_core else _threads()

    def cg_apply_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        return float(self._mod.cg_apply_dot(self._indptr, self._indices, self._data, p, q,
                                            self._threads))

    def cg_update(self, alpha: float, x: np.ndarray, p: np.ndarray, r: np.ndarray,
                  q: np.ndarray) -> float:
        return float(self._mod.cg_update(alpha, x, p, r, q, self._threads))

    def cg_direction(self, beta: float, r: np.ndarray, p: np.ndarray) -> None:
        self._mod.cg_direction(beta, r, p, self._threads)


def cg_passes(csr: Any, *, leave_a_core: bool = True) -> CGPasses | None:
    """Native classical-CG passes over ``csr`` (float64), or None without the extension;
    ``leave_a_core=False`` where nothing compiles meanwhile."""
    mod = planner()
    if mod is None or csr.dtype != np.float64 or not hasattr(mod, "cg_apply_dot"):
        return None
    return CGPasses(mod, csr, leave_a_core=leave_a_core)
