"""PassManager: order, disabling by name, errors naming the pass, insertion."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import Dispatcher, Pass, PassManager, SpecializationContext, Unspecializable, asp_pass
from asp_core.passes import PassError
from asp_core.testing import requires_compiler


def _ctx(**options) -> SpecializationContext:
    return SpecializationContext("test", None, options=options)


@asp_pass("double")
def double(ir, ctx):
    """Multiply by two."""
    return ir * 2


@asp_pass("inc", "add one")
def inc(ir, ctx):
    return ir + 1


@asp_pass("same")
def same(ir, ctx):
    return ir


def _passes(ctx):
    return [(d["name"], d["skipped"], d["changed"]) for e, d in ctx.events if e == "pass"]


def test_runs_in_order_and_records():
    pm = PassManager("m", [double, inc, same])
    ctx = _ctx()
    assert pm.run(3, ctx) == 7
    assert _passes(ctx) == [("double", False, True), ("inc", False, True), ("same", False, False)]
    assert double.description == "Multiply by two." and inc.description == "add one"
    assert isinstance(double, Pass) and pm.names == ["double", "inc", "same"]


def test_disable_by_environment_and_option(monkeypatch):
    pm = PassManager("m", [double, inc])
    monkeypatch.setenv("ASP_DISABLE_PASSES", " double , other")
    ctx = _ctx()
    assert pm.run(3, ctx) == 4
    assert _passes(ctx) == [("double", True, False), ("inc", False, True)]
    monkeypatch.delenv("ASP_DISABLE_PASSES")
    ctx = _ctx(disable_passes=["inc"])
    assert pm.run(3, ctx) == 6
    assert _passes(ctx)[1] == ("inc", True, False)


def test_error_names_the_pass():
    @asp_pass("broken")
    def broken(ir, ctx):
        return ir["missing"]

    pm = PassManager("mgr", [inc, broken])
    with pytest.raises(PassError, match=r"pass 'broken' of 'mgr' failed: TypeError") as info:
        pm.run(1, _ctx())
    assert isinstance(info.value.__cause__, TypeError)


def test_pass_returning_none_is_an_error():
    pm = PassManager("mgr", [Pass("forgetful", lambda ir, ctx: None)])
    with pytest.raises(PassError, match="'forgetful' of 'mgr' returned None"):
        pm.run(1, _ctx())


def test_unspecializable_passes_through():
    def refuse(ir, ctx):
        raise Unspecializable("while loop", filename="f.py", lineno=3, col=5)

    with pytest.raises(Unspecializable, match="f.py:3:5"):
        PassManager("m", [Pass("refuse", refuse)]).run(1, _ctx())


def test_add_and_add_after():
    pm = PassManager("m", [double])
    pm.add(same)
    pm.add_after("double", inc)
    assert pm.names == ["double", "inc", "same"]
    assert pm.run(1, _ctx()) == 3
    with pytest.raises(ValueError, match="already in pass manager 'm'"):
        pm.add(inc)
    with pytest.raises(ValueError, match=r"no pass 'nope' in 'm'; passes: \['double', 'inc', "
                                         r"'same'\]"):
        pm.add_after("nope", Pass("x", lambda ir, ctx: ir))


def _folded(a):
    return a * (2.0 + 3.0)


@requires_compiler
def test_disabling_a_domain_pass_end_to_end(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    a = np.linspace(0, 1, 7)
    d = Dispatcher("elementwise", _folded)
    np.testing.assert_array_equal(d(a), a * 5.0)
    prog = [e["text"] for n, e in d.last_context.events if n == "program"][0]
    assert "(in0[i] * 5.0)" in prog
    monkeypatch.setenv("ASP_DISABLE_PASSES", "constant-folding")
    d2 = Dispatcher("elementwise", _folded)
    np.testing.assert_array_equal(d2(a), a * 5.0)
    prog2 = [e["text"] for n, e in d2.last_context.events if n == "program"][0]
    assert "(in0[i] * (2.0 + 3.0))" in prog2
    assert _passes(d2.last_context) == [("constant-folding", True, False)]


def test_failing_pass_falls_back_naming_it(elementwise, derived, fresh_cache, monkeypatch):
    from asp_core import DomainOptimizer, SpecializationWarning

    class Buggy(DomainOptimizer):
        def optimize(self, dast, ctx):
            return PassManager("buggy-domain", [Pass("explode", lambda ir, c: 1 / 0)]).run(
                dast, ctx)

    name = derived("ew-buggy", replace={("domain_optimization", "fold"): Buggy()})
    d = Dispatcher(name, _folded)
    a = np.ones(3)
    with pytest.warns(SpecializationWarning, match="pass 'explode' of 'buggy-domain' failed: "
                                                   "ZeroDivisionError"):
        np.testing.assert_array_equal(d(a), a * 5.0)
