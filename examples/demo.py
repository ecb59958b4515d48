"""Asp in one minute: the paper's Figure 2, a 3-D Laplacian, then a 64-step heat equation.

    python examples/demo.py
    asp explain examples/demo.py     # what Asp did: DAST, passes, platform, variants, C code

Every figure printed is measured in this run, on this machine, with the competitors timed in
turns (interleaved), so a burst of load from another process hits all of them alike.
"""

import time

import numpy as np

from asp_stencil.temporal.iterate import iterate_decision
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


# 2. A 3-D 7-point Laplacian and 3. an explicit heat step, written in the same DSL.
class Laplacian(StencilKernel):
    inv_h2 = 1.0

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.inv_h2


class Heat(StencilKernel):
    alpha = 0.1

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + self.alpha * s


def interleaved(impls, repeats=7):
    """Best time of each implementation, calling them in turns."""
    best = {name: float("inf") for name in impls}
    for _ in range(repeats):
        for name, fn in impls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def compare(title, best, unit=1e3, suffix="ms"):
    """Print each time and how asp compares: faster, on par (within 5 %) or slower."""
    print(title)
    mine = best["asp"]
    for name, t in best.items():
        line = f"  {name:7s} {t * unit:9.2f} {suffix}"
        if name != "asp":
            ratio = t / mine
            if ratio >= 1.05:
                line += f"   asp is {ratio:.2f}x faster"
            elif ratio > 1 / 1.05:
                line += f"   asp is on par ({ratio:.2f}x)"
            else:
                line += f"   asp is {1 / ratio:.2f}x slower"
        print(line)


try:
    import numba
except ImportError:
    numba = None
    print("\n(numba is not installed: `pip install numba` to compare with it)")

# -- 2. one sweep of a 3-D Laplacian -------------------------------------------------------
n = 192
u, out = StencilGrid([n] * 3), StencilGrid([n] * 3)
u.data[...] = np.random.default_rng(0).random(u.shape)
lap = Laplacian()
t0 = time.perf_counter()
lap.kernel(u, out)
first = time.perf_counter() - t0
# the first calls time each variant on real work; call until the winner is bound directly
calls = 1
while not all(map(lap.kernel.tuned, lap.kernel.keys())) and calls < 60:
    lap.kernel(u, out)
    calls += 1

ud, ref = u.data, np.zeros_like(u.data)


def numpy_laplacian():
    ref[1:-1, 1:-1, 1:-1] = (-6.0 * ud[1:-1, 1:-1, 1:-1] + ud[2:, 1:-1, 1:-1] + ud[:-2, 1:-1, 1:-1]
                             + ud[1:-1, 2:, 1:-1] + ud[1:-1, :-2, 1:-1] + ud[1:-1, 1:-1, 2:]
                             + ud[1:-1, 1:-1, :-2])


impls = {"asp": lambda: lap.kernel(u, out), "numpy": numpy_laplacian}
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
    impls["numba"] = lambda: numba_laplacian(ud, nb_out)
best = interleaved(impls)
numpy_laplacian()
assert np.allclose(ref[1:-1, 1:-1, 1:-1], out.data[1:-1, 1:-1, 1:-1], rtol=1e-12, atol=1e-12)
compare(f"\n3-D Laplacian {n}^3 float64, one sweep (first call incl. specialisation: "
        f"{first * 1e3:.0f} ms; {calls} calls to tune)", best)

# -- 3. 64 steps of a 2-D heat equation: iterate() may block in time -------------------------
m, steps = 2048, 64
init = np.random.default_rng(1).random((m, m))
a, b = StencilGrid([m, m]), StencilGrid([m, m])
a.data[...] = init
b.data[...] = init
heat = Heat()
t0 = time.perf_counter()
heat.iterate(a, b, steps=steps)
first = time.perf_counter() - t0
# the first calls run plain sweeps until they would pay for building the blocked code, then
# time plain sweeps against temporally blocked ones: call until that choice is made
calls = 1
while iterate_decision(heat) is None and calls < 80:
    heat.iterate(a, b, steps=steps)
    calls += 1
impls = {"asp": lambda: heat.iterate(a, b, steps=steps)}
if numba is not None:
    @numba.njit(parallel=True, cache=True)
    def numba_heat(x, y, steps, alpha):
        n0, n1 = x.shape
        for _ in range(steps):
            for i in numba.prange(1, n0 - 1):
                for j in range(1, n1 - 1):
                    y[i, j] = x[i, j] + alpha * (-4.0 * x[i, j] + x[i + 1, j] + x[i - 1, j]
                                                 + x[i, j + 1] + x[i, j - 1])
            x, y = y, x
        return x

    na, nb = init.copy(), init.copy()
    numba_heat(na, nb, 1, 0.1)
    impls["numba"] = lambda: numba_heat(na, nb, steps, 0.1)
best = interleaved(impls, repeats=5)
# the same 64 steps from the same start, checked bit for bit against numba
a.data[...] = init
b.data[...] = init
result = heat.iterate(a, b, steps=steps)
if numba is not None:
    na[...] = init
    nb[...] = init
    assert np.array_equal(result.data, numba_heat(na, nb, steps, 0.1)), "asp and numba differ"
compare(f"\n2-D heat equation {m}^2 float64, {steps} steps through iterate() (first call incl. "
        f"specialisation: {first * 1e3:.0f} ms; {calls} calls to choose "
        f"{iterate_decision(heat).choice if iterate_decision(heat) else 'nothing yet'})", best)

print("\nNext: `asp explain examples/demo.py` shows each kernel's DAST, the passes, the chosen "
      "platform and variants, and the generated C; `asp bench stencil` and "
      "`asp bench stencil-temporal` run the full benchmarks.")
