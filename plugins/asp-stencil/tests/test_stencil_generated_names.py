"""Locals the frontend and the passes make (an ``if``'s guard, a forwarded store, an SSA
rename, a common subexpression) never take a name the kernel uses itself: a user's ``_if1``,
``_out_2`` or ``s_1`` was overwritten by the generated local, and the compiled kernel returned
other numbers than Python, with no warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil.testing import (assert_bitwise, assert_specialised, load_kernel, make_grids,
                                 run_both)
from pytest_asp import requires_compiler

KERNELS = {
    "if guard": """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            _if = u[x] * 2.0
            _if1 = u[x] * 3.0
            if u[x] > 0:
                t = 1.0
            else:
                t = 2.0
            out[x] = _if + _if1 + t
""",
    "forwarded store": """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0
            _out = out[x] * 3.0
            _out_1 = out[x] * 5.0
            out[x] = out[x] + 1.0
            out[x] = out[x] + _out + _out_1
""",
    "ssa rename": """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * 3.0
            s_1 = (u[x] + 1.0) * 2.0
            s = s + (u[x] + 1.0) * 2.0
            s = s * s_1
            out[x] = s * s_1 + s_1
""",
    "cse temporary": """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            _cse = u[x] - 7.0
            _cse0 = u[x] + 5.0
            out[x] = (u[x] * 3.0 + 1.0) * (u[x] * 3.0 + 1.0) + _cse * _cse0
""",
}


@requires_compiler
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_a_kernel_using_a_generated_name_equals_python(name):
    k = load_kernel(KERNELS[name])()
    grids = make_grids((9, 7), 1, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        ref, got = run_both(k, grids)
    assert_specialised(k)
    assert_bitwise(ref, got)


@requires_compiler
def test_a_refused_integer_store_names_the_grid():
    """The refusal named the forwarding local (``'res_1'``), not the grid ``res``."""
    k = load_kernel("""
class K(StencilKernel):
    def kernel(self, u, res):
        for x in res.interior_points():
            res[x] = u[x] * 0.5
""")()
    grids = make_grids((6, 6), 1, dtypes=[np.int32, np.int32])
    with pytest.warns(SpecializationWarning, match="stored into the integer grid 'res'`"):
        run_both(k, grids)
