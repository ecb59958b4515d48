"""Benchmarks of the NumPy platform (``asp bench stencil-numpy``; ``benchmarks/bench_stencil_numpy.py``).

Cases, each interleaved in one process with hand-written NumPy slicing as the anchor:

* 3-D 7-point Laplacian, 256³ float64 (``--quick``: 64³): the platform's variants (``whole``,
  ``slabs-B``), the autotuned choice, and asp-stencil's default OpenMP platform when a compiler is
  installed;
* the paper's Figure 2 kernel on a 2000² grid (``--quick``: 400²);
* Figure 2 on a 96² grid (``--quick``: 48²) against the pure-Python kernel (the fallback), which
  is too slow for the larger sizes.

Every case first checks that all implementations give the anchor's bits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from asp_core.decisions import VARIANT
from asp_core.toolchain import has_compiler
from asp_stencil import StencilGrid, StencilKernel

__all__ = ["Figure2", "Laplacian", "run_stencil_numpy_benchmarks"]

NUMPY = {"platform_selection": "numpy"}


class Laplacian(StencilKernel):
    def kernel(self, u: StencilGrid, out: StencilGrid) -> None:
        for x in out.interior_points():
            s = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s


class Figure2(StencilKernel):
    def kernel(self, in_grid: StencilGrid, out_grid: StencilGrid) -> None:
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


def numpy_laplacian(u: np.ndarray, out: np.ndarray) -> None:
    """Hand-written slicing, one expression in the kernel's operation order (the anchor; NumPy
    reuses the expression's temporaries in place)."""
    out[1:-1, 1:-1, 1:-1] = (-6.0 * u[1:-1, 1:-1, 1:-1] + u[2:, 1:-1, 1:-1] + u[:-2, 1:-1, 1:-1]
                             + u[1:-1, 2:, 1:-1] + u[1:-1, :-2, 1:-1] + u[1:-1, 1:-1, 2:]
                             + u[1:-1, 1:-1, :-2])


def numpy_figure2(u: np.ndarray, out: np.ndarray) -> None:
    c = (slice(1, -1),) * 2
    out[c] = out[c] + u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2]


def _grids(shape: tuple[int, ...], seed: int) -> tuple[StencilGrid, StencilGrid]:
    u, out = StencilGrid(shape), StencilGrid(shape)
    u.data[...] = np.random.default_rng(seed).standard_normal(shape)
    return u, out


def _variants(cls: type, grids: tuple[StencilGrid, ...]) -> dict[str, Callable[..., None]]:
    """Every variant of the NumPy platform for these grids, built through the core's pipeline."""
    from asp_core import Dispatcher

    k = cls()
    func = type(k).kernel.func.__get__(k, type(k))
    return Dispatcher("stencil", func, instance=k, options=dict(NUMPY),
                      name=f"{cls.__name__}.kernel").build_variants(*grids)


def _tuned(cls: type[StencilKernel], grids: tuple[StencilGrid, ...], options: dict[str, Any]
           ) -> tuple[Callable[[], None], str]:
    """A kernel instance with ``options``, called until autotuning has picked its winner."""
    cls.asp_options = dict(options)
    k = cls()
    for _ in range(12):
        k.kernel(*grids)
    ctx = k.kernel.last_context
    decision = ctx.decision(VARIANT) if ctx else None
    winner = decision.choice if decision else "?"
    cls.asp_options = {}
    return (lambda: k.kernel(*grids)), winner


def _same_as(anchor_out: np.ndarray, runs: dict[str, tuple[Callable[[], None], np.ndarray]]
             ) -> Callable[[], None]:
    def check() -> None:
        for name, (fn, out) in runs.items():
            out[...] = 0.0
            fn()
            if not np.array_equal(out, anchor_out):
                raise AssertionError(f"{name} differs from the NumPy anchor")
    return check


def _laplacian(bench: Any) -> None:
    n = 64 if bench.quick else 256
    shape = (n, n, n)
    u, out = _grids(shape, 0)
    ref = np.zeros(shape)
    numpy_laplacian(u.data, ref)
    impls: dict[str, Callable[[], None]] = {"numpy": lambda: numpy_laplacian(u.data, ref)}
    outs: dict[str, tuple[Callable[[], None], np.ndarray]] = {}
    for name, fn in _variants(Laplacian, (u, out)).items():
        g = StencilGrid(shape)
        impls[f"asp numpy {name}"] = functools.partial(fn, u, g)
        outs[f"asp numpy {name}"] = (impls[f"asp numpy {name}"], g.data)
    g_t = StencilGrid(shape)
    tuned, winner = _tuned(Laplacian, (u, g_t), NUMPY)
    impls[f"asp numpy tuned ({winner})"] = tuned
    outs["asp numpy tuned"] = (tuned, g_t.data)
    if has_compiler("c"):
        g_c = StencilGrid(shape)
        omp, _ = _tuned(Laplacian, (u, g_c), {})
        impls["asp openmp"] = omp
        outs["asp openmp"] = (omp, g_c.data)
    else:
        bench.note("no C compiler: the OpenMP platform is not compared")
    rows = bench.compare(f"3-D 7-point Laplacian {n}^3 f64", impls, anchor="numpy",
                         bytes=16.0 * n ** 3, flops=7.0 * (n - 2) ** 3,
                         check=_same_as(ref, outs))
    best = min((m for m in rows if m.impl.startswith("asp numpy")), key=lambda m: m.best)
    bench.note(f"best NumPy-platform variant: {best.impl}, x{best.ratio:.2f} vs hand-written numpy")


def _figure2(bench: Any) -> None:
    n = 400 if bench.quick else 2000
    u, _ = _grids((n, n), 1)
    ref = np.zeros((n, n))
    numpy_figure2(u.data, ref)
    g_t = StencilGrid((n, n))

    def anchor() -> None:
        ref[...] = 0.0
        numpy_figure2(u.data, ref)

    tuned, winner = _tuned(Figure2, (u, g_t), NUMPY)

    def asp_numpy() -> None:  # Figure 2 accumulates into the output: reset it like the anchor
        g_t.data[...] = 0.0
        tuned()

    impls = {"numpy": anchor, f"asp numpy ({winner})": asp_numpy}
    outs = {"asp numpy": (asp_numpy, g_t.data)}
    if has_compiler("c"):
        g_c = StencilGrid((n, n))
        omp, _ = _tuned(Figure2, (u, g_c), {})

        def asp_openmp() -> None:
            g_c.data[...] = 0.0
            omp()

        impls["asp openmp"] = asp_openmp
        outs["asp openmp"] = (asp_openmp, g_c.data)
    bench.compare(f"Figure 2 (5-point sum) {n}^2 f64", impls, anchor="numpy",
                  bytes=24.0 * n * n, check=_same_as(ref, outs))


def _versus_python(bench: Any) -> None:
    n = 48 if bench.quick else 96
    u, _ = _grids((n, n), 2)
    ref, g_n, g_p = StencilGrid((n, n)), StencilGrid((n, n)), StencilGrid((n, n))
    numpy_figure2(u.data, ref.data)
    tuned, _ = _tuned(Figure2, (u, g_n), NUMPY)
    k = Figure2()

    def reset(g: StencilGrid, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            g.data[...] = 0.0
            fn()
        return run

    impls = {"python": reset(g_p, lambda: k.pure_python(u, g_p)),
             "asp numpy": reset(g_n, tuned),
             "numpy": reset(ref, lambda: numpy_figure2(u.data, ref.data))}
    rows = bench.compare(f"Figure 2 {n}^2 f64 vs the pure-Python kernel", impls, anchor="python",
                         repeats=3, check=_same_as(ref.data, {
                             "python": (impls["python"], g_p.data),
                             "asp numpy": (impls["asp numpy"], g_n.data)}))
    speed = {m.impl: m.ratio for m in rows}
    bench.note(f"asp numpy is x{speed['asp numpy']:.0f} faster than the pure-Python kernel")


def run_stencil_numpy_benchmarks(bench: Any) -> None:
    """The suite registered as ``stencil-numpy`` (see the module docstring)."""
    previous = os.environ.get("ASP_AUTOTUNE")
    os.environ["ASP_AUTOTUNE"] = "always"  # tune in this process, whatever the database holds
    try:
        _versus_python(bench)
        _figure2(bench)
        _laplacian(bench)
    finally:
        if previous is None:
            os.environ.pop("ASP_AUTOTUNE", None)
        else:
            os.environ["ASP_AUTOTUNE"] = previous
