"""Every schedule the platform optimiser may pick compiles and is bitwise equal to Python.

The autotuner only reaches the later variants over several calls, so they are built and run
here directly, for 1-D, 2-D and 3-D kernels with interior, border and sequential loops.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from asp_core.build import compile_library
from asp_core.cast import print_c
from asp_core.context import SpecializationContext
from asp_core.hardware import query
from pytest_asp import requires_compiler
from asp_stencil.domain import StencilDomainOptimizer
from asp_stencil.frontend import StencilFrontend
from asp_stencil.openmp import function_name, lower_openmp
from asp_stencil.schedule import Schedule
from asp_stencil.grid import default_neighbor_definition
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.testing import (assert_bitwise, clone_grids, kernel_sources, load_kernel,
                                 make_grids)

from asp_stencil.bench import Divergence, Heat, Laplacian

SCHEDULES = [Schedule(), Schedule(nt=True), Schedule(block=4), Schedule(nt=True, block=4),
             Schedule(collapse=True), Schedule(unroll=2), Schedule(nt=True, unroll=4),
             Schedule(threads=1), Schedule(threads=2, parallel_min_points=1),
             Schedule(nt=True, threads=2, parallel_min_points=1),
             Schedule(simd=False, parallel_min_points=1),
             Schedule(nt=True, omp_schedule="dynamic,2", parallel_min_points=1),
             Schedule(block=4, omp_schedule="dynamic,1", parallel_min_points=1),
             Schedule(nt=True, vec=True), Schedule(nt=True, vec=True, parallel_min_points=1),
             Schedule(nt=True, vec=True, block=4, parallel_min_points=1),
             Schedule(nt=True, vec=True, collapse=True, parallel_min_points=1),
             Schedule(nt=True, vec=True, unroll=2, parallel_min_points=1),
             Schedule(nt=True, vec=True, omp_schedule="dynamic,2", parallel_min_points=1),
             Schedule(nt=True, vec=True, prefetch=2, parallel_min_points=1),
             Schedule(nt=True, vec=True, nt_edges=True, parallel_min_points=1),
             Schedule(nt=True, vec=True, nt_edges=True, block=4, parallel_min_points=1),
             Schedule(nt=True, nt_edges=True, parallel_min_points=1),
             Schedule(nt=True, nt_edges=True, block=4, parallel_min_points=1)]


def _prog(kernel, grids):
    ctx = SpecializationContext("stencil", type(kernel).kernel.func.__get__(kernel), tuple(grids),
                                {}, kernel, {}, None, type(kernel).__name__)
    return StencilDomainOptimizer().optimize(StencilFrontend().parse(ctx), ctx)


#: the ISA the compiled code runs on (what ``-march=native`` targets)
HOST_ISA = tuple(query().isa)


def _run(prog, sched, grids, isa=HOST_ISA):
    src = print_c(lower_openmp(prog, sched, isa))
    name = function_name(prog)
    lib = compile_library(src, name=name, specialised_on={"test": sched.label, "isa": isa})
    fn = getattr(lib.cdll, name)
    fn.argtypes = [ctypes.c_void_p] * len(grids)
    fn(*[g.data.ctypes.data for g in grids])


def _axis_ids(dim):
    from asp_stencil.bench import _axis_ids as ids

    return ids(dim)


KERNELS = [
    ("laplacian-3d", Laplacian, (9, 20, 37), 1, None),
    ("divergence-3d", Divergence, (7, 19, 21), 3, _axis_ids(3)),
    ("heat-2d", Heat, (13, 41), 1, None),
    ("heat-1d", Heat, (50,), 1, None),
]


@requires_compiler
@pytest.mark.parametrize("sched", SCHEDULES, ids=[s.label + f"-p{s.parallel_min_points}"
                                                  for s in SCHEDULES])
@pytest.mark.parametrize("name,cls,shape,n_inputs,nd", KERNELS, ids=[k[0] for k in KERNELS])
def test_schedule_bitwise(name, cls, shape, n_inputs, nd, sched):
    grids = make_grids(shape, n_inputs, neighbor_definition=nd, seed=11)
    k = cls()
    if cls is Heat:
        k.centre = -2.0 * len(shape)
    prog = _prog(k, grids)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    _run(prog, sched, grids)
    assert_bitwise(ref[-1].data, grids[-1].data, what=f"{name} {sched.label}")


@requires_compiler
@pytest.mark.parametrize("name,cls,shape,n_inputs,nd", KERNELS[:3], ids=[k[0] for k in KERNELS[:3]])
def test_vector_rows_bitwise_on_special_values(name, cls, shape, n_inputs, nd):
    """The SIMD rows keep each lane's IEEE operations: ±0, ±inf and NaN come out as in
    Python (negation included: it flips the sign bit), whatever the row's alignment."""
    from asp_stencil.vector import vector_isa, vectorizable

    isa = vector_isa(HOST_ISA)
    if isa is None:
        pytest.skip(f"no x86 vector ISA on this machine ({HOST_ISA})")

    grids = make_grids(shape, n_inputs, neighbor_definition=nd, seed=5, special=True)
    k = cls()
    prog = _prog(k, grids)
    assert all(vectorizable(lp) for lp in prog.body if getattr(lp, "region", "") == "interior")
    src = print_c(lower_openmp(prog, Schedule(nt=True, vec=True, parallel_min_points=1),
                               HOST_ISA))
    assert isa.fn("stream") in src and "buf[" not in src  # straight from registers
    ref = clone_grids(grids)
    k.pure_python(*ref)
    _run(prog, Schedule(nt=True, vec=True, parallel_min_points=1), grids)
    assert_bitwise(ref[-1].data, grids[-1].data, what=f"{name} nt-vec special values")


@requires_compiler
@pytest.mark.parametrize("name,cls,shape,n_inputs,nd", KERNELS[:3], ids=[k[0] for k in KERNELS[:3]])
def test_float32_vector_rows_bitwise_on_special_values(name, cls, shape, n_inputs, nd):
    """float32 kernels get intrinsic rows too (twice the lanes, ``_ps`` operations in float32
    like the scalar code): bitwise equal to Python, special values and negation included."""
    from asp_stencil.vector import vector_isa

    isa = vector_isa(HOST_ISA)
    if isa is None:
        pytest.skip(f"no x86 vector ISA on this machine ({HOST_ISA})")
    grids = make_grids(shape, n_inputs, neighbor_definition=nd, seed=5, special=True,
                       dtypes=(np.float32,) * (n_inputs + 1))
    k = cls()
    prog = _prog(k, grids)
    sched = Schedule(nt=True, vec=True, parallel_min_points=1)
    src = print_c(lower_openmp(prog, sched, HOST_ISA))
    assert isa.single().fn("stream") in src and isa.single().type.base in src
    assert "buf[" not in src and "_pd(" not in src  # straight from float registers
    ref = clone_grids(grids)
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
    _run(prog, sched, grids)
    assert_bitwise(ref[-1].data, grids[-1].data, what=f"{name} float32 nt-vec special values")


#: narrower extensions this machine also runs (AVX-512 machines run AVX and SSE2 code)
_RUNNABLE = [isa for isa, need in ((("avx512f",), "avx512f"), (("avx",), "avx"),
                                   (("sse2",), "sse4_2")) if need in HOST_ISA]


@requires_compiler
@pytest.mark.parametrize("isa", _RUNNABLE or [()], ids=[i[0] for i in _RUNNABLE] or ["none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", [3, 9, 18, 37, 70])
@pytest.mark.parametrize("nt_edges", [False, True], ids=["stored-edges", "nt-edges"])
def test_vector_row_edges_bitwise(isa, dtype, row, nt_edges):
    """A row's unaligned edges (before the first aligned vector and after the last whole one:
    one masked vector each with AVX-512, scalar points otherwise; regular stores, or
    non-temporal scalar stores of just the row's points) cover exactly the row, for every
    vector width this machine runs: rows shorter than a vector, edges of every length, and the
    points next to the ghost cells, which must not be written, all equal to Python."""
    from asp_stencil.vector import vector_isa

    if vector_isa(isa) is None:
        pytest.skip(f"no x86 vector ISA on this machine ({HOST_ISA})")
    grids = make_grids((4, 5, row), 1, seed=row, special=True, dtypes=(dtype,) * 2)
    k = Laplacian()
    prog = _prog(k, grids)
    sched = Schedule(nt=True, vec=True, nt_edges=nt_edges, parallel_min_points=1)
    v = vector_isa(isa)
    v = v if dtype is np.float64 else v.single()
    src = print_c(lower_openmp(prog, sched, isa))
    assert v.fn("stream") in src
    assert (v.fn("mask_storeu") in src) == (v.masked and not nt_edges)
    assert ("asp_stream_lanes(" in src) == (v.masked and nt_edges)
    assert ("asp_stream_point(" in src) == nt_edges
    ref = clone_grids(grids)
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
    _run(prog, sched, grids, isa)
    assert_bitwise(ref[-1].data, grids[-1].data, what=f"{isa} {dtype.__name__} row {row}")


@requires_compiler
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(13, 41), (5, 9, 37)], ids=["2d", "3d"])
def test_nt_edges_next_to_border_loops_bitwise(dtype, shape):
    """Rows whose edges go out as non-temporal scalar stores, on two threads (2-D: neighbouring
    rows, which share an edge line, on different threads), followed by a border loop that
    reads those points back and writes the ghost cells next to them: equal to Python."""
    from asp_stencil import StencilKernel
    from asp_stencil.vector import vector_isa

    class CopiedBorder(StencilKernel):
        centre = -2.0 * len(shape)

        def kernel(self, u, out):
            for x in out.interior_points():
                s = self.centre * u[x]
                for y in u.neighbors(x, 1):
                    s = s + u[y]
                out[x] = s
            for x in out.border_points():
                out[x] = out[out.nearest_interior(x)]

    k = CopiedBorder()
    grids = make_grids(shape, 1, seed=4, dtypes=(dtype,) * 2)
    prog = _prog(k, grids)
    ref = clone_grids(grids)
    k.pure_python(*ref)
    for sched in (Schedule(nt=True, vec=True, nt_edges=True, threads=2, parallel_min_points=1),
                  Schedule(nt=True, nt_edges=True, threads=2, parallel_min_points=1)):
        if vector_isa(HOST_ISA) is not None:
            assert "asp_stream_point(" in print_c(lower_openmp(prog, sched, HOST_ISA))
        test = clone_grids(grids)
        _run(prog, sched, test)
        assert_bitwise(ref[-1].data, test[-1].data, what=f"{sched.label} {shape} {dtype}")


def test_float32_gets_the_same_schedules_as_float64():
    """The tuner times the same variants for a float32 grid far beyond the cache as for the
    float64 one (the guesses are ordered by the output's bytes, and both are large): first the
    rows with non-temporal edges, then those with the edge line prefetched, whose distance
    alone differs, the same bytes ahead being twice the float32 rows."""
    from dataclasses import replace

    from asp_stencil.variants import candidate_schedules

    isa = ("avx512f",)
    f8 = _prog(Laplacian(), make_grids((64, 128, 256), 1, seed=1))
    f4 = _prog(Laplacian(), make_grids((64, 128, 256), 1, seed=1, dtypes=(np.float32,) * 2))
    s4, s8 = candidate_schedules(f4, 1 << 20, 8, isa), candidate_schedules(f8, 1 << 20, 8, isa)
    assert s4[0] == s8[0] == Schedule(nt=True, vec=True, nt_edges=True)
    assert s4[1] == Schedule(nt=True, vec=True, prefetch=4)
    assert s8[1] == Schedule(nt=True, vec=True, prefetch=2)
    assert [replace(s, prefetch=0) for s in s4] == [replace(s, prefetch=0) for s in s8]


def test_vector_rows_only_for_arithmetic():
    """A kernel calling math functions keeps the buffered streaming rows (timed with and
    without non-temporal edges)."""
    from asp_stencil import StencilKernel
    from asp_stencil.vector import vectorizable

    class Root(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                out[x] = math.sqrt(abs(a[x])) - a[x]

    grids = make_grids((6, 8, 40), 1, seed=3)
    prog = _prog(Root(), grids)
    loops = [lp for lp in prog.body if getattr(lp, "region", "") == "interior"]
    assert loops and not any(vectorizable(lp) for lp in loops)
    src = print_c(lower_openmp(prog, Schedule(nt=True, vec=True), ("avx512f",)))
    assert "buf[" in src and "_mm512_loadu_pd(g_" not in src
    # a large output: the buffered rows, their edges streamed by scalar stores or not
    from asp_stencil.variants import candidate_schedules

    big = _prog(Root(), make_grids((80, 70, 100), 1, seed=3))
    scheds = candidate_schedules(big, 1 << 20, isa=("avx2", "avx"))
    assert scheds[:2] == [Schedule(nt=True, nt_edges=True), Schedule(nt=True)]
    assert "asp_stream_point(" in print_c(lower_openmp(big, scheds[0], ("avx2", "avx")))


@requires_compiler
@pytest.mark.parametrize("isa,flag", [(("avx512f",), "-mavx512f"), (("avx2", "avx"), "-mavx2"),
                                      (("sse4_2",), "-msse4.2")])
def test_vector_rows_for_each_x86_isa_compile(isa, flag, tmp_path):
    """Whatever this machine has, the rows for every x86 vector width are valid C for a
    compiler targeting that width (each CI machine runs only its own)."""
    from pytest_asp import assert_valid_c_for_target
    from asp_stencil.vector import vector_isa

    from asp_stencil.variants import candidate_schedules

    grids = make_grids((9, 20, 37), 1, seed=2)
    prog = _prog(Laplacian(), grids)
    src = print_c(lower_openmp(prog, Schedule(nt=True, vec=True), isa))
    v = vector_isa(isa)
    assert f"{v.prefix}_stream_pd" in src and v.type.base in src
    assert_valid_c_for_target(src, flag, tmp_path)
    # every schedule the tuner would time on a large grid of such a machine
    big = _prog(Laplacian(), make_grids((80, 70, 100), 1, seed=2))  # 4.5 MB
    scheds = candidate_schedules(big, 1 << 20, max_variants=8, isa=isa)
    assert scheds[0] == Schedule(nt=True, vec=True, nt_edges=True) and len(scheds) >= 5
    assert Schedule(nt=True, vec=True, prefetch=5) in scheds  # 800 B rows
    for sched in scheds:
        assert_valid_c_for_target(print_c(lower_openmp(big, sched, isa)), flag, tmp_path)
    f4 = _prog(Laplacian(), make_grids((9, 20, 37), 1, seed=2, dtypes=(np.float32,) * 2))
    src = print_c(lower_openmp(f4, Schedule(nt=True, vec=True), isa))
    assert f"{v.prefix}_stream_ps" in src and v.single().type.base in src
    assert_valid_c_for_target(src, flag, tmp_path)


def test_no_streaming_off_x86():
    """Without x86 intrinsics (e.g. aarch64) a streaming schedule lowers to plain stores."""
    grids = make_grids((9, 20, 37), 1, seed=2)
    prog = _prog(Laplacian(), grids)
    src = print_c(lower_openmp(prog, Schedule(nt=True, vec=True), ("neon", "asimd")))
    assert "_stream_pd" not in src and "immintrin.h" not in src


@requires_compiler
def test_a_cold_cache_compiles_every_variant_at_the_first_call(monkeypatch, tmp_path):
    """The tuner's next calls must run variants, not wait for gcc (a new process would need
    more calls to reach a warm one's speed)."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))  # the cache follows it on each call
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    k = Laplacian()
    grids = make_grids((40, 41, 42), 1, seed=1)
    k.kernel(*grids)
    ctx = k.kernel.last_context
    variants = [e[1]["names"] for e in ctx.events if e[0] == "variants"][-1]
    compiled = {c.variant for c in ctx.compiles}
    assert len(variants) > 1 and compiled == set(variants)
    n = len(ctx.compiles)
    for _ in range(3 * len(variants)):
        k.kernel(*grids)
    later = ctx.compiles[n:]
    assert later and all(c.cached for c in later)  # loaded from the cache, no compiler run


@requires_compiler
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kernel_sources(max_depth=2), st.integers(1, 40), st.sampled_from(["f4", "f8"]))
def test_random_kernels_in_vector_rows_match_python(case, row, dtype):
    """Random kernels through the intrinsic rows (masked head and tail vectors with AVX-512,
    with and without the tail-line prefetch, edges streamed by scalar stores), on rows of every length up to two vectors past a
    float32 vector and both float dtypes: bitwise equal to Python on every grid."""
    source, dim, n_inputs, ghost, custom = case
    if dim < 2:
        reject()
    k = load_kernel(source)()
    shape = [3 + 2 * ghost + (i % 2) for i in range(dim - 1)] + [row + 2 * ghost]
    dt = np.float32 if dtype == "f4" else np.float64
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, seed=len(source) + row,
                       neighbor_definition=default_neighbor_definition(dim) + [custom],
                       dtypes=(dt,) * (n_inputs + 1))
    ref = clone_grids(grids)
    try:
        with np.errstate(all="ignore"):
            k.pure_python(*ref)
    except (ArithmeticError, ValueError, TypeError):
        reject()
    try:
        prog = _prog(k, grids)
    except Exception:  # noqa: BLE001 - a kernel asp refuses (tested elsewhere) has no rows
        reject()
    for sched in (Schedule(nt=True, vec=True, parallel_min_points=1),
                  Schedule(nt=True, vec=True, prefetch=2, parallel_min_points=1),
                  Schedule(nt=True, vec=True, nt_edges=True, parallel_min_points=1)):
        test = clone_grids(grids)
        with np.errstate(all="ignore"):
            _run(prog, sched, test)
        for i, (a, b) in enumerate(zip(ref, test)):
            assert_bitwise(a.data, b.data, what=f"grid {i}, {sched.label}, {dtype}\n{source}")


class _Scale(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 0.5


@requires_compiler
@pytest.mark.parametrize("why", ["autotune off", "stored winner"])
def test_a_cold_code_cache_compiles_only_the_variant_that_will_run(why, tmp_path, monkeypatch):
    """With no timing to come (tuning off, or a winner stored in the tuning database while the
    code cache is empty: a cleared cache, another node), the first call compiled every variant
    the tuner would have timed, and waited for them."""
    import shutil

    from asp_core.cache import CodeCache
    from asp_core.cli.maintenance import entries

    root = tmp_path / "cache"
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    u, out = StencilGrid([64, 64]), StencilGrid([64, 64])
    k = _Scale()
    if why == "autotune off":
        monkeypatch.setenv("ASP_AUTOTUNE", "off")
    else:
        monkeypatch.setenv("ASP_AUTOTUNE", "always")
        for _ in range(60):
            k.kernel(u, out)
        assert k.kernel.tuned(k.kernel.keys()[0]) is not None
        shutil.rmtree(root / "code")
        monkeypatch.setenv("ASP_AUTOTUNE", "once")
        k = _Scale()
    k.kernel(u, out)
    assert len(entries(CodeCache(root))) == 1
