"""Input checking and conversion, done before any compiled code runs.

Every public entry point funnels its arguments through here so that bad input (non-square or
non-sparse matrices, shape mismatches, integer or complex dtypes, non-finite values, k < 0) is a
clear ``TypeError``/``ValueError`` instead of a crash inside generated C.  Nothing passed in is
ever modified: conversions copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_csr", "as_is", "as_vector", "as_start", "check_before_conversion", "checked_source",
           "check_finite", "non_finite", "check_k", "float_dtype", "as_float", "without_outside_diagonals",
           "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def float_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """``dtype`` when asp_mpk computes in it (float64, float32), else ``TypeError`` naming
    ``what`` and how to convert it."""
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED_DTYPES:
        return dtype
    if dtype.kind == "f" and dtype.newbyteorder("=") in SUPPORTED_DTYPES:
        # (vectors are converted before this: see _native_order)
        raise TypeError(f"{what} has dtype {dtype}: {dtype.newbyteorder('=')} in non-native "
                        f"(byte-swapped) order, which scipy.sparse does not support; convert "
                        f"first, e.g. {what}.astype(numpy.{dtype.newbyteorder('=')})")
    if dtype.kind in "iub":
        raise TypeError(f"{what} has integer/boolean dtype {dtype}; asp_mpk computes in float64 or "
                        f"float32: convert first, e.g. {what}.astype(numpy.float64)")
    if dtype.kind == "c":
        raise TypeError(f"{what} has complex dtype {dtype}; asp_mpk supports real float64 and "
                        "float32 only")
    if dtype.kind == "f":  # float16, longdouble
        raise TypeError(f"{what} has dtype {dtype}; use float64 or float32")
    raise TypeError(f"{what} has unsupported dtype {dtype}; use float64 or float32")


def as_csr(A: Any, *, dtype: np.dtype | None = None, name: str = "A") -> Any:
    """Canonical CSR copy of a scipy.sparse matrix/array (sorted, summed duplicates, explicit
    zeros dropped, int32/64).

    Raises ``TypeError`` for non-sparse input or unsupported dtypes and ``ValueError`` for a
    non-square matrix, a broken CSR structure (a column index outside the matrix, a decreasing
    indptr: checked once, natively, by :func:`asp_mpk.native.check_csr`; the arrays of other
    formats are checked before SciPy converts them) or non-finite stored values.
    """
    import scipy.sparse as sp

    from asp_mpk import native

    src, want, canonical = checked_source(A, dtype=dtype, name=name)
    if src is A and src.dtype == want:   # the snapshot: copied natively, on every core
        data, indices, indptr = native.copies(src.data, src.indices, src.indptr)
        csr = sp.csr_matrix((data, indices, indptr), shape=src.shape)
    else:   # SciPy's conversion made new arrays, or the dtype conversion makes them
        csr = sp.csr_matrix(src, dtype=want, copy=src is A)
    if not canonical:
        csr.sum_duplicates()   # sorts too
    zeros = _stored_zeros(csr.data, name)
    if zeros:
        # explicit zeros (stored, or left by summed duplicates that cancel) add work and hide
        # DIA structure.  A @ x is unchanged for finite x only: at a level that overflowed to
        # inf, SciPy's product makes 0 * inf = nan where asp's has no entry (the guide says so)
        csr.eliminate_zeros()
    csr.has_canonical_format = True
    return csr


def checked_source(A: Any, *, dtype: np.dtype | None = None, name: str = "A"
                   ) -> tuple[Any, np.dtype, bool]:
    """What :func:`as_csr` checks before it copies: ``(src, want, canonical)``, A itself when
    it is CSR (else SciPy's conversion of it), the dtype the copy computes in and whether
    src's rows are canonical (sorted, no duplicates); the same errors."""
    import scipy.sparse as sp

    if not sp.issparse(A):
        if isinstance(A, np.ndarray):
            raise TypeError(f"{name} must be a scipy.sparse matrix or array, got a dense "
                            "numpy.ndarray; wrap it with scipy.sparse.csr_array(A)")
        raise TypeError(f"{name} must be a scipy.sparse matrix or array, got {type(A).__name__}")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square, got shape {A.shape}")
    check_before_conversion(A, name)   # A.dtype reads A.data
    float_dtype(A.dtype, name)
    want = float_dtype(A.dtype if dtype is None else dtype, name)
    if A.shape[0] >= 2**31 - 1:
        raise ValueError(f"{name} has {A.shape[0]} rows; at most 2**31-2 are supported")
    from asp_mpk import native

    src = A if A.format == "csr" else without_outside_diagonals(A).tocsr()
    # the structure check runs on the caller's arrays, before SciPy walks them
    canonical = native.check_csr(src.indptr, src.indices, A.shape[1], name=name)
    if src is A and len(src.indptr) != A.shape[0] + 1:
        # as below (the products over A's own arrays take their row count from indptr)
        raise ValueError(f"{name} has an invalid CSR structure: indptr has {len(src.indptr)} "
                         f"entries; its shape {A.shape} needs {A.shape[0] + 1}")
    if src is A and (src.data.ndim != 1 or len(src.data) != len(src.indices)):
        # A's own data, replaced after construction: the copy's constructor refused it (SciPy's
        # check_format), while a first sighting's products over A's arrays read past its end
        raise ValueError(f"{name} has an invalid CSR structure: data has shape "
                         f"{src.data.shape}; one value per column index ({len(src.indices)}) "
                         "is needed")
    return src, want, canonical


def as_is(A: Any, *, name: str = "A") -> bool:
    """Whether the products may run on A's own arrays as :func:`as_csr`'s copy of it would
    hold them: a canonical CSR matrix of a dtype asp computes in, in native byte order with
    int32 or int64 indices, without stored zeros (the copy drops them); the same errors for
    what no copy could take (a broken structure, values that are not finite)."""
    src, _, canonical = checked_source(A, name=name)
    plain = A.dtype.isnative and all(a.dtype.isnative and a.dtype.kind == "i" and
                                     a.dtype.itemsize in (4, 8) for a in (A.indptr, A.indices))
    # only the stored entries: SciPy ignores what ``data`` holds past ``indptr[-1]`` (a nan
    # there failed the first call, which runs on A's arrays, and not the later ones, on a copy)
    return src is A and plain and canonical and \
        not _stored_zeros(A.data[:int(A.indptr[-1])], name)


def _stored_zeros(data: np.ndarray, name: str) -> bool:
    """Whether ``data`` holds explicit zeros; ``ValueError`` for inf or nan."""
    from asp_mpk import native

    finite, zeros = native.value_flags(data)
    if not finite:
        raise ValueError(f"{name} has non-finite stored values (inf or nan)")
    return bool(zeros)


#: the arrays of each format SciPy converts from, as attribute names
_ARRAYS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
           "bsr": ("data", "indices", "indptr"), "coo": ("data", "row", "col"),
           "dia": ("data", "offsets")}


def without_outside_diagonals(A: Any) -> Any:
    """``A``, or for a DIA matrix with diagonals wholly outside it, the same matrix without
    them (they hold no entry of A).  SciPy's ``tocsr`` casts the offsets to its index dtype,
    int32 for a small matrix: an offset such as 2**32 wrapped to 0, a diagonal it had not
    counted, and its conversion wrote past the end of its arrays (heap corruption, a
    segmentation fault) where SciPy's own ``A @ x`` ignores that diagonal."""
    if A.format != "dia":
        return A
    offsets = A.offsets
    keep = (offsets > -A.shape[0]) & (offsets < A.shape[1])
    if keep.all():
        return A
    return type(A)((A.data[keep], offsets[keep].astype(np.int64)), shape=A.shape)


def check_before_conversion(A: Any, name: str) -> None:
    """``ValueError`` naming what is wrong with the arrays of a CSR, CSC, BSR, COO, DIA or
    LIL matrix that SciPy's ``tocsr`` (or asp's native code) would index with unchecked.
    SciPy checks them when the matrix is built, but they can be changed or replaced
    afterwards, and its conversions then read or write out of bounds (a segmentation fault,
    or silently wrong values).  A CSR or CSC structure is checked natively by
    :func:`asp_mpk.native.check_csr`."""
    from asp_mpk import native

    fmt = A.format
    what = f"{name} ({fmt.upper()})"

    def bad(problem: str) -> ValueError:
        return ValueError(f"{what} has an invalid structure: {problem}")

    arrays = {key: getattr(A, key) for key in _ARRAYS.get(fmt, ())}
    for key, arr in arrays.items():
        if not isinstance(arr, np.ndarray):
            raise bad(f"{key} is a {type(arr).__name__}, not a numpy array")
        if key != "data" and arr.dtype.kind not in "iu":
            raise bad(f"{key} has dtype {arr.dtype}; an integer dtype is needed")
    if fmt in ("csc", "bsr"):
        data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        if data.ndim != (1 if fmt == "csc" else 3) or indices.ndim != 1 or indptr.ndim != 1:
            raise bad(f"data {data.shape}, indices {indices.shape} and indptr {indptr.shape} "
                      "have the wrong dimensions")
        rows, cols = (1, 1) if fmt == "csc" else data.shape[1:]
        if 0 in (rows, cols) or A.shape[0] % rows or A.shape[1] % cols:
            raise bad(f"blocks of {(rows, cols)} do not divide its shape {A.shape}")
        lines, across = ((A.shape[1], A.shape[0]) if fmt == "csc" else
                         (A.shape[0] // rows, A.shape[1] // cols))
        if len(indptr) != lines + 1:
            raise bad(f"indptr has {len(indptr)} entries; its shape {A.shape} needs {lines + 1}")
        native.check_csr(indptr, indices, across, name=what, layout=fmt.upper())
        if len(data) < indptr[-1]:
            raise bad(f"indptr[-1] is {indptr[-1]} but data has {len(data)} entries")
    elif fmt == "coo":
        if not (A.data.ndim == A.row.ndim == A.col.ndim == 1
                and len(A.data) == len(A.row) == len(A.col)):
            raise bad(f"data {A.data.shape}, row {A.row.shape} and col {A.col.shape} differ")
        for key, index, size in (("row", A.row, A.shape[0]), ("col", A.col, A.shape[1])):
            if index.size and (index.min() < 0 or index.max() >= size):
                p = int(np.flatnonzero((index < 0) | (index >= size))[0])
                raise bad(f"{key} index {index[p]} (entry {p}) is outside 0..{size - 1}")
    elif fmt == "dia":
        if A.data.ndim != 2 or A.offsets.ndim != 1 or len(A.offsets) != len(A.data):
            raise bad(f"data {A.data.shape} does not have one row per offset "
                      f"(offsets {A.offsets.shape})")
    elif fmt == "lil":
        _check_lil(A, bad)


def _check_lil(A: Any, bad: Any) -> None:
    """A LIL matrix's ``rows`` and ``data``: one list per row each, of the same lengths.
    SciPy's ``tocsr`` sizes its arrays by ``rows`` and fills them from both unchecked: a
    longer list in ``data`` wrote past the end (heap corruption), a shorter one left values
    uninitialised (silently wrong products), fewer rows read past ``rows``' end."""
    rows, data, m = A.rows, A.data, A.shape[0]
    for key, arr in (("rows", rows), ("data", data)):
        if not (isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == (m,)):
            shape = getattr(arr, "shape", None)
            raise bad(f"{key} must be an object array of one list per row, shape ({m},); "
                      f"got a {type(arr).__name__}" + (f" of shape {shape}" if shape else ""))
    try:
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=m)
        values = np.fromiter(map(len, data), dtype=np.int64, count=m)
    except TypeError:
        raise bad("rows and data must hold a list for each row") from None
    if not np.array_equal(counts, values):
        i = int(np.flatnonzero(counts != values)[0])
        raise bad(f"row {i} has {counts[i]} column indices in rows but {values[i]} values in "
                  "data")


def as_vector(x: Any, n: int, *, name: str = "x", allow_2d: bool = False,
              finite: bool = True) -> np.ndarray:
    """Validated float array of length ``n`` (or shape (m, n) when ``allow_2d``); never a view.
    ``finite=False`` leaves the check for inf and nan to the caller (a kernel that makes it
    while it copies x anyway)."""
    arr = _native_order(np.asarray(x))
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    float_dtype(arr.dtype, name)
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"shape mismatch: {name} has length {arr.shape[0]} but A is {n}x{n}")
    elif arr.ndim == 2 and allow_2d:
        if arr.shape[1] != n:
            column = (f" (a column vector: one vector is {name}.ravel(), several are rows)"
                      if arr.shape == (n, 1) else "")
            raise ValueError(f"shape mismatch: {name} has shape {arr.shape}; rows must have "
                             f"length {n}, one vector per row{column}")
    elif arr.ndim == 2 and arr.shape == (n, 1):
        arr = arr[:, 0]
    else:
        raise ValueError(f"{name} must be a 1-D array of length {n}, got shape {arr.shape}")
    if finite:
        check_finite(arr, name)
    return arr


def as_float(x: Any, dtype: Any) -> Any:
    """``x`` as SciPy's ``A @ x`` computes with it: a boolean, integer or float16 array cast to
    the float dtype NumPy makes of it and ``dtype`` (A's: float64 for a float64 A or an int64
    x, float32 for a float32 A and an int16 x); anything else as it is (checked later)."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind in "biu" or (kind == "f" and arr.dtype.itemsize < 4):
        target = np.result_type(np.float64 if dtype is None else dtype, arr.dtype)
        if target in SUPPORTED_DTYPES:
            return arr.astype(target)
    return x


def as_start(x0: Any, n: int, *, name: str = "x0") -> np.ndarray:
    """A solver's right-hand side or starting vector, validated as :func:`as_vector`: one of
    any real dtype (integer, boolean, float16, longdouble) is cast to float64, as SciPy casts
    it to the solve's dtype (the solution's dtype is A's and b's, never x0's)."""
    arr = np.asarray(x0)
    if arr.dtype.kind in "biuf" and arr.dtype not in SUPPORTED_DTYPES:
        arr = arr.astype(np.float64)
    return as_vector(arr, n, name=name)


def _native_order(arr: np.ndarray) -> np.ndarray:
    """A float64/float32 array in non-native byte order (data read from a file written on
    another machine, say) converted to native order, as SciPy's ``A @ x`` accepts it."""
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def check_finite(arr: np.ndarray, name: str = "x") -> None:
    """``ValueError`` naming ``name`` when ``arr`` holds inf or nan (one native pass)."""
    from asp_mpk import native

    if not native.all_finite(arr):
        raise non_finite(name)


def non_finite(name: str = "x") -> ValueError:
    """The error for a vector holding inf or nan, however it was found."""
    return ValueError(f"{name} has non-finite values (inf or nan)")


#: the first k :func:`check_k` refuses: a basis of 2**31 vectors does not fit in memory
MAX_K = 2**31


def check_k(k: Any) -> int:
    """``k`` as a non-negative int, or a clear error."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k >= MAX_K:
        # the native calls take k as a 64-bit integer: 10**20 failed in pybind11's conversion
        # with a message listing A's arrays
        raise ValueError(f"k = {k} is too large: the basis holds k + 1 vectors (k < 2**31)")
    return int(k)
