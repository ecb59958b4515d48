"""Typed records on the specialisation context (``ctx.decide`` / ``ctx.decision``,
``ctx.passes``, ``ctx.compiles``): the pipeline records each phase's component, the platform and
the variant there, so callers need not parse ``ctx.events``."""

from __future__ import annotations

import numpy as np

from asp_core import Dispatcher
from asp_core.autotune import Autotuner
from asp_core.context import SpecializationContext
from asp_core.decisions import PLATFORM, VARIANT, Decision
from asp_core.phases import PHASES
from pytest_asp import requires_compiler


def axpy(a, b):
    return 2.5 * a + b


def test_decide_and_look_up_by_kind_and_params():
    ctx = SpecializationContext("x", None)
    assert ctx.decision("iterate") is None
    first = ctx.decide("iterate", "plain", source="tuned now", chunk=4)
    ctx.decide("iterate", "K5", source="perf database", candidates=["plain", "K5"], chunk=32)
    assert isinstance(first, Decision) and first.params == {"chunk": 4}
    assert ctx.decision("iterate").choice == "K5"  # the latest
    assert ctx.decision("iterate", chunk=4) is first
    assert ctx.decision("iterate", chunk=8) is None
    assert ctx.decision("iterate").candidates == ("plain", "K5")
    # asp explain still sees them in the event log
    assert [d["choice"] for e, d in ctx.events if e == "decision"] == ["plain", "K5"]


def test_tuning_events_decide_when_the_tuner_fixes_its_winner(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    ctx = SpecializationContext("x", None)
    tuner = Autotuner("decisions-test", ["a", "b"], on_event=ctx.tuning_events("mode", n=3))
    assert ctx.decision("mode") is None
    for _ in range(10):
        if tuner.done:
            break
        v = tuner.next()
        tuner.report(v, 1.0 if v == "a" else 2.0)
    assert tuner.winner == "a"
    d = ctx.decision("mode", n=3)
    assert d is not None and (d.choice, d.source) == ("a", tuner.source)
    assert any(e == "autotune" for e, _ in ctx.events)


@requires_compiler
def test_the_pipeline_records_platform_and_variant(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", axpy)
    a, b = np.ones(8), np.arange(8.0)
    np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    ctx = d.last_context
    platform = ctx.decision(PLATFORM)
    assert platform is not None and platform.candidates and platform.choice in platform.candidates
    phase = [e for k, e in ctx.events if k == "phase" and e["phase"] == "platform_selection"]
    assert platform.choice == phase[-1]["component"]
    variant = ctx.decision(VARIANT)
    assert variant is not None and variant.source  # ASP_AUTOTUNE=off: the default, decided now


@requires_compiler
def test_one_decision_per_phase_with_the_component_chosen(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", axpy)
    d(np.ones(4), np.ones(4))
    ctx = d.last_context
    chosen = {p: ctx.decision(p) for p in PHASES}
    assert {p: c.choice for p, c in chosen.items()} == {
        "frontend": "python-ast", "domain_optimization": "fold", "platform_selection": "openmp",
        "platform_optimization": "loops", "backend": "c"}
    assert chosen["platform_selection"] is ctx.decision(PLATFORM)
    assert chosen["platform_selection"].candidates == ("openmp", "python")
    assert chosen["backend"].candidates == ("c",)   # the backends for the chosen platform
    assert all(c.source == "priority" and c.reason for c in chosen.values())
    assert chosen["frontend"].params["distribution"]   # the package that provides it

    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "elementwise:python")
    d2 = Dispatcher("elementwise", axpy)
    d2(np.ones(4), np.ones(4))
    platform, backend = d2.last_context.decision(PLATFORM), d2.last_context.decision("backend")
    assert (platform.choice, platform.source) == ("python", "requested")
    assert backend.choice == "vectorize"


@requires_compiler
def test_pass_reports_and_compiles_are_typed(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", axpy)
    a, b = np.ones(4), np.arange(4.0)
    d(a, b)
    ctx = d.last_context
    assert [(r.manager, r.name, r.skipped) for r in ctx.passes] == \
        [("elementwise-domain", "constant-folding", False)]
    assert [(c.name, c.variant, c.cached) for c in ctx.compiles] == \
        [("asp_map", ctx.decision(VARIANT).choice, False)]

    monkeypatch.setenv("ASP_DISABLE_PASSES", "constant-folding")
    again = Dispatcher("elementwise", axpy)   # a new dispatcher: the same source, from the cache
    np.testing.assert_array_equal(again(a, b), 2.5 * a + b)
    ctx2 = again.last_context
    report, = ctx2.passes
    assert (report.name, report.skipped, report.changed) == ("constant-folding", True, False)
    compiled, = ctx2.compiles
    assert compiled.cached and compiled.library.path == ctx.compiles[0].library.path
