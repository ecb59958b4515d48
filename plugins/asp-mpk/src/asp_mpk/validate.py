"""Input checking and conversion, done before any compiled code runs.

Every public entry point funnels its arguments through here so that bad input (non-square or
non-sparse matrices, shape mismatches, integer or complex dtypes, non-finite values, k < 0) is a
clear ``TypeError``/``ValueError`` instead of a crash inside generated C.  Nothing passed in is
ever modified: conversions copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_csr", "as_vector", "check_finite", "non_finite", "check_k",
           "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _float_dtype(dtype: np.dtype, what: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED_DTYPES:
        return dtype
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
    """Canonical CSR copy of a scipy.sparse matrix/array (sorted, summed duplicates, int32/64).

    Raises ``TypeError`` for non-sparse input or unsupported dtypes and ``ValueError`` for a
    non-square matrix, a broken CSR structure (a column index outside the matrix, a decreasing
    indptr: checked once, natively, by :func:`asp_mpk.native.check_csr`) or non-finite stored
    values.
    """
    import scipy.sparse as sp

    if not sp.issparse(A):
        if isinstance(A, np.ndarray):
            raise TypeError(f"{name} must be a scipy.sparse matrix or array, got a dense "
                            "numpy.ndarray; wrap it with scipy.sparse.csr_array(A)")
        raise TypeError(f"{name} must be a scipy.sparse matrix or array, got {type(A).__name__}")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square, got shape {A.shape}")
    _float_dtype(A.dtype, name)
    want = _float_dtype(A.dtype if dtype is None else dtype, name)
    if A.shape[0] >= 2**31 - 1:
        raise ValueError(f"{name} has {A.shape[0]} rows; at most 2**31-2 are supported")
    from asp_mpk import native

    if A.format == "csc":   # SciPy's conversion trusts the indices: check them first
        native.check_csr(A.indptr, A.indices, A.shape[0], name=f"{name} (CSC)")
    src = A if A.format == "csr" else A.tocsr()
    # the structure check runs on the caller's arrays, before SciPy walks them
    canonical = native.check_csr(src.indptr, src.indices, A.shape[1], name=name)
    csr = sp.csr_matrix(src, dtype=want, copy=src is A)
    if not canonical:
        csr.sum_duplicates()   # sorts too
    finite, zeros = native.value_flags(csr.data)
    if not finite:
        raise ValueError(f"{name} has non-finite stored values (inf or nan)")
    if zeros:
        csr.eliminate_zeros()  # explicit zeros add work and hide DIA structure; A @ x is unchanged
    csr.has_canonical_format = True
    return csr


def as_vector(x: Any, n: int, *, name: str = "x", allow_2d: bool = False,
              finite: bool = True) -> np.ndarray:
    """Validated float array of length ``n`` (or shape (m, n) when ``allow_2d``); never a view.
    ``finite=False`` leaves the check for inf and nan to the caller (a kernel that makes it
    while it copies x anyway)."""
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    _float_dtype(arr.dtype, name)
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"shape mismatch: {name} has length {arr.shape[0]} but A is {n}x{n}")
    elif arr.ndim == 2 and allow_2d:
        if arr.shape[1] != n:
            raise ValueError(f"shape mismatch: {name} has shape {arr.shape}; rows must have "
                             f"length {n}")
    elif arr.ndim == 2 and arr.shape == (n, 1):
        arr = arr[:, 0]
    else:
        raise ValueError(f"{name} must be a 1-D array of length {n}, got shape {arr.shape}")
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str = "x") -> None:
    """``ValueError`` naming ``name`` when ``arr`` holds inf or nan (one native pass)."""
    from asp_mpk import native

    if not native.all_finite(arr):
        raise non_finite(name)


def non_finite(name: str = "x") -> ValueError:
    """The error for a vector holding inf or nan, however it was found."""
    return ValueError(f"{name} has non-finite values (inf or nan)")


def check_k(k: Any) -> int:
    """``k`` as a non-negative int, or a clear error."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return int(k)
