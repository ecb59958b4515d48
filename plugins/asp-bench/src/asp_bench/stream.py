"""The memory roof of a roofline: a compiled STREAM copy, timed in the same run as the suites
(``asp doctor`` and ``asp bench`` keep one figure per machine in the cache directory)."""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["stream_copy_kernel", "measure_stream_copy"]


def stream_copy_kernel(a: Any, b: Any, *, numpy_fallback: bool = True) -> Callable[[], None]:
    """A callable doing the STREAM copy ``b[:] = a`` (compiled OpenMP), so benchmarks take the
    roofline in the same run as their kernels. Without a compiler: ``numpy.copyto``, or with
    ``numpy_fallback=False`` the compile error."""
    import ctypes

    import numpy as np

    if a.dtype != np.float64 or b.dtype != np.float64 or a.shape != b.shape or \
            not (a.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("stream_copy_kernel needs two C-contiguous float64 arrays of one shape")
    try:
        from asp_core.build import compile_library

        fn = compile_library(_stream_source(), name="stream_copy").cdll.asp_stream_copy
    except Exception:  # noqa: BLE001 - no compiler: NumPy still gives a usable figure
        if not numpy_fallback:
            raise
        return lambda: np.copyto(b, a)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    fn.restype = None
    pa, pb, n = a.ctypes.data, b.ctypes.data, a.size

    def copy(_keep: tuple = (a, b)) -> None:  # holds the arrays: the pointers stay valid
        fn(pa, pb, n)

    return copy


def measure_stream_copy(nbytes: int, repeats: int = 8) -> float:
    """Best-of-``repeats`` STREAM copy (``b[i] = a[i]``) in GB/s, counting 16 bytes per element."""
    import numpy as np

    n = nbytes // 8
    a = np.random.default_rng(0).random(n)
    b = np.empty_like(a)
    copy = stream_copy_kernel(a, b)
    copy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        copy()
        best = min(best, time.perf_counter() - t0)
    if not np.array_equal(a[:: max(1, n // 1000)], b[:: max(1, n // 1000)]):
        raise RuntimeError("STREAM copy kernel produced wrong data")
    return 16 * n / best / 1e9


def _stream_source() -> str:
    from asp_core.cast import (DOUBLE, LONG, Assign, Block, Clause, Constant, For, FunctionDef,
                               Index, Module, Name, Param, Pragma, print_c)

    i = Name("i")
    body = Block([For("i", Constant(0), Name("n"),
                      Block([Assign(Index(Name("b"), i), Index(Name("a"), i))]),
                      pragmas=[Pragma("omp", "parallel for simd",
                                      [Clause("schedule", ("static",))])])])
    fn = FunctionDef("asp_stream_copy", [Param(DOUBLE.as_const().ptr(restrict=True), "a"),
                                         Param(DOUBLE.ptr(restrict=True), "b"),
                                         Param(LONG, "n")], body)
    return print_c(Module([fn]))
