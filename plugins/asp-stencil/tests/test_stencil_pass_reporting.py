"""Each stencil domain pass reports whether it changed the program, and disabling one by name
really leaves it out (``linear-detection`` included: nothing reruns it behind the user's back)."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core.context import SpecializationContext
from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.domain import StencilDomainOptimizer
from asp_stencil.frontend import StencilFrontend
from asp_stencil.passes import (constant_folding, cse, linear_detection, output_forwarding,
                                unroll_neighbors)
from asp_stencil.schedule import Schedule
from asp_stencil.variants import candidate_schedules


class Star(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] = out[x] + u[y] * (0.5 + 0.5)


class Copy(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = u[x]
            out[x] = t


def _parse(cls, shape=(64, 64), **options):
    grids = [StencilGrid(shape) for _ in range(2)]
    k = cls()
    ctx = SpecializationContext("stencil", cls.kernel.func.__get__(k), tuple(grids), {}, k,
                                options, None, cls.__name__)
    return StencilFrontend().parse(ctx), ctx


def _reports(ctx):
    return {r.name: (r.skipped, r.changed) for r in ctx.passes}


def test_each_pass_reports_its_change():
    prog, ctx = _parse(Star)
    StencilDomainOptimizer().optimize(prog, ctx)
    assert _reports(ctx) == {"unroll-neighbors": (False, True), "constant-folding": (False, True),
                             "output-forwarding": (False, True), "dead-locals": (False, False),
                             "cse": (False, False),  # a chain of sums: nothing shared
                             "linear-detection": (False, True), "type-check": (False, False)}


def test_passes_report_no_change_when_there_is_nothing_to_do():
    prog, ctx = _parse(Copy)
    for p in (unroll_neighbors, constant_folding):
        prog, changed = p.apply(prog, ctx)
        assert not changed, p.name  # no neighbour loop, nothing constant
    prog, changed = output_forwarding.apply(prog, ctx)
    assert changed  # the store now goes through a forwarded local
    again, changed = output_forwarding.apply(prog, ctx)
    assert changed  # (a store is always rewritten into a local)
    done, changed = cse.apply(prog, ctx)
    assert not changed and done == prog  # no repeated subexpression, no reassigned local
    analysed, changed = linear_detection.apply(prog, ctx)
    assert changed and analysed.info["loops"][0]["linear"]
    assert linear_detection.apply(analysed, ctx) == (analysed, False)  # facts already there


def test_disabling_linear_detection_disables_it():
    prog, ctx = _parse(Star, shape=(512, 512), disable_passes=["linear-detection"])
    out = StencilDomainOptimizer().optimize(prog, ctx)
    assert "loops" not in out.info
    assert _reports(ctx)["linear-detection"] == (True, False)
    # without its facts the platform optimiser offers the one schedule that needs none
    assert candidate_schedules(out, 32 << 20, isa=("avx2",)) == [Schedule()]


def test_unknown_pass_name_is_an_error_naming_the_stencil_passes(monkeypatch):
    monkeypatch.setenv("ASP_DISABLE_PASSES", "linear-detecton")
    prog, ctx = _parse(Star)
    with pytest.raises(ValueError, match=r"unknown pass name 'linear-detecton'.*known passes: "
                                         r".*constant-folding, .*linear-detection"):
        StencilDomainOptimizer().optimize(prog, ctx)


@requires_compiler
def test_kernel_without_linear_detection_gives_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_MODE", "strict")
    rng = np.random.default_rng(0)
    u, ref, out = (StencilGrid((40, 50)) for _ in range(3))
    u.data[...] = rng.standard_normal(u.data.shape)
    Star.kernel.func(Star(), u, ref)  # the pure-Python semantics

    class NoLinear(Star):
        asp_options = {"disable_passes": ("linear-detection",)}

    k = NoLinear()
    k.kernel(u, out)
    np.testing.assert_array_equal(out.data, ref.data)
    ctx = k.kernel.last_context
    assert _reports(ctx)["linear-detection"] == (True, False)
    (names,) = [d["names"] for e, d in ctx.events if e == "variants"]
    assert len(names) == 1  # one schedule, nothing to tune


class Scaled(StencilKernel):
    c = 0.25

    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y] * self.c
            out[x] = s


@requires_compiler
def test_another_specializers_pass_of_the_same_name_leaves_the_stencils_alone(tmp_path,
                                                                             monkeypatch):
    """``ASP_DISABLE_PASSES=gmm:constant-folding`` is another specializer's pass: the stencil
    kernel compiles as usual (strict mode raises on a fallback). A plain
    ``constant-folding``, or ``stencil:constant-folding``, is the stencil's too: the pass that
    makes ``self.c`` a constant, so the kernel runs in Python, saying so."""
    from asp_core import SpecializationWarning

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_MODE", "strict")
    monkeypatch.setenv("ASP_DISABLE_PASSES", "gmm:constant-folding")
    rng = np.random.default_rng(1)
    u, ref, out = (StencilGrid((40, 50)) for _ in range(3))
    u.data[...] = rng.standard_normal(u.data.shape)
    Scaled.kernel.func(Scaled(), u, ref)
    k = Scaled()
    k.kernel(u, out)
    np.testing.assert_array_equal(out.data, ref.data)
    assert _reports(k.kernel.last_context)["constant-folding"] == (False, True)
    monkeypatch.setenv("ASP_MODE", "auto")
    for setting in ("constant-folding", "stencil:constant-folding"):
        monkeypatch.setenv("ASP_DISABLE_PASSES", setting)
        with pytest.warns(SpecializationWarning,
                          match="pass 'constant-folding' of 'stencil-domain' is disabled"):
            Scaled().kernel(u, out)
        np.testing.assert_array_equal(out.data, ref.data)
