"""float32 against float64: the 3-D 7-point Laplacian through the public call (issue 15).

A float32 grid moves half the bytes, so a memory-bound stencil should take about half the time.
Both kernels run in this process from an empty cache (``ASP_CACHE_DIR`` is a fresh directory
unless set): first calls (specialise, compile, tune) are reported, then steady-state calls are
interleaved, float32 and float64 alternately, and the ratio of medians is printed (absolute
times on a shared machine are noise; the ratio is the result).

Usage: ``python benchmarks/bench_stencil_dtypes.py [--quick] [--size N]``
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def main(argv: list[str]) -> int:
    n = 128 if "--quick" in argv else 256
    if "--size" in argv:
        n = int(argv[argv.index("--size") + 1])
    os.environ.setdefault("ASP_CACHE_DIR", tempfile.mkdtemp(prefix="asp-bench-dtypes-"))
    import numpy as np

    from asp_stencil import StencilGrid
    from asp_stencil.bench import Laplacian

    def grids(dtype: type) -> tuple[StencilGrid, StencilGrid]:
        u, out = StencilGrid((n, n, n), dtype=dtype), StencilGrid((n, n, n), dtype=dtype)
        u.data[...] = np.random.default_rng(0).standard_normal(u.shape)
        return u, out

    cases = {"float32": (Laplacian(), grids(np.float32)), "float64": (Laplacian(), grids(np.float64))}
    for name, (k, g) in cases.items():
        t = time.perf_counter()
        k.kernel(*g)
        print(f"{name}: first call {time.perf_counter() - t:.2f} s (specialise, compile, tune)")
    for _ in range(30):  # the tuners time their variants on these calls and settle
        for k, g in cases.values():
            k.kernel(*g)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(30):
        for name, (k, g) in cases.items():
            t = time.perf_counter()
            k.kernel(*g)
            times[name].append(time.perf_counter() - t)
    m32, m64 = (float(np.median(times[x])) for x in ("float32", "float64"))
    print(f"Laplacian {n}^3 steady state: float32 {m32 * 1e3:.1f} ms, float64 {m64 * 1e3:.1f} ms "
          f"(medians of 30 interleaved calls); float64/float32 = {m64 / m32:.2f}x, "
          f"best-of-30 ratio {min(times['float64']) / min(times['float32']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
