"""Asp in one minute: the paper's Figure 2, then a 3-D Laplacian against NumPy and numba.

    python examples/demo.py
    asp explain examples/demo.py     # what Asp did: DAST, passes, platform, variants, C code
"""

import time

import numpy as np

from stencil_kernel import StencilGrid, StencilKernel


# 1. The Asp paper's Figure 2: the first call specialises the kernel to C/OpenMP.
class ExampleKernel(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


in_grid = StencilGrid([5, 5])
in_grid.data[...] = 1.0
out_grid = StencilGrid([5, 5])
ExampleKernel().kernel(in_grid, out_grid)
print("Figure 2 (4 on the interior, 0 on the border):")
print(out_grid.data)


# 2. A 3-D 7-point Laplacian written in the same DSL.
class Laplacian(StencilKernel):
    inv_h2 = 1.0

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.inv_h2


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


n = 192
u, out = StencilGrid([n] * 3), StencilGrid([n] * 3)
out.data.fill(0.0)  # touch the pages now, so the first call times Asp, not page faults
u.data[...] = np.random.default_rng(0).random(u.shape)
lap = Laplacian()
t0 = time.perf_counter()
lap.kernel(u, out)
first = time.perf_counter() - t0
for _ in range(10):  # the first calls time each variant; the winner is then bound directly
    lap.kernel(u, out)
asp_t = best_of(lambda: lap.kernel(u, out))

ud, ref = u.data, np.zeros_like(u.data)


def numpy_laplacian():
    ref[1:-1, 1:-1, 1:-1] = (-6.0 * ud[1:-1, 1:-1, 1:-1] + ud[2:, 1:-1, 1:-1] + ud[:-2, 1:-1, 1:-1]
                             + ud[1:-1, 2:, 1:-1] + ud[1:-1, :-2, 1:-1] + ud[1:-1, 1:-1, 2:]
                             + ud[1:-1, 1:-1, :-2])


numpy_t = best_of(numpy_laplacian, 3)
assert np.allclose(ref[1:-1, 1:-1, 1:-1], out.data[1:-1, 1:-1, 1:-1], rtol=1e-12, atol=1e-12)

print(f"\n3-D Laplacian {n}^3 float64 (first call incl. specialisation: {first * 1e3:.0f} ms)")
print(f"  asp    {asp_t * 1e3:8.2f} ms")
print(f"  numpy  {numpy_t * 1e3:8.2f} ms   asp is {numpy_t / asp_t:5.1f}x faster")
try:
    import numba
except ImportError:
    numba = None
if numba is not None:
    @numba.njit(parallel=True, cache=True)
    def numba_laplacian(u, out):
        n0, n1, n2 = u.shape
        for i in numba.prange(1, n0 - 1):
            for j in range(1, n1 - 1):
                for k in range(1, n2 - 1):
                    out[i, j, k] = (-6.0 * u[i, j, k] + u[i + 1, j, k] + u[i - 1, j, k]
                                    + u[i, j + 1, k] + u[i, j - 1, k] + u[i, j, k + 1]
                                    + u[i, j, k - 1])

    nb_out = np.zeros_like(ud)
    numba_laplacian(ud, nb_out)
    numba_t = best_of(lambda: numba_laplacian(ud, nb_out))
    print(f"  numba  {numba_t * 1e3:8.2f} ms   asp is {numba_t / asp_t:5.1f}x faster")

print("\nNext: `asp explain examples/demo.py` shows each kernel's DAST, the passes, the chosen "
      "platform and variants, and the generated C; `asp bench stencil` runs the full benchmarks.")
