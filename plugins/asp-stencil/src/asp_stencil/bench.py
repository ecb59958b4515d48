"""Benchmarks of the stencil specializer (``asp bench stencil``; ``benchmarks/bench_stencil.py``).

Cases (issue 3): 3-D 7-point Laplacian and 3-D divergence (three input grids) at 256³ float64,
a 2-D Laplacian on 64² and 256² grids called many times in a row (the cost of each call),
2-D and 3-D heat equation for 64 steps. Anchors, interleaved in the same process: NumPy slicing,
numba ``prange``, numba ``@stencil``, Devito (float64, OpenMP), pystencils (OpenMP) and a compiled
STREAM copy of the same number of points; ratios are against NumPy, and the notes give the
fraction of STREAM copy bandwidth (16 B/point for the Laplacian: one read, one write) and the
speed-up over the best anchor. Cold first call (empty cache, includes compiling) and a warm
process (import + first call with a filled cache) are timed in subprocesses. Anchors that are not
installed are skipped with a note; all heavy imports happen inside the functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, Callable, TypeVar

import numpy as np

from asp_core.decisions import VARIANT

from .grid import StencilGrid, default_neighbor_definition
from .kernel import StencilKernel
from .temporal.bench import Heat, iterate_winner, tune_iterate

__all__ = ["run_stencil_benchmarks", "Laplacian", "Laplacian2D", "Divergence", "Heat"]

T = TypeVar("T")


class Laplacian(StencilKernel):
    """3-D 7-point Laplacian (the DSL spelling of the benchmark kernel)."""

    inv_h2 = 1.0

    def kernel(self, u: StencilGrid, out: StencilGrid) -> None:
        for x in out.interior_points():
            s = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.inv_h2


class Laplacian2D(StencilKernel):
    """2-D 5-point Laplacian, for the small grids a time-stepping loop calls many times."""

    def kernel(self, u: StencilGrid, out: StencilGrid) -> None:
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s


class Divergence(StencilKernel):
    """Central-difference divergence of (fx, fy, fz); ids 2..7 are the ±1 offsets per axis."""

    half_inv_h = 0.5

    def kernel(self, fx: StencilGrid, fy: StencilGrid, fz: StencilGrid,
               out: StencilGrid) -> None:
        for x in out.interior_points():
            d = 0.0
            for y in fx.neighbors(x, 2):
                d = d + fx[y]
            for y in fx.neighbors(x, 3):
                d = d - fx[y]
            for y in fy.neighbors(x, 4):
                d = d + fy[y]
            for y in fy.neighbors(x, 5):
                d = d - fy[y]
            for y in fz.neighbors(x, 6):
                d = d + fz[y]
            for y in fz.neighbors(x, 7):
                d = d - fz[y]
            out[x] = d * self.half_inv_h


def _axis_ids(dim: int) -> list[list[tuple[int, ...]]]:
    nd = default_neighbor_definition(dim)
    for axis in range(dim):
        for step in (1, -1):
            off = [0] * dim
            off[axis] = step
            nd.append([tuple(off)])
    return nd


def _grid(shape: tuple[int, ...], rng: Any, nd: Any = None) -> StencilGrid:
    g = StencilGrid(shape)
    g.data[...] = rng.random(shape)
    if nd is not None:
        g.neighbor_definition = nd
    return g


def _stream_copy(n: int) -> Callable[[], None] | None:
    """asp-bench's compiled STREAM copy over ``n`` doubles (None without a compiler)."""
    from asp_bench.stream import stream_copy_kernel

    a = np.random.default_rng(1).random(n)
    try:
        return stream_copy_kernel(a, np.empty_like(a), numpy_fallback=False)
    except Exception:  # noqa: BLE001 - no compiler: the note uses the cached figure
        return None


def _anchor(bench: Any, name: str, make: Callable[[], T]) -> T | None:
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - an anchor missing here is reported, not fatal
        bench.note(f"anchor {name} skipped: {type(exc).__name__}: {str(exc)[:120]}")
        return None


# -- anchors ---------------------------------------------------------------------------------

def _numba_laplacian() -> Callable[..., None]:
    import numba

    @numba.njit(parallel=True, cache=True)
    def lap(u: np.ndarray, out: np.ndarray, c: float) -> None:  # pragma: no cover - compiled
        n0, n1, n2 = u.shape
        for i in numba.prange(1, n0 - 1):
            for j in range(1, n1 - 1):
                for k in range(1, n2 - 1):
                    out[i, j, k] = (-6.0 * u[i, j, k] + u[i + 1, j, k] + u[i - 1, j, k]
                                    + u[i, j + 1, k] + u[i, j - 1, k] + u[i, j, k + 1]
                                    + u[i, j, k - 1]) * c
    return lap


def _numba_stencil_laplacian() -> Callable[..., None]:
    import numba

    @numba.stencil
    def st(u: np.ndarray) -> Any:  # pragma: no cover - compiled
        return (-6.0 * u[0, 0, 0] + u[1, 0, 0] + u[-1, 0, 0] + u[0, 1, 0] + u[0, -1, 0]
                + u[0, 0, 1] + u[0, 0, -1])

    @numba.njit(parallel=True)
    def run(u: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        st(u, out=out)
    return run


def _numba_laplacian_2d() -> Callable[..., None]:
    import numba

    @numba.njit(cache=True)
    def lap(u: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        n0, n1 = u.shape
        for i in range(1, n0 - 1):
            for j in range(1, n1 - 1):
                out[i, j] = (-4.0 * u[i, j] + u[i + 1, j] + u[i - 1, j] + u[i, j + 1]
                             + u[i, j - 1])
    return lap


def _numba_divergence() -> Callable[..., None]:
    import numba

    @numba.njit(parallel=True, cache=True)
    def div(fx: np.ndarray, fy: np.ndarray, fz: np.ndarray, out: np.ndarray,
            c: float) -> None:  # pragma: no cover - compiled
        n0, n1, n2 = fx.shape
        for i in numba.prange(1, n0 - 1):
            for j in range(1, n1 - 1):
                for k in range(1, n2 - 1):
                    out[i, j, k] = (fx[i + 1, j, k] - fx[i - 1, j, k] + fy[i, j + 1, k]
                                    - fy[i, j - 1, k] + fz[i, j, k + 1] - fz[i, j, k - 1]) * c
    return div


def _numba_heat(dim: int) -> Callable[..., Any]:
    import numba

    if dim == 2:
        @numba.njit(parallel=True, cache=True)
        def heat(a: np.ndarray, b: np.ndarray, steps: int, alpha: float
                 ) -> np.ndarray:  # pragma: no cover - compiled
            n0, n1 = a.shape
            for _ in range(steps):
                for i in numba.prange(1, n0 - 1):
                    for j in range(1, n1 - 1):
                        b[i, j] = a[i, j] + alpha * (-4.0 * a[i, j] + a[i + 1, j] + a[i - 1, j]
                                                     + a[i, j + 1] + a[i, j - 1])
                a, b = b, a
            return a
    else:
        @numba.njit(parallel=True, cache=True)
        def heat(a: np.ndarray, b: np.ndarray, steps: int, alpha: float
                 ) -> np.ndarray:  # pragma: no cover - compiled
            n0, n1, n2 = a.shape
            for _ in range(steps):
                for i in numba.prange(1, n0 - 1):
                    for j in range(1, n1 - 1):
                        for k in range(1, n2 - 1):
                            b[i, j, k] = a[i, j, k] + alpha * (
                                -6.0 * a[i, j, k] + a[i + 1, j, k] + a[i - 1, j, k]
                                + a[i, j + 1, k] + a[i, j - 1, k] + a[i, j, k + 1]
                                + a[i, j, k - 1])
                a, b = b, a
            return a
    return heat


def _devito_laplacian(shape: tuple[int, ...], data: np.ndarray) -> Callable[[], Any]:
    os.environ.setdefault("DEVITO_LANGUAGE", "openmp")
    os.environ.setdefault("DEVITO_LOGGING", "ERROR")
    from devito import Eq, Function, Grid, Operator

    grid = Grid(shape=shape, extent=tuple(float(s - 1) for s in shape), dtype=np.float64)
    u = Function(name="u", grid=grid, space_order=2, dtype=np.float64)
    v = Function(name="v", grid=grid, space_order=2, dtype=np.float64)
    u.data[:] = data
    op = Operator([Eq(v, u.laplace)], opt="advanced")
    op.apply()
    return lambda: op.apply()


def _devito_heat(shape: tuple[int, ...], data: np.ndarray, steps: int, alpha: float
                 ) -> Callable[[], Any]:
    os.environ.setdefault("DEVITO_LANGUAGE", "openmp")
    os.environ.setdefault("DEVITO_LOGGING", "ERROR")
    from devito import Eq, Grid, Operator, TimeFunction

    grid = Grid(shape=shape, extent=tuple(float(s - 1) for s in shape), dtype=np.float64)
    u = TimeFunction(name="u", grid=grid, space_order=2, dtype=np.float64)
    u.data[:] = data
    op = Operator([Eq(u.forward, u + alpha * u.laplace)], opt="advanced")
    op.apply(time_M=0, dt=1.0)
    return lambda: op.apply(time_m=0, time_M=steps - 1, dt=1.0)


def _pystencils_kernel(dim: int, kind: str) -> Callable[..., Any]:
    import pystencils as ps

    cfg = ps.CreateKernelConfig(target=ps.Target.CPU)
    cfg.cpu.openmp.enable = True
    fields: Any = ps.fields(f"src, dst: double[{3 if dim == 3 else 2}D]")
    src, dst = fields
    if dim == 3:
        nb = src[1, 0, 0] + src[-1, 0, 0] + src[0, 1, 0] + src[0, -1, 0] + src[0, 0, 1] + src[0, 0, -1]
    else:
        nb = src[1, 0] + src[-1, 0] + src[0, 1] + src[0, -1]
    if kind == "laplacian":
        rhs = -6.0 * src.center + nb
    else:
        rhs = src.center + 0.1 * (-2.0 * dim * src.center + nb)
    return ps.create_kernel(ps.Assignment(dst.center, rhs), cfg).compile()


# -- cases -----------------------------------------------------------------------------------

def _winner(kernel: Any) -> str:
    """The variant the autotuner chose for the kernel's last specialisation."""
    ctx = getattr(kernel.kernel, "last_context", None)
    chosen = ctx.decision(VARIANT) if ctx is not None else None
    return chosen.choice if chosen is not None else "?"


def _pct_stream(bench: Any, rows: list[Any], impl: str, bytes_per_call: float, label: str) -> None:
    by = {m.impl: m for m in rows}
    if impl not in by:
        return
    mine = by[impl]
    stream = by.get("stream-copy")
    gbs = bytes_per_call / mine.best / 1e9
    ref = (stream.gbs if stream is not None and stream.gbs else bench.stream_copy_gbs())
    anchors = [m for m in rows if m.impl not in (impl, "stream-copy")]
    best = min(anchors, key=lambda m: m.best) if anchors else None
    text = f"{label}: asp {gbs:.1f} GB/s = {100 * gbs / ref:.0f}% of STREAM copy ({ref:.1f} GB/s)"
    if best is not None:
        text += f"; {best.best / mine.best:.2f}x the best anchor ({best.impl})"
    bench.note(text)


def _tuned(call: Callable[[], Any]) -> None:
    """Specialise and autotune now, in this run's conditions (a winner stored by an earlier run
    on a differently loaded machine is not reused), calling until the tuner has decided."""
    old = os.environ.get("ASP_AUTOTUNE")
    os.environ["ASP_AUTOTUNE"] = "always"
    try:
        for _ in range(16):
            call()
    finally:
        if old is None:
            os.environ.pop("ASP_AUTOTUNE", None)
        else:
            os.environ["ASP_AUTOTUNE"] = old


def _laplacian(bench: Any, n: int) -> None:
    rng = np.random.default_rng(0)
    shape = (n, n, n)
    u, out = _grid(shape, rng), StencilGrid(shape)
    k = Laplacian()
    _tuned(lambda: k.kernel(u, out))
    impls: dict[str, Callable[[], Any]] = {"asp": lambda: k.kernel(u, out)}
    ud, ref = u.data, np.zeros(shape)

    def numpy_lap() -> None:
        ref[1:-1, 1:-1, 1:-1] = (-6.0 * ud[1:-1, 1:-1, 1:-1] + ud[2:, 1:-1, 1:-1]
                                 + ud[:-2, 1:-1, 1:-1] + ud[1:-1, 2:, 1:-1] + ud[1:-1, :-2, 1:-1]
                                 + ud[1:-1, 1:-1, 2:] + ud[1:-1, 1:-1, :-2])
    impls["numpy"] = numpy_lap
    o2, o3, o4 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    f = _anchor(bench, "numba-prange", _numba_laplacian)
    if f:
        f(ud, o2, 1.0)
        impls["numba-prange"] = lambda: f(ud, o2, 1.0)
    g = _anchor(bench, "numba-stencil", _numba_stencil_laplacian)
    if g:
        g(ud, o3)
        impls["numba-stencil"] = lambda: g(ud, o3)
    d = _anchor(bench, "devito", lambda: _devito_laplacian(shape, ud))
    if d:
        impls["devito"] = d
    p = _anchor(bench, "pystencils", lambda: _pystencils_kernel(3, "laplacian"))
    if p:
        p(src=ud, dst=o4)
        impls["pystencils"] = lambda: p(src=ud, dst=o4)
    s = _stream_copy(n ** 3)
    if s:
        impls["stream-copy"] = s

    def check() -> None:
        numpy_lap()
        np.testing.assert_allclose(out.data[1:-1, 1:-1, 1:-1], ref[1:-1, 1:-1, 1:-1],
                                   rtol=1e-12, atol=1e-12)
        if f and not np.array_equal(out.data, o2):
            raise AssertionError("asp and numba differ")

    rows = bench.compare(f"laplacian-3d {n}^3 f64", impls, anchor="numpy", bytes=16 * n ** 3,
                         flops=8 * (n - 2) ** 3, check=check, repeats=12)
    _pct_stream(bench, rows, "asp", 16 * n ** 3, f"laplacian (variant {_winner(k)})")


def _small(bench: Any, n: int, calls: int) -> None:
    """A small grid's kernel called ``calls`` times in a row, as a time-stepping loop of the
    user's calls it: what each call costs around the C code (checks, key, dispatch) weighs
    as much as the sweep here. Anchors: NumPy slicing and numba's serial ``njit``."""
    rng = np.random.default_rng(0)
    u, out = _grid((n, n), rng), StencilGrid((n, n))
    k = Laplacian2D()
    _tuned(lambda: k.kernel(u, out))
    ud, ref, o2 = u.data, np.zeros((n, n)), np.zeros((n, n))

    def numpy_lap() -> None:
        ref[1:-1, 1:-1] = (-4.0 * ud[1:-1, 1:-1] + ud[2:, 1:-1] + ud[:-2, 1:-1]
                           + ud[1:-1, 2:] + ud[1:-1, :-2])

    def loop(call: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                call()
        return run

    impls: dict[str, Callable[[], Any]] = {"asp": loop(lambda: k.kernel(u, out)),
                                           "numpy": loop(numpy_lap)}
    f = _anchor(bench, "numba", _numba_laplacian_2d)
    if f:
        f(ud, o2)
        impls["numba"] = loop(lambda: f(ud, o2))

    def check() -> None:
        numpy_lap()
        np.testing.assert_allclose(out.data[1:-1, 1:-1], ref[1:-1, 1:-1], rtol=1e-13)
        if f:
            np.testing.assert_allclose(out.data, o2, rtol=1e-13)

    bench.compare(f"laplacian-2d {n}^2 f64, {calls} calls", impls, anchor="numpy",
                  bytes=16 * n * n * calls, check=check, repeats=12)


def _divergence(bench: Any, n: int) -> None:
    rng = np.random.default_rng(1)
    shape = (n, n, n)
    nd = _axis_ids(3)
    fx, fy, fz = (_grid(shape, rng, nd) for _ in range(3))
    out = StencilGrid(shape)
    out.neighbor_definition = nd
    k = Divergence()
    _tuned(lambda: k.kernel(fx, fy, fz, out))
    a, b, c = fx.data, fy.data, fz.data
    ref = np.zeros(shape)

    def numpy_div() -> None:
        ref[1:-1, 1:-1, 1:-1] = 0.5 * (a[2:, 1:-1, 1:-1] - a[:-2, 1:-1, 1:-1] + b[1:-1, 2:, 1:-1]
                                       - b[1:-1, :-2, 1:-1] + c[1:-1, 1:-1, 2:]
                                       - c[1:-1, 1:-1, :-2])
    impls: dict[str, Callable[[], Any]] = {"asp": lambda: k.kernel(fx, fy, fz, out),
                                           "numpy": numpy_div}
    o2 = np.zeros(shape)
    f = _anchor(bench, "numba-prange", _numba_divergence)
    if f:
        f(a, b, c, o2, 0.5)
        impls["numba-prange"] = lambda: f(a, b, c, o2, 0.5)
    s = _stream_copy(2 * n ** 3)
    if s:
        impls["stream-copy"] = s

    def check() -> None:
        numpy_div()
        np.testing.assert_allclose(out.data[1:-1, 1:-1, 1:-1], ref[1:-1, 1:-1, 1:-1],
                                   rtol=1e-12, atol=1e-12)

    rows = bench.compare(f"divergence-3d {n}^3 f64 (3 inputs)", impls, anchor="numpy",
                         bytes=32 * n ** 3, check=check, repeats=12)
    _pct_stream(bench, rows, "asp", 32 * n ** 3, f"divergence (variant {_winner(k)})")


def _heat(bench: Any, shape: tuple[int, ...], steps: int) -> None:
    dim = len(shape)
    rng = np.random.default_rng(2)
    a, b = _grid(shape, rng), StencilGrid(shape)
    b.data[...] = a.data
    k = Heat()
    k.centre = -2.0 * dim
    init = a.data.copy()
    _tuned(lambda: k.kernel(a, b))
    tune_iterate(k, (a, b), steps)  # plain or temporally blocked sweeps, decided in this run

    def asp_run() -> Any:
        a.data[...] = init
        b.data[...] = init
        return k.iterate(a, b, steps=steps)

    na, nb = init.copy(), init.copy()

    def numpy_run() -> np.ndarray:
        na[...] = init
        nb[...] = init
        x, y = na, nb
        inner = (slice(1, -1),) * dim
        for _ in range(steps):
            acc = -2.0 * dim * x[inner]
            for axis in range(dim):
                hi = tuple(slice(2, None) if d == axis else slice(1, -1) for d in range(dim))
                lo = tuple(slice(None, -2) if d == axis else slice(1, -1) for d in range(dim))
                acc = acc + x[hi] + x[lo]
            y[inner] = x[inner] + 0.1 * acc
            x, y = y, x
        return x

    impls: dict[str, Callable[[], Any]] = {"asp": asp_run, "numpy": numpy_run}
    ma, mb = init.copy(), init.copy()
    f = _anchor(bench, "numba-prange", lambda: _numba_heat(dim))
    if f:
        def numba_run() -> Any:
            ma[...] = init
            mb[...] = init
            return f(ma, mb, steps, 0.1)
        numba_run()
        impls["numba-prange"] = numba_run
    d = _anchor(bench, "devito", lambda: _devito_heat(shape, init, steps, 0.1))
    if d:
        impls["devito"] = d
    p = _anchor(bench, "pystencils", lambda: _pystencils_kernel(dim, "heat"))
    if p:
        pa, pb = init.copy(), init.copy()

        def ps_run() -> None:
            pa[...] = init
            pb[...] = init
            x, y = pa, pb
            for _ in range(steps):
                p(src=x, dst=y)
                x, y = y, x
        ps_run()
        impls["pystencils"] = ps_run

    def check() -> None:
        res = asp_run()
        np.testing.assert_allclose(res.data, numpy_run(), rtol=1e-10, atol=1e-12)
        if f and not np.array_equal(res.data, numba_run()):
            raise AssertionError("asp and numba differ")

    name = "x".join(map(str, shape))
    bench.compare(f"heat-{dim}d {name} f64, {steps} steps", impls, anchor="numpy",
                  bytes=16 * int(np.prod(shape)) * steps, repeats=3, check=check)
    bench.note(f"heat-{dim}d {name}: iterate chose {iterate_winner(k)} (sweep variant "
               f"{_winner(k)})")


_COLD_SCRIPT = textwrap.dedent("""
    import sys
    import time
    t0 = time.perf_counter()
    import numpy as np
    from asp_stencil.bench import Laplacian
    from asp_stencil import StencilGrid
    t1 = time.perf_counter()
    n = {n}
    u, out = StencilGrid([n] * 3), StencilGrid([n] * 3)
    u.data[...] = 1.0
    k = Laplacian()
    calls = []
    for _ in range(int(sys.argv[1])):  # as a user writes it: the kernel first touches the output
        t2 = time.perf_counter()
        k.kernel(u, out)
        calls.append(time.perf_counter() - t2)
    if out.data[1, 1, 1] != 0.0 or out.data[0, 0, 0] != 0.0:
        raise SystemExit("the Laplacian of a constant grid is not 0")
    print(t1 - t0, *calls)
""")

#: a new process must reach a warm process's speed within this many calls (issue 13)
FIRST_CALLS = 7


def _cold_warm(bench: Any, n: int) -> None:
    """A new process with an empty cache against a warm one (filled cache): the first call, and
    the best of the first :data:`FIRST_CALLS` calls, run alternately so load hits both alike."""
    with tempfile.TemporaryDirectory(prefix="asp-bench-cold-") as cache:
        env = dict(os.environ, ASP_CACHE_DIR=cache, ASP_MODE="strict")
        # an installed package has its bytecode cached; this sandbox may disable writing it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("ASP_AUTOTUNE", None)
        script = _COLD_SCRIPT.format(n=n)
        subprocess.run([sys.executable, "-c", "import asp_stencil.bench, asp_core.plugins; "
                        "asp_core.plugins.get_registry()"], env=env, capture_output=True,
                       timeout=300)
        results: dict[str, list[list[float]]] = {"new process, empty cache": [],
                                                 "warm process": []}

        def run(calls: int) -> list[float] | None:
            proc = subprocess.run([sys.executable, "-c", script, str(calls)], env=env,
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                bench.note(f"cold/warm laplacian: failed: {proc.stderr.strip()[-300:]}")
                return None
            return [float(x) for x in proc.stdout.split()]

        for _ in range(2 if bench.quick else 3):
            shutil.rmtree(cache, ignore_errors=True)
            new = run(FIRST_CALLS)
            # the rest of the tuning, in a process of its own: a warm process finds the winner
            if new is None or run(30) is None:
                return
            warm = run(FIRST_CALLS)
            if warm is None:
                return
            results["new process, empty cache"].append(new)
            results["warm process"].append(warm)
        best = {label: min(min(r[1:]) for r in runs) for label, runs in results.items()}
        for label, runs in results.items():
            first = min(r[1] for r in runs)
            bench.note(f"laplacian {n}^3 {label}: import {min(r[0] for r in runs) * 1e3:.0f} ms, "
                       f"first call {first * 1e3:.0f} ms, best of the first {FIRST_CALLS} calls "
                       f"{best[label] * 1e3:.2f} ms")
        new_best, warm_best = best["new process, empty cache"], best["warm process"]
        bench.note(f"laplacian {n}^3: a new process reaches {warm_best / new_best:.2f}x a warm process's "
                   f"speed within its first {FIRST_CALLS} calls (goal: at least 0.90)")


def run_stencil_benchmarks(bench: Any) -> None:
    """The ``stencil`` suite (see the module docstring)."""
    n = 96 if bench.quick else 256
    _laplacian(bench, n)
    _divergence(bench, n)
    for side in (64, 256):
        _small(bench, side, 1000 if side == 64 else 200)
    _heat(bench, (512, 512) if bench.quick else (2048, 2048), 16 if bench.quick else 64)
    _heat(bench, (48, 48, 48) if bench.quick else (128, 128, 128), 16 if bench.quick else 64)
    _cold_warm(bench, n)
