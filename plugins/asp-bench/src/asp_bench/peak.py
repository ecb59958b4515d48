"""The compute roof of a roofline: a compiled FMA loop timed in the same run as the suites."""

from __future__ import annotations

import time

__all__ = ["measure_peak_gflops"]

#: independent accumulators per thread: enough FMA chains to cover the FMA latency on every
#: vector width up to AVX-512 (8 registers of 8 doubles, or 16 of 4)
_PEAK_LANES = 64


def measure_peak_gflops(seconds: float = 0.2, repeats: int = 3) -> float | None:
    """Double-precision GFLOP/s of a compiled, register-resident FMA loop on
    :func:`asp_core.hardware.default_threads` threads: the compute roof of a roofline, measured in the run (best of
    ``repeats``). ``None`` where no C compiler exists."""
    import ctypes

    try:
        from asp_core.build import compile_library

        fn = compile_library(_peak_source(), name="peak_fma").cdll.asp_peak_fma
    except Exception:  # noqa: BLE001 - no compiler: the plot then has no compute roof
        return None
    fn.argtypes = [ctypes.c_long, ctypes.POINTER(ctypes.c_double)]
    fn.restype = ctypes.c_int
    sink = ctypes.c_double(0.0)
    fn(1, ctypes.byref(sink))  # starts the OpenMP threads: not part of any timing
    n = 1 << 12
    while True:  # size the run to about `seconds`
        t0 = time.perf_counter()
        fn(n, ctypes.byref(sink))
        if time.perf_counter() - t0 > seconds / 4 or n > 1 << 40:
            break
        n *= 4
    best, threads = float("inf"), 1
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        threads = fn(n, ctypes.byref(sink))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * _PEAK_LANES * n * threads / best / 1e9


def _peak_source() -> str:
    """``int asp_peak_fma(long n, double *out)``: ``n`` rounds of ``acc = fma(acc, m, c)`` over
    :data:`_PEAK_LANES` accumulators per thread; returns the thread count."""
    from asp_core.cast import (DOUBLE, INT, LONG, Assign, AugAssign, Block, Call, Constant, Decl,
                               For, FunctionDef, Include, Index, Module, Name, Param, Pragma,
                               Return, print_c)

    j, acc = Name("j"), Name("acc")
    lanes = Constant(_PEAK_LANES)
    simd = [Pragma("omp", "simd")]
    region = Block([
        Decl(DOUBLE, "acc", dims=(_PEAK_LANES,), align=64),
        For("j", Constant(0), lanes, Block([Assign(Index(acc, j), Constant(1.0))]),
            pragmas=simd),
        For("i", Constant(0), Name("n"), Block([
            For("j", Constant(0), lanes, Block([Assign(Index(acc, j), Call("fma", [
                Index(acc, j), Constant(0.9999999), Constant(1e-7)]))]), pragmas=simd)])),
        Decl(DOUBLE, "s", Constant(0.0)),
        For("j", Constant(0), lanes, Block([AugAssign(Name("s"), "+", Index(acc, j))])),
        Pragma("omp", "critical"),
        Block([AugAssign(Index(Name("out"), Constant(0)), "+", Name("s")),
               Assign(Name("threads"), Call("omp_get_num_threads", []))]),
    ])
    body = Block([Decl(INT, "threads", Constant(1)), Pragma("omp", "parallel"), region,
                  Return(Name("threads"))])
    fn = FunctionDef("asp_peak_fma", [Param(LONG, "n"), Param(DOUBLE.ptr(), "out")], body,
                     ret=INT)
    return print_c(Module([Include("math.h"), Include("omp.h"), fn]))
