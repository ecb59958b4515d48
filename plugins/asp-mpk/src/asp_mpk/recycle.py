"""Result arrays recycled once the caller has dropped them.

A large fresh array costs its first touch: glibc hands out blocks above its mmap threshold
(≤ 32 MiB) as new pages, and the kernel zeroes each one on the first write.  For the k+1 basis
vectors of a 1M-row matrix (72 MB) that is more time than the matrix-powers kernel itself, on
every call; SciPy's eight ``A @ x`` never pay it (8 MB vectors stay in malloc's heap).

:class:`Recycler` keeps the last few result arrays of one shape and hands one out again only when
nothing outside it refers to it any more: no name, no view (a NumPy view holds its base), no
buffer export.  A caller that keeps its results gets fresh arrays, exactly as before; a loop
``V = matrix_powers(A, x, 8)`` alternates between two buffers.  Results smaller than
:data:`MIN_BYTES` are left to malloc, which recycles them already.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

__all__ = ["Recycler", "MIN_BYTES"]

#: results below this size are allocated fresh (malloc's heap already reuses their pages)
MIN_BYTES = 4 << 20


def _references(arrays: list, i: int) -> int:
    """Reference count of ``arrays[i]`` as seen from here (the interpreter's own temporaries
    included: compare only with :data:`_ONLY_THE_LIST`, counted the same way)."""
    return sys.getrefcount(arrays[i])


#: what :func:`_references` reports for an object that only its list refers to
_ONLY_THE_LIST = _references([object()], 0)


class Recycler:
    """Up to ``keep`` result arrays of one owner (each released when a new shape is asked for)."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array nobody else refers to: a dropped earlier result
        when one of this shape and dtype is free, else a new one (kept for later calls)."""
        dtype = np.dtype(dtype)
        if math.prod(shape) * dtype.itemsize < MIN_BYTES:   # np.prod: 3 us a call
            return np.empty(shape, dtype=dtype)
        with self._lock:
            self._arrays = [a for a in self._arrays if a.shape == shape and a.dtype == dtype]
            for i in range(len(self._arrays)):
                if _references(self._arrays, i) == _ONLY_THE_LIST:
                    return self._arrays[i]
            fresh = np.empty(shape, dtype=dtype)
            if len(self._arrays) >= self.keep:
                self._arrays.pop(0)
            self._arrays.append(fresh)
            return fresh

    def clear(self) -> None:
        """Let go of every kept array."""
        with self._lock:
            self._arrays.clear()
