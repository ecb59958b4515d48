"""What one kernel's specialisations and stored timings are keyed by: a kernel attribute
that takes a new value at each call compiles the kernel again for each (attributes are
constants of the generated code), which the user is told once; two kernels on the same grids
are tuned each for itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_core import PerformanceWarning
from asp_stencil import StencilGrid, StencilKernel


class Source(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + self.dt * self.t


def _grids() -> tuple[StencilGrid, StencilGrid]:
    u, out = StencilGrid((6, 6)), StencilGrid((6, 6))
    u.data[...] = np.arange(36.0).reshape(6, 6)
    return u, out


def _calls(monkeypatch: pytest.MonkeyPatch, kernels: list[Source], times: list[float]
           ) -> list[warnings.WarningMessage]:
    """Call each kernel with each ``t`` in turn; the results equal Python's; the warnings."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    u, out = _grids()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in kernels:
            for t in times:
                k.t = t
                k.kernel(u, out)
                expected = out.data.copy()
                expected[1:-1, 1:-1] = u.data[1:-1, 1:-1] + k.dt * t
                np.testing.assert_array_equal(out.data, expected)
    return [w for w in caught if issubclass(w.category, PerformanceWarning)]


@requires_compiler
def test_a_time_set_before_every_call_is_named_once_at_the_users_line(monkeypatch):
    class Heat(Source):
        dt = 0.5

    told = _calls(monkeypatch, [Heat()], [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    assert len(told) == 1, [str(w.message) for w in told]
    message = str(told[0].message)
    assert "Heat.kernel has been compiled for 5 values of self.t (0.0, 0.25, 0.5, ...)" in message
    assert "input grid" in message
    assert told[0].filename == __file__


@requires_compiler
def test_objects_made_with_different_constants_and_values_that_recur_are_not_named(
        monkeypatch):
    class Sweep(Source):
        dt = 0.125

    kernels = [Sweep() for _ in range(5)]
    for i, k in enumerate(kernels):
        k.dt = 0.125 * (i + 1)
    assert _calls(monkeypatch, kernels, [2.0]) == []
    assert _calls(monkeypatch, [kernels[0]], [2.0, 3.0, 4.0, 5.0, 2.0, 3.0]) == []


class Cheap(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0


class Heavy(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] = out[x] + (u[y] * u[y] + 1.0) / (u[y] + 3.0)


@requires_compiler
def test_two_kernels_on_the_same_grids_are_tuned_each_for_itself(monkeypatch, tmp_path):
    """The stored winner was keyed by the call's key (grids, attributes), not the kernel:
    every kernel on the same grids took the first one's winner, untimed."""
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    u, out = StencilGrid((40, 40)), StencilGrid((40, 40))
    u.data[...] = np.random.default_rng(3).random(u.shape)
    cheap = Cheap()
    for _ in range(200):
        cheap.kernel(u, out)
        if cheap.kernel.tuned(cheap.kernel.keys()[0]) is not None:
            break
    assert cheap.kernel.tuned(cheap.kernel.keys()[0]) is not None
    heavy = Heavy()
    heavy.kernel(u, out)
    assert heavy.kernel.keys() == cheap.kernel.keys()   # the same grids: the same call key
    assert heavy.kernel.tuned(heavy.kernel.keys()[0]) is None, "took Cheap's winner untimed"
