"""Structure of the DAST after each domain pass, and of the generated C (nothing compiled)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from asp_core.cast import print_c
from asp_core.context import SpecializationContext
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil import dast as D
from asp_stencil.frontend import StencilFrontend
from asp_stencil.openmp import lower_openmp
from asp_stencil.passes import (constant_folding, cse, linear_detection, output_forwarding,
                                unroll_neighbors)
from asp_stencil.schedule import Schedule
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids
from asp_stencil.variants import candidate_schedules
from pytest_asp import requires_compiler


class Fig2(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


class Scaled(StencilKernel):
    c = 0.5
    n = 2

    def kernel(self, u, out):
        w = self.c * self.n + 1
        for x in out.interior_points():
            t = u[x] * 2 * 3
            out[x] = t * w + (u[x] + 1.0) * (u[x] + 1.0)
            for y in u.neighbors(x, 1):
                out[x] += u[y] / 4 + math.sqrt(4.0)


class Seidel(StencilKernel):
    def kernel(self, rhs, out):
        for x in out.interior_points():
            s = rhs[x]
            for y in out.neighbors(x, 1):
                s = s + out[y]
            out[x] = s * 0.25


def _parse(cls, shape=(6, 7), n=2):
    grids = [StencilGrid(shape) for _ in range(n)]
    k = cls()
    ctx = SpecializationContext("stencil", cls.kernel.func.__get__(k), tuple(grids), {}, k, {},
                                None, cls.__name__)
    return StencilFrontend().parse(ctx), ctx


def _loop(prog):
    return next(s for s in prog.body if isinstance(s, D.PointLoop))


def test_frontend_builds_neighbor_loop():
    prog, _ = _parse(Fig2)
    loop = _loop(prog)
    assert loop.region == "interior" and loop.grid == "out_grid"
    (nl,) = loop.body
    assert isinstance(nl, D.NeighborLoop) and nl.nid == 1 and nl.grid == "in_grid"
    (st,) = nl.body
    assert st == D.Store("out_grid", D.PointExpr(None, (0, 0)), D.BinOp(
        "+", D.Read("out_grid", D.PointExpr(None, (0, 0))), D.Read("in_grid", D.PointExpr("y", (0, 0)))))


def test_unroll_gives_one_statement_per_offset_in_definition_order():
    prog, ctx = _parse(Fig2)
    loop = _loop(unroll_neighbors(prog, ctx))
    offsets = [D.reads(s.value)[1].at.offset for s in loop.body]
    assert offsets == [(1, 0), (-1, 0), (0, 1), (0, -1)]
    assert all(not isinstance(s, D.NeighborLoop) for s in loop.body)


def test_constant_folding_uses_attributes_and_keeps_order():
    prog, ctx = _parse(Scaled)
    prog = constant_folding(unroll_neighbors(prog, ctx), ctx)
    loop = _loop(prog)
    assert not any(isinstance(s, D.Assign) and s.target == "w" for s in prog.body)
    t = loop.body[0]
    # (u[x] * 2) * 3 is NOT reassociated to u[x] * 6
    assert t.value == D.BinOp("*", D.BinOp("*", D.Read("u", D.PointExpr(None, (0, 0))), D.Const(2)),
                              D.Const(3))
    # w = 0.5 * 2 + 1 = 2.0 was substituted, sqrt(4.0) folded to 2.0
    assert D.Const(2.0) in list(D.expr_nodes(loop.body[1].value))
    assert not any(isinstance(n, (D.Attr, D.Call)) for n in D.expr_nodes(loop))


def test_output_forwarding_single_store_and_no_load_when_written_first():
    prog, ctx = _parse(Scaled)
    prog = output_forwarding(constant_folding(unroll_neighbors(prog, ctx), ctx), ctx)
    loop = _loop(prog)
    stores = [s for s in loop.body if isinstance(s, D.Store)]
    assert len(stores) == 1 and stores[0] is loop.body[-1]
    assert not any(r.grid == "out" for r in D.reads(loop))
    assert not loop.sequential


class TwoStage(StencilKernel):
    def kernel(self, u, tmp, out):
        for x in tmp.interior_points():
            tmp[x] = u[x] * 0.5
        for x in out.interior_points():
            s = tmp[x]
            for y in tmp.neighbors(x, 1):
                s = s - tmp[y] * 0.25
            out[x] = s


def test_a_grid_an_earlier_loop_wrote_read_at_a_neighbour_keeps_the_loop_parallel():
    """Loop 2 reads ``tmp``, complete once loop 1 ended, at neighbours: its points are
    independent.  It was marked Gauss-Seidel (any written grid counted): OpenMP ran it on one
    thread and CUDA refused the kernel."""
    from asp_stencil.cuda.lowering import unsupported_reason

    prog, ctx = _parse(TwoStage, (23, 70), n=3)
    prog = output_forwarding(unroll_neighbors(prog, ctx), ctx)
    assert [loop.sequential for loop in prog.body if isinstance(loop, D.PointLoop)] == \
        [False, False]
    assert unsupported_reason(prog) is None


@requires_compiler
def test_gauss_seidel_stays_sequential_with_output_forwarding_disabled(monkeypatch):
    """The pass that forwarded stores also marked Gauss-Seidel loops: disabling it ran them in
    parallel, racing (results differed from Python).  ``sequential`` comes from the body."""
    monkeypatch.setenv("ASP_DISABLE_PASSES", "output-forwarding")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    prog, ctx = _parse(Seidel)
    assert _loop(unroll_neighbors(prog, ctx)).sequential
    grids = make_grids((300, 300), 1, seed=2)
    ref = clone_grids(grids)
    Seidel().pure_python(*ref)
    Seidel().kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)


class NeumannAfterStore(StencilKernel):
    def kernel(self, u, out):
        for x in u.border_points():
            out[x] = u[x] * 2.0
            out[x] = out[out.nearest_interior(x)] + 1.0


@requires_compiler
def test_a_nearest_interior_read_of_the_point_just_stored_sees_the_store():
    """``out`` has a smaller ghost depth than the loop's grid, so ``out.nearest_interior(x)``
    is ``x`` at some border points: the read must see the value just stored there (forwarding
    had deferred the store past it)."""
    u, out = StencilGrid([8], ghost_depth=2), StencilGrid([8], ghost_depth=1)
    u.data[...] = np.arange(8.0)
    out.data[...] = -100.0
    ref = clone_grids([u, out])
    NeumannAfterStore().pure_python(*ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # compiled, not a fallback
        NeumannAfterStore().kernel(u, out)
    np.testing.assert_array_equal(ref[1].data, [-99, 3, -100, -100, -100, -100, 13, 14])
    assert_bitwise(ref[1].data, out.data)


def test_output_read_at_neighbour_makes_loop_sequential():
    prog, ctx = _parse(Seidel)
    prog = output_forwarding(unroll_neighbors(prog, ctx), ctx)
    assert _loop(prog).sequential
    src = print_c(lower_openmp(linear_detection(prog, ctx)))
    assert "omp" not in src.split("void asp_stencil")[1]


def test_cse_computes_repeated_subexpression_once():
    prog, ctx = _parse(Scaled)
    prog = cse(output_forwarding(constant_folding(unroll_neighbors(prog, ctx), ctx), ctx), ctx)
    loop = _loop(prog)
    u1 = D.BinOp("+", D.Read("u", D.PointExpr(None, (0, 0))), D.Const(1.0))
    defs = [s for s in loop.body if isinstance(s, D.Assign) and s.value == u1]
    assert len(defs) == 1 and defs[0].target.startswith("_cse")
    uses = sum(1 for n in D.expr_nodes(loop) if n == D.Var(defs[0].target))
    assert uses == 2


def test_linear_detection_coefficients():
    prog, ctx = _parse(Fig2)
    prog = linear_detection(output_forwarding(unroll_neighbors(prog, ctx), ctx), ctx)
    (info,) = prog.info["loops"]
    assert info["linear"] and info["reads_output"]
    assert info["coefficients"] == {("out_grid", (0, 0)): 1, ("in_grid", (1, 0)): 1,
                                    ("in_grid", (-1, 0)): 1, ("in_grid", (0, 1)): 1,
                                    ("in_grid", (0, -1)): 1}
    prog2, ctx2 = _parse(Scaled)
    prog2 = linear_detection(output_forwarding(constant_folding(unroll_neighbors(prog2, ctx2),
                                                                ctx2), ctx2), ctx2)
    assert not prog2.info["loops"][0]["linear"]  # (u+1)*(u+1) is quadratic


def test_lowering_structure_and_schedules():
    from asp_stencil.domain import StencilDomainOptimizer

    prog, ctx = _parse(Fig2, shape=(300, 300))
    prog = StencilDomainOptimizer().optimize(prog, ctx)
    plain = print_c(lower_openmp(prog, Schedule()))
    assert "#pragma omp parallel for schedule(static)" in plain
    assert "#pragma omp simd" in plain
    assert "_mm512_stream_pd" not in plain
    nt = print_c(lower_openmp(prog, Schedule(nt=True), ("avx512f",)))
    assert "_mm512_stream_pd" in nt and "_mm_sfence" in nt and "aligned(64)" in nt
    nt2 = print_c(lower_openmp(prog, Schedule(nt=True), ("avx2",)))
    assert "_mm256_stream_pd" in nt2
    t1 = print_c(lower_openmp(prog, Schedule(threads=1)))
    assert "omp parallel" not in t1
    small, ctx = _parse(Fig2, shape=(6, 7))
    small = StencilDomainOptimizer().optimize(small, ctx)
    assert "omp parallel" not in print_c(lower_openmp(small, Schedule()))


def test_candidate_schedules_prefer_streaming_for_large_write_only_outputs():
    from asp_stencil.bench import Laplacian
    from asp_stencil.domain import StencilDomainOptimizer

    grids = [StencilGrid((256, 256, 256)) for _ in range(2)]
    k = Laplacian()
    ctx = SpecializationContext("stencil", Laplacian.kernel.func.__get__(k), tuple(grids), {}, k,
                                {}, None, "Laplacian")
    prog = StencilDomainOptimizer().optimize(StencilFrontend().parse(ctx), ctx)
    scheds = candidate_schedules(prog, 32 << 20, isa=("avx2", "avx"))
    assert scheds[0].nt and scheds[0].vec and len(scheds) == len(set(scheds)) <= 5
    assert not any(s.nt for s in candidate_schedules(prog, 32 << 20, isa=("neon",)))
    assert any(not s.nt for s in scheds) and any(s.omp_schedule != "static" for s in scheds)
    assert not any(s.threads == 1 for s in scheds)  # 16M points: always both cores
    fig, ctx2 = _parse(Fig2, shape=(2000, 2000))
    fig = StencilDomainOptimizer().optimize(fig, ctx2)
    assert not candidate_schedules(fig, 32 << 20, isa=("avx",))[0].nt  # reads its output: no streaming first
    # a VM reporting its host's 480 MiB L3: regular stores first, but nt-vec is still timed
    vm = candidate_schedules(prog, 480 << 20, isa=("avx512f",))
    assert not vm[0].nt and Schedule(nt=True, vec=True, nt_edges=True) in vm


def test_usable_cache_caps_a_host_l3_reported_to_a_vm():
    from types import SimpleNamespace

    from asp_stencil.variants import usable_cache

    assert usable_cache(SimpleNamespace(last_level_cache=480 << 20, physical_cores=2)) == 16 << 20
    assert usable_cache(SimpleNamespace(last_level_cache=16 << 20, physical_cores=2)) == 16 << 20


def test_unlowered_nodes_are_refused():
    from asp_stencil.lower_c import ExprLowering, NotLowered

    low = ExprLowering(lambda r: None)
    with pytest.raises(NotLowered):
        low(D.Attr("c", 1.0))
    with pytest.raises(NotLowered):
        low(D.Read("u", D.PointExpr("y", (0,))))


class ReadAfterStore(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0
            a = out[x] * 3.0
            out[x] = u[x] + 1.0
            b = out[x] * 3.0
            out[x] = a + b


@requires_compiler
def test_cse_does_not_reuse_a_read_across_a_store_to_its_grid(monkeypatch):
    """With output-forwarding disabled, cse merged ``out[x] * 3.0`` before a store to ``out``
    with the same text after it (wrong results on every platform)."""
    monkeypatch.setenv("ASP_DISABLE_PASSES", "output-forwarding")
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((6, 7), 1, seed=4)
    ref = clone_grids(grids)
    ReadAfterStore().pure_python(*ref)
    ReadAfterStore().kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)



class Pointwise(StencilKernel):
    """No neighbour loop, attribute or distance: compiles with any pass disabled."""

    def kernel(self, u, out):
        for x in out.interior_points():
            t = u[x] * 2.0
            out[x] = t * t + 1.0


_PASSES = ["unroll-neighbors", "constant-folding", "output-forwarding", "dead-locals", "cse",
           "linear-detection", "type-check"]
_DISABLED = [[p] for p in _PASSES] + [["output-forwarding", "dead-locals", "cse"],
                                      ["constant-folding", "type-check"], _PASSES]


def _in_python(run):
    from asp_stencil.differential import env

    with env(ASP_MODE="python"):
        run()


@requires_compiler
@pytest.mark.parametrize("disabled", _DISABLED, ids=",".join)
def test_a_disabled_pass_keeps_python_results_or_falls_back_naming_it(disabled, monkeypatch):
    """With any passes disabled, call and iterate equal Python bit for bit, and a kernel that
    runs in Python says which disabled pass it needs: with ``constant-folding`` and what
    followed it disabled, every platform declined a program still holding attributes (or, with
    ``unroll-neighbors``, neighbour loops) and the kernel ran in Python without a warning."""
    from asp_core import SpecializationWarning

    monkeypatch.setenv("ASP_DISABLE_PASSES", ",".join(disabled))
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "off")
    for cls in (Scaled, Seidel, Pointwise):
        grids = make_grids((6, 7), 1, seed=5)
        ref, swept, swept_ref = clone_grids(grids), clone_grids(grids), clone_grids(grids)
        _in_python(lambda: (cls().kernel(*ref), cls().iterate(*swept_ref, steps=3)))
        k = cls()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            k.kernel(*grids)
            k.iterate(*swept, steps=3)
        for a, b in zip(ref + swept_ref, grids + swept):
            assert_bitwise(a.data, b.data, what=f"{cls.__name__} without {disabled}")
        reasons = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
        if reasons and cls is not Pointwise:
            assert any(f"pass {p!r} of 'stencil-domain' is disabled" in reasons[0]
                       for p in disabled), reasons
        else:
            chosen = k.kernel.last_context.decision("platform_selection")
            assert chosen.choice != "python", f"{cls.__name__} silently in Python"
