"""Differential tests of ``iterate(steps=T)``: compiled (plain sweeps, temporally blocked
variants forced with ``ASP_STENCIL_TEMPORAL=on`` and pinned with
``ASP_STENCIL_TEMPORAL_PARAMS``) equals ``ASP_MODE=python`` bit for bit, and returns the same
grid, for T = 1, 2, 3, 7, 64 on generated Jacobi kernels
(:func:`asp_stencil.differential.jacobi_cases`) with ragged shapes, ghost depths 1-3 and
radius-3 neighbourhoods. ``auto`` runs as users get it (these grids' plain sweeps never pay
for the blocked build: plain sweeps), ``auto-at-once`` builds the blocked code at once and
times it against plain sweeps (``BUILD_AFTER_COMPILES = 0``)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_asp import requires_compiler
from asp_stencil.differential import KernelCase, case_grids, compare_iterate, env, jacobi_cases
from asp_stencil.temporal.analysis import temporal_plan
from asp_stencil.temporal import iterate as iterate_mod
from asp_stencil.temporal.iterate import iterate_decision
from asp_stencil.testing import load_kernel

STEPS = (1, 2, 3, 7, 64)
#: ``ASP_STENCIL_TEMPORAL_PARAMS`` values: K,B0,B1[,NT[,W[,B2[,SK[,WT[,JM]]]]]] — shallow and
#: deep blocks, tiles of one row, blocks deeper than the grid, row segments, skewed rows,
#: wavefront tiles, unroll-and-jam, streaming stores, the full-width engine
PINNED = (None, "3,2,2", "5,1,1", "3,3,3,1", "7,100,100", "3,2,2,0,0,0,1", "5,2,3,1,0,0,0,1",
          "3,3,2,0,0,0,0,1,2", "3,3,3,0,0,0,0,0,1", "1,2,2", "9,1,1,0,0,4", "5,4,5,0,1,0,1,1")
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


@requires_compiler
@pytest.mark.timeout(300)
@settings(max_examples=24, deadline=None, derandomize=True, database=None,
          suppress_health_check=_SUPPRESS)
@given(jacobi_cases(max_points=300), st.sampled_from(PINNED),
       st.sampled_from(["on", "auto", "auto-at-once"]))
def test_generated_iterations_equal_python_mode(case, pinned, temporal):
    _compare(case, pinned, temporal)


def _compare(case: KernelCase, pinned: str | None, temporal: str) -> None:
    at_once = temporal == "auto-at-once"
    with mock.patch.object(iterate_mod, "BUILD_AFTER_COMPILES",
                           0.0 if at_once else iterate_mod.BUILD_AFTER_COMPILES):
        compare_iterate(case, STEPS, seed=len(case.source),
                        ASP_STENCIL_TEMPORAL="auto" if at_once else temporal,
                        ASP_STENCIL_TEMPORAL_PARAMS=pinned)


@pytest.mark.slow
@requires_compiler
@pytest.mark.timeout(3600)
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=_SUPPRESS)
@given(jacobi_cases(), st.sampled_from(PINNED),
       st.sampled_from(["on", "auto", "auto-at-once", "off"]))
def test_generated_iterations_equal_python_mode_400(case, pinned, temporal):
    _compare(case, pinned, temporal)


HEAT = """class K(StencilKernel):
    alpha = 0.1
    def kernel(self, rhs, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            for y in u.neighbors(x, 2):
                s = s + 0.125 * u[y]
            out[x] = u[x] + self.alpha * s + rhs[x]
        for x in out.border_points():
            out[x] = u[x] * 0.5
"""


@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("shape,ghost", [((33,), 3), ((7, 17), 1), ((17, 7), 3), ((2, 33), 1),
                                         ((7, 3, 17), 1), ((17, 7, 7), 2), ((3, 33, 3), 1)])
def test_blocked_iterations_of_ragged_grids_equal_python_mode(shape, ghost):
    """The blocked code, forced, on grids whose sides are odd, one interior row wide, or
    thinner than a block: every pinned tuning point, and the tuner's own choice."""
    dim = len(shape)
    custom = [tuple(ghost if i == d else -ghost if i == (d + 1) % dim else 0
                    for i in range(dim)) for d in range(dim)]
    case = KernelCase(HEAT, shape, ghost, ("f8",) * 3, custom, False, "heat")
    k = load_kernel(HEAT)()
    if min(shape) > 2 * ghost:
        plan = temporal_plan(k.kernel.analyse(*case_grids(case))[1])
        assert not isinstance(plan, str), plan
    for pinned in PINNED[:6]:
        assert compare_iterate(case, STEPS, seed=sum(shape), repeats=1,
                               ASP_STENCIL_TEMPORAL="on",
                               ASP_STENCIL_TEMPORAL_PARAMS=pinned) == "compiled"


@requires_compiler
def test_forced_blocking_is_what_runs():
    """With ``ASP_STENCIL_TEMPORAL=on`` the iteration's decision is a blocked variant (the
    comparisons above do test the blocked code)."""
    case = KernelCase(HEAT, (17, 33), 1, ("f8",) * 3, [(1, -1), (-1, 1)], False, "heat")
    k = load_kernel(HEAT)()
    grids = case_grids(case)
    with env(ASP_STENCIL_TEMPORAL="on", ASP_STENCIL_TEMPORAL_PARAMS="3,2,2"), \
            np.errstate(all="ignore"):
        k.iterate(*grids, steps=64)
    decision = iterate_decision(k)
    assert decision is not None and decision.choice != "plain", decision


@requires_compiler
@pytest.mark.parametrize("dtype", ["f4", "i4"])
def test_iterations_the_blocked_code_cannot_take_equal_python_mode(dtype):
    """float32 and integer grids run plain sweeps whatever ``ASP_STENCIL_TEMPORAL`` says."""
    source = """class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * 2
            for y in u.neighbors(x, 1):
                s = s - u[y] // 3 if s > 0 else s + u[y]
            out[x] = s
"""
    for shape in [(7, 17), (33,), (3, 7, 17)]:
        case = KernelCase(source, shape, 1, (dtype,) * 2, [(1,) * len(shape)], False, "plain")
        assert compare_iterate(case, STEPS, seed=1, repeats=1,
                               ASP_STENCIL_TEMPORAL="on") == "compiled"
