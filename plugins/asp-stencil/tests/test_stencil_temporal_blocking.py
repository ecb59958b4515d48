"""Temporal blocking: blocked ``iterate`` equals T plain sweeps exactly (both ping-pong grids).

Differential tests against the pure-Python kernel for T = 1, 2, 3, 7, 64 on 1-D, 2-D and 3-D
grids whose sizes are not multiples of the block sizes, with several tuning points each (block
depth K, chunk B0, tile B1, including degenerate and oversized ones); the plan's refusals; the
autotuner and its perf database; bad input; and random kernels from the hypothesis strategy.
"""

from __future__ import annotations

import math
from dataclasses import replace
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from asp_core.components import Variant
from asp_core.errors import Unspecializable
from asp_core.hardware import query
from asp_core.toolchain import find_toolchain
from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.bench import Heat, Laplacian
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.temporal import temporal_plan, temporal_source
from asp_stencil.temporal.backend import TemporalBackend, has_wide_engine
from asp_stencil.temporal.platform import PLATFORM
from asp_stencil.temporal.runner import get_iterator
from asp_stencil.temporal.rows import xshiftable
from asp_stencil.temporal.variants import (TemporalParams, candidate_params, ring_bytes,
                                           wide_engine)
from asp_stencil.testing import assert_bitwise, clone_grids, kernel_sources, load_kernel, make_grids

#: NumPy's warning when a complex value is stored into a float array (Python went complex)
_COMPLEX_WARNING = getattr(getattr(np, "exceptions", np), "ComplexWarning")


class Heat1D(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 0.5
            for y in u.neighbors(x, 1):
                out[x] = out[x] + 0.25 * u[y]


class Wide2(StencilKernel):
    """Radius-2 star (ghost depth 2) with a conditional and a math call."""

    def kernel(self, u, out):
        for x in out.interior_points():
            acc = 0.0
            for y in u.neighbors(x, 1):
                for z in u.neighbors(y, 1):
                    acc = acc + u[z] * 0.0625
            out[x] = acc if acc > 0 else math.sqrt(abs(acc)) * 0.01


class Reach2(StencilKernel):
    """Radius-2 star (ghost depth 2), plain arithmetic: reads two points away along x."""

    def kernel(self, u, out):
        for x in out.interior_points():
            acc = -u[x]
            for y in u.neighbors(x, 1):
                for z in u.neighbors(y, 1):
                    acc = acc + u[z] * 0.0625 - u[y] / 16.0
            out[x] = acc


class InteriorAndBorder(StencilKernel):
    """Writes every point: the border from the state at the point itself."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 0.6
            for y in u.neighbors(x, 1):
                out[x] = out[x] + 0.1 * u[y]
        for x in out.border_points():
            out[x] = u[x] * 0.5 + 1.0


class BorderOnly(StencilKernel):
    def kernel(self, u, out):
        for x in out.border_points():
            out[x] = u[x] * -0.5 + 0.25


class VariableCoefficient(StencilKernel):
    """A constant coefficient field (first input) read at neighbours; the state is second."""

    def kernel(self, kappa, u, out):
        s0 = 0.2
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y] * kappa[y]
            out[x] = u[x] + s0 * s


class Figure2(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


class GaussSeidel(StencilKernel):
    def kernel(self, rhs, out):
        for x in out.interior_points():
            s = rhs[x]
            for y in out.neighbors(x, 1):
                s = s + out[y]
            out[x] = s * 0.25


def _laplacian() -> Laplacian:
    k = Laplacian()
    k.inv_h2 = 0.1
    return k


def _heat(dim: int) -> Heat:
    k = Heat()
    k.centre = -2.0 * dim
    return k


CASES = [
    # name, kernel factory, shape, inputs, ghost depth
    ("heat-1d", Heat1D, (41,), 1, 1),
    ("heat-2d", lambda: _heat(2), (23, 19), 1, 1),
    ("heat-3d", lambda: _heat(3), (11, 13, 9), 1, 1),
    ("laplacian-3d", _laplacian, (13, 10, 11), 1, 1),
    ("wide2-2d", Wide2, (17, 14), 1, 2),
    ("wide2-3d", Wide2, (12, 23, 11), 1, 2),
    ("interior-border-3d", InteriorAndBorder, (9, 11, 10), 1, 1),
    ("interior-border-2d-gd2", InteriorAndBorder, (15, 13), 1, 2),
    ("border-only-2d", BorderOnly, (9, 8), 1, 1),
    ("varcoef-2d", VariableCoefficient, (19, 17), 2, 1),
    ("varcoef-3d", VariableCoefficient, (9, 14, 10), 2, 1),
    # rows long enough for several vectors of x-shifted rows and their masked tails
    ("heat-3d-long-rows", lambda: _heat(3), (6, 7, 61), 1, 1),
    ("reach2-3d-long-rows", Reach2, (7, 9, 53), 1, 2),
    ("heat-1d-long-rows", Heat1D, (97,), 1, 1),
    ("varcoef-3d-long-rows", VariableCoefficient, (5, 6, 45), 2, 1),
    ("interior-border-2d-long-rows", InteriorAndBorder, (9, 70), 1, 1),
]

PARAMS = [TemporalParams(3, 4, 3), TemporalParams(5, 3, 2), TemporalParams(7, 100, 100),
          TemporalParams(9, 1, 1), TemporalParams(4, 5, 7), TemporalParams(1, 2, 2),
          TemporalParams(3, 4, 3, 1), TemporalParams(7, 100, 100, 1), TemporalParams(1, 2, 2, 1),
          # the full-width engine (AVX-512 builds; elsewhere the library runs the default one)
          TemporalParams(3, 4, 3, 0, 1), TemporalParams(5, 3, 2, 1, 1),
          TemporalParams(7, 100, 100, 0, 1),
          # row segments (planes of one row: 1-D and 2-D; 3-D runs whole rows)
          TemporalParams(5, 3, 1, B2=4), TemporalParams(7, 100, 100, 1, 1, B2=5),
          TemporalParams(9, 1, 1, B2=1), TemporalParams(3, 4, 3, 0, 1, B2=3),
          TemporalParams(11, 2, 1, 1, 0, B2=7),
          # rows skewed level by level (3-D and any kernel reading other rows of a plane)
          TemporalParams(5, 3, 2, SK=1), TemporalParams(7, 100, 100, 1, 1, SK=1),
          TemporalParams(9, 1, 1, SK=1), TemporalParams(3, 4, 3, 0, 1, B2=3, SK=1),
          # wavefront tiles: tiles too narrow for the depth (K is lowered), one tile, ragged
          # last tiles, streaming stores, B2 and SK ignored
          TemporalParams(3, 4, 3, WT=1), TemporalParams(5, 3, 2, 1, 0, WT=1),
          TemporalParams(7, 100, 100, 0, 1, WT=1), TemporalParams(9, 1, 1, WT=1),
          TemporalParams(5, 5, 7, 1, 1, WT=1), TemporalParams(7, 2, 9, 0, 1, B2=3, SK=1, WT=1),
          TemporalParams(5, 3, 2, SK=1, WT=1), TemporalParams(9, 100, 100, 1, 1, SK=1, WT=1),
          TemporalParams(5, 4, 5, 0, 1, SK=1, WT=1),
          TemporalParams(11, 3, 12, 1, 1, WT=1),
          # two rows per pass (JM=1: rows y, y + 1; JM=2: planes p, p + 1): odd and even row
          # and plane counts per tile and chunk, with every other axis
          TemporalParams(3, 4, 3, JM=2), TemporalParams(5, 3, 2, 1, 1, JM=2),
          TemporalParams(7, 100, 100, 0, 1, B2=5, JM=2), TemporalParams(1, 2, 2, 1, JM=2),
          TemporalParams(5, 3, 2, SK=1, JM=2), TemporalParams(5, 5, 7, 1, 1, WT=1, JM=2),
          TemporalParams(9, 1, 1, WT=1, JM=2), TemporalParams(11, 3, 12, 1, 1, WT=1, JM=2),
          TemporalParams(5, 4, 5, 0, 1, SK=1, WT=1, JM=2), TemporalParams(9, 2, 3, WT=1, JM=2),
          TemporalParams(3, 4, 3, JM=1), TemporalParams(5, 3, 2, 1, 1, JM=1),
          TemporalParams(7, 100, 100, 0, 1, B2=5, JM=1), TemporalParams(1, 2, 2, 1, JM=1),
          TemporalParams(5, 3, 2, SK=1, JM=1), TemporalParams(5, 5, 7, 1, 1, WT=1, JM=1),
          TemporalParams(9, 1, 1, WT=1, JM=1), TemporalParams(11, 3, 12, 1, 1, WT=1, JM=1),
          TemporalParams(5, 4, 5, 0, 1, SK=1, WT=1, JM=1),
          # x-shifted rows of the full-width engine (register lane shifts for x-neighbours):
          # whole rows, segments, skewed, wavefront tiles, both jams
          TemporalParams(3, 4, 3, 0, 2), TemporalParams(5, 3, 2, 1, 2),
          TemporalParams(7, 100, 100, 0, 2, B2=5), TemporalParams(5, 3, 2, 0, 2, SK=1),
          TemporalParams(7, 100, 100, 1, 2, WT=1), TemporalParams(5, 5, 7, 1, 2, WT=1, JM=2),
          TemporalParams(9, 2, 3, 0, 2, WT=1, JM=2), TemporalParams(5, 3, 2, 1, 2, JM=1),
          TemporalParams(1, 2, 2, 0, 2, JM=1)]


def _reference(k, grids, steps):
    gs = list(grids)
    with np.errstate(all="ignore"):
        for _ in range(steps):
            k.pure_python(*gs)
            gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs[-2]


class AnyPoint:
    """Any tuning point of ``k``'s blocked library for ``grids``: phases 1-4 through the
    dispatcher, then phase 5's backend binds the point asked for (phase 4 proposes only some;
    without a full-width engine the default width runs)."""

    def __init__(self, k, grids):
        self.variants = k.kernel.variants_for(PLATFORM, *grids)
        self.program = self.variants.variant(next(iter(self.variants))).program
        self.wide = wide_engine(tuple(query().isa), find_toolchain("c").family)

    def run(self, grids, steps, tp):
        tp = tp if self.wide else replace(tp, W=0)
        variant = Variant(tp.label, self.program, tp.as_dict())
        TemporalBackend().build(variant, self.variants.context)(*grids, steps=steps)


@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,make,shape,n_inputs,ghost", CASES, ids=[c[0] for c in CASES])
def test_blocked_equals_python_sweeps(name, make, shape, n_inputs, ghost):
    k = make()
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, seed=5)
    it = AnyPoint(k, tuple(grids))
    for steps in (1, 2, 3, 7, 64):
        ref = clone_grids(grids)
        _reference(k, ref, steps)
        for tp in PARAMS:
            test = clone_grids(grids)
            it.run(tuple(test), steps, tp)
            for r, t in zip(ref, test):
                assert_bitwise(r.data, t.data, what=f"{name} T={steps} {tp.label}")


@requires_compiler
def test_blocked_run_leaves_the_result_where_plain_sweeps_do():
    k = _heat(2)
    for steps in (0, 1, 4, 5):
        grids = make_grids((14, 15), 1, seed=steps)
        ref = clone_grids(grids)
        _reference(k, ref, steps)
        AnyPoint(k, tuple(grids)).run(tuple(grids), steps, TemporalParams(3, 4, 1))
        for r, t in zip(ref, grids):
            assert_bitwise(r.data, t.data, what=f"T={steps}")


@requires_compiler
def test_long_blocked_runs_go_through_the_interruptible_worker(monkeypatch):
    """A long blocked run waits where Ctrl-C reaches the user, on the arrays it checked."""
    from asp_core import interrupt

    calls = []
    real = interrupt.call

    def spy(fn, *args, keep=None):
        calls.append(keep)
        return real(fn, *args, keep=keep)

    monkeypatch.setattr(interrupt, "MIN_WORK", 1)
    monkeypatch.setattr(interrupt, "call", spy)
    k = _heat(2)
    grids = make_grids((14, 15), 1, seed=3)
    ref = clone_grids(grids)
    _reference(k, ref, 5)
    AnyPoint(k, tuple(grids)).run(tuple(grids), 5, TemporalParams(3, 4, 1))
    for r, t in zip(ref, grids):
        assert_bitwise(r.data, t.data, what="T=5 through the worker")
    assert len(calls) == 1 and all(a is g.data for a, g in zip(calls[0], grids))


@requires_compiler
def test_special_values_propagate_identically():
    k = _laplacian()
    grids = make_grids((12, 9, 10), 1, seed=3, special=True)
    ref = clone_grids(grids)
    _reference(k, ref, 7)
    it = AnyPoint(k, tuple(grids))
    it.run(tuple(grids), 7, TemporalParams(3, 5, 4))
    for r, t in zip(ref, grids):
        assert_bitwise(r.data, t.data)


# -- when blocking does not apply ---------------------------------------------------------------

@pytest.mark.parametrize("cls,needle", [(Figure2, "reads the output"),
                                        (GaussSeidel, "sequential")])
def test_plan_refuses_with_reason(cls, needle):
    prog = cls().kernel.analyse(*make_grids((8, 9), 1))[1]
    reason = temporal_plan(prog)
    assert isinstance(reason, str) and needle in reason
    assert needle in get_iterator(cls(), tuple(make_grids((8, 9), 1)))


def test_plan_refuses_different_state_and_output():
    a = StencilGrid((8, 9), ghost_depth=1)
    b = StencilGrid((8, 9), ghost_depth=2)
    prog = _heat(2).kernel.analyse(a, b)[1]
    assert "differ" in temporal_plan(prog)


def test_plan_geometry():
    prog = Wide2().kernel.analyse(*make_grids((17, 14), 1, ghost_depth=2))[1]
    plan = temporal_plan(prog)
    assert plan.shape == (17, 1, 14) and plan.ghost == (2, 0, 2) and plan.radius == (2, 0, 2)
    assert plan.coverage == "interior" and plan.untouched == "border"
    prog = InteriorAndBorder().kernel.analyse(*make_grids((5, 6, 7), 1))[1]
    assert temporal_plan(prog).coverage == "all"
    src = temporal_source(prog, temporal_plan(prog))
    assert "#pragma omp simd" in src and "asp_block" in src


# -- tuning ------------------------------------------------------------------------------------

def test_candidates_fit_cache_and_are_odd_depths():
    prog = _heat(3).kernel.analyse(*make_grids((40, 50, 60), 1))[1]
    plan = temporal_plan(prog)
    cands = candidate_params(plan, threads=2, l2_bytes=1 << 20, max_variants=6)
    assert 1 <= len(cands) <= 6 and len(set(cands)) == len(cands)
    assert all(c.K % 2 == 1 and c.K >= 3 for c in cands)
    prog2 = _heat(2).kernel.analyse(*make_grids((4000, 4000), 1))[1]
    cands2 = candidate_params(temporal_plan(prog2), threads=2, l2_bytes=1 << 20)
    assert all(c.B1 == 1 and c.B0 >= 1 for c in cands2)


def test_candidates_offer_both_vector_widths_only_where_the_library_has_two():
    plan = temporal_plan(_heat(3).kernel.analyse(*make_grids((64, 64, 64), 1))[1])
    narrow = candidate_params(plan, threads=2, l2_bytes=1 << 20)
    assert not any(c.W for c in narrow)
    both = candidate_params(plan, threads=2, l2_bytes=1 << 20, wide=True)
    assert len(set(both)) == len(both) <= 12
    assert {c.W for c in both} == {0, 1} and any(c.NT for c in both)
    # the same geometries are timed in both widths
    geo = {(c.K, c.B0, c.B1) for c in both if not c.W}
    assert geo <= {(c.K, c.B0, c.B1) for c in both if c.W}
    # 3-D proposes several tile shapes, not one depth ladder of the same tile
    assert len({(c.B0, c.B1) for c in both}) >= 3
    # rows skewed level by level, timed against unskewed ones; not where a plane is one row
    assert {c.SK for c in both} == {0, 1}
    plan2 = temporal_plan(_heat(2).kernel.analyse(*make_grids((300, 300), 1))[1])
    assert not any(c.SK for c in candidate_params(plan2, threads=2, wide=True))
    # wavefront tiles (3-D), timed against overlapped tiles, deep enough for their tile, one
    # or two chunks of planes per thread; never where a plane is one row
    assert {c.WT for c in both} == {0, 1}
    assert all(c.K * plan.radius[1] <= c.B1 and c.B0 in (32, 16) for c in both if c.WT)
    assert any(c.WT and c.NT for c in both)
    assert not any(c.WT for c in candidate_params(plan2, threads=2, wide=True))


def test_x_shifted_rows_are_timed_besides_the_others_where_the_kernel_has_them():
    prog = _heat(3).kernel.analyse(*make_grids((64, 64, 64), 1))[1]
    plan = temporal_plan(prog)
    assert xshiftable(prog, plan)
    both = candidate_params(plan, threads=2, l2_bytes=1 << 20, wide=True)
    shifted = candidate_params(plan, threads=2, l2_bytes=1 << 20, wide=True, xshift=True)
    # every candidate as before, then x-shifted copies of some of them (the jams among them)
    # and deeper jams whose rings fit twice the L2
    assert shifted[:len(both)] == both and not any(c.W == 2 for c in both)
    extra = shifted[len(both):]
    assert extra and all(c.W == 2 for c in extra) and len(set(shifted)) == len(shifted)
    copies = [c for c in extra if replace(c, W=1) in both]
    assert any(c.JM == 2 for c in copies)
    deeper = [c for c in extra if c not in copies]
    assert deeper and all(c.JM == 2 and c.WT and c.K >= 7 and ring_bytes(plan, c) <= 2 << 20
                          for c in deeper)
    assert not any(c.W == 2 for c in candidate_params(plan, threads=2, xshift=True))
    # a conditional and a math call: no x-shifted rows, so none proposed
    wide2 = Wide2().kernel.analyse(*make_grids((16, 16, 40), 1, ghost_depth=2))[1]
    assert not xshiftable(wide2, temporal_plan(wide2))
    assert xshiftable(*(lambda p: (p, temporal_plan(p)))(
        Reach2().kernel.analyse(*make_grids((16, 16, 40), 1, ghost_depth=2))[1]))
    assert "-wx" in replace(both[0], W=2).label


def test_wavefront_tile_rings_fit_the_per_core_cache():
    plan = temporal_plan(_heat(3).kernel.analyse(*make_grids((256, 256, 256), 1))[1])
    l2 = 2 << 20
    wt = [c for c in candidate_params(plan, threads=2, l2_bytes=l2, wide=True) if c.WT]
    assert len({(c.K, c.B1) for c in wt}) >= 3
    assert all(ring_bytes(plan, c) <= 3 * l2 // 4 for c in wt)
    # two planes a pass: its ring holds one plane more a level, and still fits
    jz = [c for c in wt if c.JM == 2]
    assert jz and all(ring_bytes(plan, c) > ring_bytes(plan, replace(c, JM=0)) for c in jz)


@requires_compiler
def test_the_full_width_engine_is_timed_only_where_the_library_has_it():
    """Phase 4 decides before compiling; the library it gets agrees."""
    it = get_iterator(_heat(3), tuple(make_grids((12, 10, 17), 1)))
    program = it.variants.variant(next(iter(it.runs))).program
    assert 'target("prefer-vector-width=512")' in program.ir
    wide = has_wide_engine(it.ctx.compiles[-1].library, program.meta["dast"])
    assert wide == wide_engine(tuple(query().isa), find_toolchain("c").family)
    assert any(p["W"] for p in it.params.values()) == wide
    assert any(not p["W"] for p in it.params.values())


# -- bad input -----------------------------------------------------------------------------------

@requires_compiler
def test_bad_input_is_rejected_before_native_code():
    k = _heat(2)
    grids = make_grids((12, 13), 1)
    it = get_iterator(k, tuple(grids))
    fn = next(iter(it.runs.values()))
    grids[0].data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fn(*grids, steps=2)
    grids = make_grids((12, 14), 1)
    with pytest.raises(ValueError, match="compiled for shape"):
        fn(*grids, steps=2)
    with pytest.raises(ValueError):
        fn(grids[0], grids[0], steps=2)
    with pytest.raises(TypeError, match="takes 2 grids"):
        fn(*make_grids((12, 13), 2), steps=2)


# -- random kernels from the hypothesis strategy -------------------------------------------------

def _random_blocked(case, steps: int, *tps: TemporalParams) -> None:
    source, dim, n_inputs, ghost, custom = case
    cls = load_kernel(source)
    shape = [4 + 2 * ghost + (i % 2) for i in range(dim)]
    nd = default_neighbor_definition(dim) + [custom]
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd,
                       seed=len(source))
    k = cls()
    try:
        prog = k.kernel.analyse(*grids)[1]
    except Unspecializable:  # e.g. a constant sub-expression that raises in Python
        reject()
    plan = temporal_plan(prog)
    if isinstance(plan, str):
        reject()
    ref = clone_grids(grids)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _COMPLEX_WARNING)
            _reference(k, ref, steps)
    except (ArithmeticError, ValueError, TypeError, _COMPLEX_WARNING):
        reject()  # Python raised, or went complex (x ** 0.5 of a negative float), where C gives NaN
    it = AnyPoint(k, tuple(grids))
    for tp in tps:
        test = clone_grids(grids)
        it.run(tuple(test), steps, tp)
        for r, t in zip(ref, test):
            assert_bitwise(r.data, t.data, what=f"{tp.label} kernel\n{source}")


_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


@requires_compiler
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=_SUPPRESS)
@given(kernel_sources(max_depth=2))
def test_random_kernels_blocked_equal_python(case):
    # plain rows, and two rows per pass (rows of a plane; planes, in wavefront tiles)
    _random_blocked(case, 3, TemporalParams(3, 2, 2), TemporalParams(3, 3, 3, JM=1),
                    TemporalParams(3, 3, 2, WT=1, JM=2))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@requires_compiler
@settings(max_examples=300, deadline=None, suppress_health_check=_SUPPRESS)
@given(kernel_sources(), st.sampled_from([2, 3, 7]), st.sampled_from([3, 5]),
       st.integers(1, 4), st.integers(1, 4), st.integers(0, 1), st.integers(0, 2))
def test_random_kernels_blocked_equal_python_300(case, steps, k, b0, b1, nt, jm):
    _random_blocked(case, steps, TemporalParams(k, b0, b1, nt, JM=jm))


class StoresNothing(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = u[x] * 2.0  # noqa: F841 - a loop that stores nothing (on purpose)
        for x in out.border_points():
            out[x] = u[x] * 0.5


@requires_compiler
def test_loop_without_store_has_no_effect():
    k = StoresNothing()
    grids = make_grids((7, 9), 1, seed=1)
    plan = temporal_plan(k.kernel.analyse(*grids)[1])
    assert plan.coverage == "border"
    it = AnyPoint(k, tuple(grids))
    for tp in (TemporalParams(3, 2, 2), TemporalParams(3, 2, 2, 1)):
        ref, test = clone_grids(grids), clone_grids(grids)
        _reference(k, ref, 5)
        it.run(tuple(test), 5, tp)
        for r, t in zip(ref, test):
            assert_bitwise(r.data, t.data, what=tp.label)


class Square(StencilKernel):
    def kernel(self, u, out):
        for x in out.border_points():
            out[x] = -(u[x] ** 2)
        for x in out.interior_points():
            out[x] = u[x] ** 2 * 0.5


@requires_compiler
def test_pow_is_libm_pow_like_python():
    """Python's ``x ** 2`` is libm's ``pow``, which can differ from ``x * x`` in the last bit
    (2.7054028525535854 ** 2 is one such value); the compiled code must call ``pow`` too."""
    k = Square()
    grids = make_grids((5, 6), 1, seed=0)
    grids[0].data[...] = 2.7054028525535854
    ref = clone_grids(grids)
    _reference(k, ref, 3)
    x = 2.7054028525535854
    assert x ** 2 != x * x  # the premise: libm's pow differs from the product here
    test = clone_grids(grids)
    AnyPoint(k, tuple(test)).run(tuple(test), 3, TemporalParams(3, 2, 2))
    for r, t in zip(ref, test):
        assert_bitwise(r.data, t.data)
