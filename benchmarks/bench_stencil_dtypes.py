"""float32 against float64: the 3-D 7-point Laplacian through the public call (issue 15).

A float32 grid moves half the bytes, so a memory-bound stencil should take about half the time.
Both kernels run in this process from an empty cache (``ASP_CACHE_DIR`` is a fresh directory
unless set): first calls (specialise, compile, tune) are reported, then steady-state calls are
interleaved, float32 and float64 alternately, and the ratio of medians is printed (absolute
times on a shared machine are noise; the ratio is the result).

``--one-thread`` runs the kernels on one OpenMP thread and times them in CPU time of the calling
thread (``time.thread_time``), a figure other processes on a shared machine barely disturb (they
still share the memory bandwidth): use it to compare code changes under load; the wall-clock
ratio of the default mode, both cores, is what users get.

Usage: ``python benchmarks/bench_stencil_dtypes.py [--quick] [--size N] [--one-thread]``
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time


def main(argv: list[str]) -> int:
    n = 128 if "--quick" in argv else 256
    if "--size" in argv:
        n = int(argv[argv.index("--size") + 1])
    os.environ.setdefault("ASP_CACHE_DIR", tempfile.mkdtemp(prefix="asp-bench-dtypes-"))
    one_thread = "--one-thread" in argv
    if one_thread:  # before the OpenMP runtime is loaded
        os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    from asp_stencil import StencilGrid
    from asp_stencil.bench import Laplacian

    def grids(dtype: type) -> tuple[StencilGrid, StencilGrid]:
        u, out = StencilGrid((n, n, n), dtype=dtype), StencilGrid((n, n, n), dtype=dtype)
        u.data[...] = np.random.default_rng(0).standard_normal(u.shape)
        return u, out

    # CPU time counts only this thread: calls from a thread other than the main one run the C
    # code on the calling thread (asp_core.interrupt), so the timing loop runs on one
    clock = time.thread_time if one_thread else time.perf_counter
    cases = {"float32": (Laplacian(), grids(np.float32)), "float64": (Laplacian(), grids(np.float64))}
    times: dict[str, list[float]] = {name: [] for name in cases}

    def measure() -> None:
        for name, (k, g) in cases.items():
            t = time.perf_counter()
            k.kernel(*g)
            print(f"{name}: first call {time.perf_counter() - t:.2f} s (specialise, compile, tune)")
        for _ in range(30):  # the tuners time their variants on these calls and settle
            for k, g in cases.values():
                k.kernel(*g)
        for _ in range(30):
            for name, (k, g) in cases.items():
                t = clock()
                k.kernel(*g)
                times[name].append(clock() - t)

    if one_thread:
        worker = threading.Thread(target=measure)
        worker.start()
        worker.join()
    else:
        measure()
    m32, m64 = (float(np.median(times[x])) for x in ("float32", "float64"))
    what = "CPU time of one thread" if one_thread else "wall clock"
    print(f"Laplacian {n}^3 steady state ({what}): float32 {m32 * 1e3:.1f} ms, float64 "
          f"{m64 * 1e3:.1f} ms (medians of 30 interleaved calls); float64/float32 = "
          f"{m64 / m32:.2f}x, best-of-30 ratio {min(times['float64']) / min(times['float32']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
