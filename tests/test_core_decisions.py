"""Typed decision records on the specialisation context (``ctx.decide`` / ``ctx.decision``):
the pipeline records its platform and variant choices there, so callers need not parse
``ctx.events``."""

from __future__ import annotations

import numpy as np

from asp_core import Dispatcher
from asp_core.autotune import Autotuner
from asp_core.context import SpecializationContext
from asp_core.decisions import PLATFORM, VARIANT, Decision
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
