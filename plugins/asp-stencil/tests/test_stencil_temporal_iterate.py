"""``iterate`` hands sweeps after the first to temporal blocking (or the GPU) when it applies."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_core.testing import requires_compiler
from asp_stencil import StencilKernel
from asp_stencil.bench import Heat
from asp_stencil.temporal import runner
from asp_stencil.temporal.iterate import accelerated_iterate
from asp_stencil.testing import assert_bitwise, clone_grids, make_grids


def _heat3() -> Heat:
    k = Heat()
    k.centre = -6.0
    return k


def _python_sweeps(k, grids, steps):
    gs = list(grids)
    for _ in range(steps):
        k.pure_python(*gs)
        gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs[-2] if steps else gs[-1]


def _first_sweep_then(k, grids, steps):
    """What ``iterate`` does: one sweep through the dispatcher, then the accelerated rest."""
    gs = list(grids)
    k.kernel(*gs)
    gs[-1], gs[-2] = gs[-2], gs[-1]
    return gs, accelerated_iterate(k, k.kernel, tuple(gs), steps - 1)


@requires_compiler
@pytest.mark.parametrize("steps", [3, 7, 64])
def test_blocked_rest_equals_python(monkeypatch, steps):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat3()
    grids = make_grids((11, 12, 13), 1, seed=steps)
    ref = clone_grids(grids)
    expected = _python_sweeps(k, ref, steps)
    gs, got = _first_sweep_then(k, grids, steps)
    assert got is not None
    assert got is grids[ref.index(expected)]
    for r, t in zip(ref, grids):
        assert_bitwise(r.data, t.data, what=f"T={steps}")
    assert k in runner._ITERATORS  # the blocked code ran


@requires_compiler
def test_not_used_when_it_does_not_pay_or_is_not_wanted(monkeypatch):
    monkeypatch.delenv("ASP_PLATFORM_SELECTION", raising=False)
    k = _heat3()
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "auto")  # small grids fit in cache
    grids = make_grids((9, 10, 11), 1)
    assert _first_sweep_then(k, grids, 5)[1] is None
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    assert accelerated_iterate(k, k.kernel, tuple(grids), 1) is None  # one sweep: nothing to gain
    monkeypatch.setenv("ASP_MODE", "python")
    assert accelerated_iterate(k, k.kernel, tuple(grids), 5) is None
    monkeypatch.delenv("ASP_MODE")
    k2 = _heat3()
    k2.asp_options = {"platform_selection": "python"}  # the user chose pure Python
    assert _first_sweep_then(k2, make_grids((9, 10, 11), 1), 5)[1] is None


@requires_compiler
def test_not_used_for_a_kernel_that_fell_back(monkeypatch):
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")

    def helper(v):
        return v * 0.5

    class UsesHelper(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = helper(u[x])

    k = UsesHelper()
    grids = make_grids((8, 9), 1)
    with pytest.warns(SpecializationWarning, match="helper"):
        gs, got = _first_sweep_then(k, grids, 4)
    assert got is None
    assert k not in runner._ITERATORS


class _FakeDispatcher:
    """Stands in for a dispatcher whose selection chose ``platform`` and bound ``fn``."""

    def __init__(self, key, fn, platform):
        from types import SimpleNamespace

        self.specializations = {key: fn}
        self.fallback = None
        self.options = {}
        self.last_context = SimpleNamespace(events=[
            ("phase", {"phase": "platform_selection", "component": platform})])


def test_device_iterate_is_used_when_the_kernel_runs_on_cuda(monkeypatch):
    from asp_stencil.signature import stencil_signature

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    k = _heat3()
    grids = tuple(make_grids((6, 7, 8), 1))
    calls = []

    def bound(*gs):
        raise AssertionError("single sweeps must not run")

    bound.iterate = lambda gs, steps: calls.append((gs, steps))
    d = _FakeDispatcher(stencil_signature(grids, {}, k), bound, "cuda")
    assert accelerated_iterate(k, d, grids, 5) is grids[-1]  # odd: result in the output grid
    assert accelerated_iterate(k, d, grids, 4) is grids[-2]
    assert [c[1] for c in calls] == [5, 4] and calls[0][0] == grids


def test_cpu_blocking_is_not_used_while_cuda_is_the_platform(monkeypatch):
    from asp_stencil.signature import stencil_signature

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "on")
    k = _heat3()
    grids = tuple(make_grids((6, 7, 8), 1))
    d = _FakeDispatcher(stencil_signature(grids, {}, k), lambda *gs: None, "cuda")
    before = [g.data.copy() for g in grids]
    assert accelerated_iterate(k, d, grids, 5) is None
    assert all(np.array_equal(b, g.data) for b, g in zip(before, grids))
