"""Passes a plugin adds to another specializer's pass manager (``register.add_pass``)."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import Dispatcher, PluginError, PluginWarning, asp_pass, hookimpl, plugins
from asp_core.cli.listing import listing
from asp_core.ir import Transformer
from pytest_asp import requires_compiler
from tests.specializers.elementwise import Num


class _Double(Transformer):
    def visit_Num(self, node: Num) -> Num:
        return Num(node.value * 2)


@asp_pass("double-literals")
def double_literals(dast, ctx):
    """Double every literal (a rewrite whose effect the compiled result shows)."""
    new = _Double().visit(dast)
    return new, new is not dast


class _Adder:
    """A plugin that only adds a pass to the element-wise specializer's manager."""

    def __init__(self, obj=double_literals, **where):
        self.obj, self.where = obj, where

    @hookimpl
    def asp_register_specializers(self, register):
        register.add_pass(specializer="elementwise", manager="elementwise-domain", obj=self.obj,
                          **self.where)


@pytest.fixture
def add_pass(elementwise, fresh_cache, monkeypatch):
    """``add_pass(obj=..., after=...)`` registers an :class:`_Adder` for one test."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    names = []

    def add(**kw):
        names.append(plugins.register_plugin(_Adder(**kw), name=f"adder-{len(names)}"))

    yield add
    for name in names:
        plugins.unregister_plugin(name)


def _folded(a):
    return a * (2.0 + 3.0)


def _run(a):
    d = Dispatcher("elementwise", _folded)
    return d(a), [(r.name, r.skipped) for r in d.last_context.passes]


@requires_compiler
@pytest.mark.parametrize("where, order, factor", [
    ({"before": "constant-folding"}, ["double-literals", "constant-folding"], 10.0),
    ({"after": "constant-folding"}, ["constant-folding", "double-literals"], 10.0),
    ({}, ["constant-folding", "double-literals"], 10.0)])
def test_an_added_pass_runs_where_its_plugin_put_it(add_pass, where, order, factor):
    add_pass(**where)
    a = np.linspace(0, 1, 5)
    out, passes = _run(a)
    np.testing.assert_array_equal(out, a * factor)
    assert [name for name, _ in passes] == order


@requires_compiler
def test_an_added_pass_may_follow_one_another_plugin_added(add_pass):
    @asp_pass("halve-literals")
    def halve(dast, ctx):
        return dast, False

    add_pass(after="constant-folding")
    add_pass(obj=halve, before="double-literals")
    _, passes = _run(np.ones(3))
    assert [name for name, _ in passes] == ["constant-folding", "halve-literals",
                                            "double-literals"]


@requires_compiler
def test_an_added_pass_is_disabled_by_its_qualified_name(add_pass, monkeypatch):
    add_pass(after="constant-folding")
    monkeypatch.setenv("ASP_DISABLE_PASSES", "elementwise:double-literals")
    out, passes = _run(np.ones(3))
    np.testing.assert_array_equal(out, np.full(3, 5.0))
    assert passes == [("constant-folding", False), ("double-literals", True)]


@requires_compiler
@pytest.mark.parametrize("kw, problem", [
    ({"after": "constant-fold"}, "is to run after 'constant-fold', which 'elementwise-domain' "
                                 "does not have (its passes: constant-folding)"),
    ({"obj": "tests.test_core_added_passes:_folded"}, "is function, not an asp_core.Pass"),
    ({"obj": "tests.no_such_module:x"}, "cannot be loaded from 'tests.no_such_module:x'"),
    ({"obj": asp_pass("constant-folding")(lambda ir, ctx: (ir, False))},
     "'elementwise-domain' already has a pass 'constant-folding'")])
def test_a_pass_that_cannot_be_placed_is_left_out_with_a_warning(add_pass, kw, problem):
    add_pass(**kw)
    a = np.ones(3)
    with pytest.warns(PluginWarning, match="failed to add pass for "
                                           "elementwise/elementwise-domain and is left out") as w:
        out, passes = _run(a)
    assert any(problem in str(x.message) for x in w), [str(x.message) for x in w]
    np.testing.assert_array_equal(out, a * 5.0)  # the manager's own passes, as before
    assert [name for name, _ in passes] == ["constant-folding"]
    assert any(problem in b.error for b in plugins.broken_plugins())


def test_a_pass_named_by_module_and_attribute_is_imported_when_listed(add_pass):
    add_pass(obj="tests.test_core_added_passes:double_literals", after="constant-folding")
    spec = next(s for s in listing()["specializers"] if s["name"] == "elementwise")
    assert spec["added_passes"] == [{"manager": "elementwise-domain", "name": "double-literals",
                                     "after": "constant-folding", "before": None,
                                     "distribution": "(in-process)", "version": ""}]


def test_after_and_before_together_are_refused(elementwise, plugin_state):
    with pytest.warns(PluginWarning, match="runs after one pass or before one, not both"):
        plugins.register_plugin(_Adder(after="a", before="b"), name="both")
        assert plugins.get_registry().added_passes == []
    with pytest.raises(PluginError, match="non-empty string manager"):
        plugins.get_registry().add_pass(specializer="elementwise", manager="", obj=double_literals)


def test_a_plugin_whose_registration_fails_leaves_no_added_pass(elementwise, plugin_state):
    class Failing:
        @hookimpl
        def asp_register_specializers(self, register):
            register.add_pass(specializer="elementwise", manager="elementwise-domain",
                              obj=double_literals)
            raise RuntimeError("half-registered")

    with pytest.warns(PluginWarning, match="half-registered"):
        plugins.register_plugin(Failing(), name="failing")
        assert plugins.get_registry().added_passes == []
