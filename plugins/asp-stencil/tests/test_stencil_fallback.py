"""Constructs outside the DSL fall back to Python with one warning naming file, line, construct."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil import StencilKernel
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids

GLOBAL_SCALE = 2.0


def helper(v):
    return v * 2


class UserFunction(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = helper(u[x])  # <- call to user function 'helper'


class BitwiseAnd(StencilKernel):
    k = 3

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * (self.k & 1)  # <- operator '&'


class TopLevelIf(StencilKernel):
    flag = True

    def kernel(self, u, out):
        if self.flag:  # <- if statement
            for x in out.interior_points():
                out[x] = u[x]


class PartlyAssigned(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            if u[x] > 1e9:
                t = u[x]
            out[x] = t if u[x] > 1e9 else u[x]  # <- read where only some branches of an if


class WhileLoop(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            n = 0
            while n < 2:  # <- while loop
                n += 1
            out[x] = u[x] * n


class PrintCall(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            print  # <- expression statement
            out[x] = u[x]


class CompareOutside(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] > 0  # <- comparison outside the test of a conditional expression


class GlobalName(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * GLOBAL_SCALE  # <- global name 'GLOBAL_SCALE'


class WriteNeighbour(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[y] = u[x]  # <- write to a neighbour point


class PointArithmetic(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * x[0]  # <- subscript 'x[0]'


class BorderNeighbour(StencilKernel):
    raises = IndexError  # Python itself indexes past the far edge

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x]
        for x in out.border_points():  # <- neighbour read in a border_points() loop
            for y in u.neighbors(x, 1):
                out[x] = u[y] + 1.0


class CarriedLocal(StencilKernel):
    def kernel(self, u, out):
        acc = 0.0
        for x in out.interior_points():
            out[x] = acc  # <- read before it is assigned in the loop body
            acc = u[x]


class NonScalarAttribute(StencilKernel):
    scale = np.float16(2.0)

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.scale  # <- attribute 'self.scale' that is not a real scalar


CASES = [UserFunction, BitwiseAnd, TopLevelIf, PartlyAssigned, WhileLoop, PrintCall, CompareOutside,
         GlobalName, WriteNeighbour, PointArithmetic, BorderNeighbour, CarriedLocal,
         NonScalarAttribute]


def _marker(cls):
    lines, first = inspect.getsourcelines(cls.kernel.func)
    for i, text in enumerate(lines):
        if "# <- " in text:
            return first + i, text.split("# <- ")[1].strip()
    raise AssertionError("no marker")


@pytest.mark.parametrize("cls", CASES, ids=[c.__name__ for c in CASES])
def test_fallback_warns_once_with_location_and_runs_python(cls, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "auto")
    line, construct = _marker(cls)
    grids = make_grids((6, 7), 1, seed=5)
    ref = clone_grids(grids)
    k = cls()
    expected_error = getattr(cls, "raises", None)
    if expected_error is not None:
        with pytest.warns(SpecializationWarning, match=rf":{line}:"), \
                pytest.raises(expected_error):
            k.kernel(*grids)
        return
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
        with pytest.warns(SpecializationWarning) as record:
            k.kernel(*grids)
    assert len(record) == 1
    text = str(record[0].message)
    assert re.search(rf"{re.escape(__file__)}:{line}:\d+", text), text
    assert construct.split("'")[0].strip() in text, (construct, text)
    for a, b in zip(ref, grids):
        assert_bitwise(a.data, b.data)
    # one warning per kernel: a second call is silent
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            k.kernel(*grids)


def test_strict_mode_raises(monkeypatch):
    from asp_core import Unspecializable

    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((5, 5), 1)
    with pytest.raises(Unspecializable, match="helper"):
        UserFunction().kernel(*grids)


def test_python_mode_never_specialises(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "python")
    grids = make_grids((5, 5), 1)
    ref = clone_grids(grids)
    k = UserFunction()
    k.pure_python(*ref)
    k.kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)
