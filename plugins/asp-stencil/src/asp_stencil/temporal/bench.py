"""Benchmark suite ``stencil-temporal`` (``asp bench stencil-temporal``,
``python benchmarks/bench_stencil_temporal.py``).

Cases (issue 4): 2-D heat, 3-D heat and the 3-D Laplace equation as a Jacobi iteration, 64 steps
each on grids far beyond the 32 MiB last-level cache. Implementations, interleaved in one
process: ``iterate`` as users call it (``asp-iterate``: plain or temporally blocked sweeps,
whichever its autotuner chose in this run), Asp's plain sweeps (``asp-plain``: ``iterate`` with
``temporal="off"``, the anchor), numba
``prange``, Devito and pystencils running 64 sweeps, and a STREAM copy of one grid.

The figure of merit is the *effective bandwidth*: 16 bytes per point per step (one read and one
write, what a perfect plain sweep must move) divided by the time. The STREAM copy bandwidth is
the roofline of any plain-sweep code, so ``effective / STREAM`` above 1 is only possible by
reusing cached data across time steps; the goal is at least 2.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..grid import StencilGrid
from ..kernel import StencilKernel

__all__ = ["run_temporal_benchmarks", "Heat", "Jacobi"]

STEPS = 64


class Heat(StencilKernel):
    """Explicit heat equation step, any dimension: u + alpha * (sum of face neighbours
    - 2·dim·u); ``centre`` is -2·dim (set it for 3-D)."""

    alpha = 0.1
    centre = -4.0

    def kernel(self, u: StencilGrid, out: StencilGrid) -> None:
        for x in out.interior_points():
            s = self.centre * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + self.alpha * s


class Jacobi(StencilKernel):
    """Jacobi iteration of the Laplace equation: the mean of the face neighbours."""

    inv = 1.0 / 6.0

    def kernel(self, u: StencilGrid, out: StencilGrid) -> None:
        for x in out.interior_points():
            s = 0.0
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.inv


def _numba_sweeps(kind: str, dim: int) -> Callable[..., Any]:
    import numba

    if dim == 2:
        @numba.njit(parallel=True, cache=True)
        def run2(a: np.ndarray, b: np.ndarray, steps: int,
                 c: float) -> np.ndarray:  # pragma: no cover - compiled
            n0, n1 = a.shape
            for _ in range(steps):
                for i in numba.prange(1, n0 - 1):
                    for j in range(1, n1 - 1):
                        b[i, j] = a[i, j] + c * (-4.0 * a[i, j] + a[i + 1, j] + a[i - 1, j]
                                                 + a[i, j + 1] + a[i, j - 1])
                a, b = b, a
            return a
        return run2
    if kind == "heat":
        @numba.njit(parallel=True, cache=True)
        def run3(a: np.ndarray, b: np.ndarray, steps: int,
                 c: float) -> np.ndarray:  # pragma: no cover - compiled
            n0, n1, n2 = a.shape
            for _ in range(steps):
                for i in numba.prange(1, n0 - 1):
                    for j in range(1, n1 - 1):
                        for k in range(1, n2 - 1):
                            b[i, j, k] = a[i, j, k] + c * (
                                -6.0 * a[i, j, k] + a[i + 1, j, k] + a[i - 1, j, k]
                                + a[i, j + 1, k] + a[i, j - 1, k] + a[i, j, k + 1]
                                + a[i, j, k - 1])
                a, b = b, a
            return a
        return run3

    @numba.njit(parallel=True, cache=True)
    def jac3(a: np.ndarray, b: np.ndarray, steps: int,
             c: float) -> np.ndarray:  # pragma: no cover - compiled
        n0, n1, n2 = a.shape
        for _ in range(steps):
            for i in numba.prange(1, n0 - 1):
                for j in range(1, n1 - 1):
                    for k in range(1, n2 - 1):
                        b[i, j, k] = (a[i + 1, j, k] + a[i - 1, j, k] + a[i, j + 1, k]
                                      + a[i, j - 1, k] + a[i, j, k + 1] + a[i, j, k - 1]) * c
            a, b = b, a
        return a
    return jac3


def _devito(kind: str, shape: tuple[int, ...], data: np.ndarray, steps: int, c: float
            ) -> Callable[[], Any]:
    os.environ.setdefault("DEVITO_LANGUAGE", "openmp")
    os.environ.setdefault("DEVITO_LOGGING", "ERROR")
    from devito import Eq, Grid, Operator, TimeFunction

    grid = Grid(shape=shape, extent=tuple(float(s - 1) for s in shape), dtype=np.float64)
    u = TimeFunction(name="u", grid=grid, space_order=2, dtype=np.float64)
    u.data[:] = data
    rhs = u + c * u.laplace if kind == "heat" else u + u.laplace * c
    op = Operator([Eq(u.forward, rhs)], opt="advanced")
    op.apply(time_M=0, dt=1.0)
    return lambda: op.apply(time_m=0, time_M=steps - 1, dt=1.0)


def _pystencils(kind: str, dim: int, c: float) -> Callable[..., Any]:
    import pystencils as ps

    cfg = ps.CreateKernelConfig(target=ps.Target.CPU)
    cfg.cpu.openmp.enable = True
    fields: Any = ps.fields("src, dst: double[3D]" if dim == 3 else "src, dst: double[2D]")
    src, dst = fields
    if dim == 3:
        nb = (src[1, 0, 0] + src[-1, 0, 0] + src[0, 1, 0] + src[0, -1, 0] + src[0, 0, 1]
              + src[0, 0, -1])
    else:
        nb = src[1, 0] + src[-1, 0] + src[0, 1] + src[0, -1]
    rhs = src.center + c * (-2.0 * dim * src.center + nb) if kind == "heat" else nb * c
    return ps.create_kernel(ps.Assignment(dst.center, rhs), cfg).compile()


def iterate_winner(kernel: Any) -> str:
    """What ``kernel.iterate`` chose for its longest tuned iterations: ``plain``, a blocked
    variant's label, ``still tuning``, or ``-`` when it never chose (a platform or kernel
    blocking cannot take)."""
    from .iterate import iterate_decision
    from .runner import iterators

    if not any(it.choices for it in iterators(kernel)):
        return "-"
    decided = iterate_decision(kernel)
    return decided.choice if decided is not None else "still tuning"


def tune_iterate(kernel: Any, grids: tuple, steps: int, max_calls: int = 80) -> None:
    """Call ``kernel.iterate`` until its choice between plain and blocked sweeps is made, in
    this run's conditions (``ASP_AUTOTUNE=always``: no winner stored by an earlier run)."""
    old = os.environ.get("ASP_AUTOTUNE")
    os.environ["ASP_AUTOTUNE"] = "always"
    try:
        for _ in range(max_calls):
            kernel.iterate(*grids, steps=steps)
            if iterate_winner(kernel) not in ("still tuning", "-"):
                break
    finally:
        if old is None:
            os.environ.pop("ASP_AUTOTUNE", None)
        else:
            os.environ["ASP_AUTOTUNE"] = old


def _case(bench: Any, kind: str, shape: tuple[int, ...], steps: int) -> None:
    from ..bench import _anchor, _stream_copy

    dim = len(shape)
    rng = np.random.default_rng(3)
    init = rng.random(shape)
    k: Heat | Jacobi
    if kind == "heat":
        k = Heat()
        k.centre = -2.0 * dim
        c = k.alpha
    else:
        k = Jacobi()
        c = k.inv
    plain = type(k)()
    plain.__dict__.update(k.__getstate__())
    plain.asp_options = {"temporal": "off"}
    a, b = StencilGrid(shape), StencilGrid(shape)
    pa, pb = StencilGrid(shape), StencilGrid(shape)
    for g in (a, b, pa, pb):
        g.data[...] = init

    # tune both in this run, then check: iterate == plain sweeps, bit for bit, both grids
    tune_iterate(k, (a, b), steps)
    tune_iterate(plain, (pa, pb), steps)
    for g in (a, b, pa, pb):
        g.data[...] = init
    k.iterate(a, b, steps=7)
    plain.iterate(pa, pb, steps=7)
    if not (np.array_equal(a.data, pa.data) and np.array_equal(b.data, pb.data)):
        raise AssertionError(f"{kind} {shape}: iterate differs from plain sweeps")
    bench.note(f"{kind} {shape}: iterate chose {iterate_winner(k)}")

    impls: dict[str, Callable[[], Any]] = {
        "asp-iterate": lambda: k.iterate(a, b, steps=steps),
        "asp-plain": lambda: plain.iterate(pa, pb, steps=steps),
    }
    ma, mb = init.copy(), init.copy()
    f: Callable[..., Any] | None = _anchor(bench, "numba-prange",
                                           lambda: _numba_sweeps(kind, dim))
    if f:
        f(ma, mb, 1, c)
        impls["numba-prange"] = lambda: f(ma, mb, steps, c)
    d = _anchor(bench, "devito", lambda: _devito(kind, shape, init, steps, c))
    if d:
        impls["devito"] = d
    p: Callable[..., Any] | None = _anchor(bench, "pystencils",
                                           lambda: _pystencils(kind, dim, c))
    if p:
        xa, xb = init.copy(), init.copy()

        def ps_run() -> None:
            x, y = xa, xb
            for _ in range(steps):
                p(src=x, dst=y)
                x, y = y, x
        impls["pystencils"] = ps_run
    s = _stream_copy(int(np.prod(shape)))
    roof = f"stream-copy x{steps}"
    if s:
        def roofline() -> None:  # what the best possible plain-sweep code would take
            for _ in range(steps):
                s()
        impls[roof] = roofline
    npts = int(np.prod(shape))
    rows = bench.compare(f"{kind}-{dim}d {'x'.join(map(str, shape))} f64, {steps} steps", impls,
                         anchor="asp-plain", bytes=16.0 * npts * steps, repeats=3)
    by = {m.impl: m for m in rows}
    mine = by["asp-iterate"]
    eff = 16.0 * npts * steps / mine.best / 1e9
    if roof in by:
        copy_gbs = 16.0 * npts * steps / by[roof].best / 1e9
    else:
        copy_gbs = bench.stream_copy_gbs()
    anchors = [m for m in rows if m.impl not in ("asp-iterate", "asp-plain", roof)]
    text = (f"{kind}-{dim}d: asp iterate effective {eff:.1f} GB/s = {eff / copy_gbs:.2f}x the "
            f"single-sweep STREAM-copy roofline ({copy_gbs:.1f} GB/s); {mine.ratio:.2f}x asp "
            f"plain sweeps")
    if anchors:
        best = min(anchors, key=lambda m: m.best)
        text += f"; {best.best / mine.best:.2f}x the fastest other tool ({best.impl})"
    bench.note(text)


def run_temporal_benchmarks(bench: Any) -> None:
    """The ``stencil-temporal`` suite (see the module docstring)."""
    if bench.quick:
        cases = [("heat", (2048, 2048)), ("heat", (128, 128, 128)), ("jacobi", (128, 128, 128))]
        steps = 16
    else:
        cases = [("heat", (4096, 4096)), ("heat", (256, 256, 256)), ("jacobi", (256, 256, 256))]
        steps = STEPS
    for kind, shape in cases:
        _case(bench, kind, shape, steps)
