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

    def __init__(self, obj=double_literals, specializer="elementwise", **where):
        self.obj, self.specializer, self.where = obj, specializer, where

    @hookimpl
    def asp_register_specializers(self, register):
        register.add_pass(specializer=self.specializer, manager="elementwise-domain",
                          obj=self.obj, **self.where)


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
@pytest.mark.parametrize("anchor_first", [True, False])
def test_an_added_pass_may_follow_one_another_plugin_added(add_pass, anchor_first):
    """Whichever plugin loads first (entry points load by name): the pass anchored on the
    other's was left out when its plugin loaded first."""
    @asp_pass("halve-literals")
    def halve(dast, ctx):
        return dast, False

    if anchor_first:
        add_pass(after="constant-folding")
    add_pass(obj=halve, before="double-literals")
    if not anchor_first:
        add_pass(after="constant-folding")
    _, passes = _run(np.ones(3))
    assert [name for name, _ in passes] == ["constant-folding", "halve-literals",
                                            "double-literals"]


@requires_compiler
@pytest.mark.parametrize("fn, problem", [
    (lambda ir, ctx: 1 / 0, "failed: ZeroDivisionError"),
    (lambda ir, ctx: ("not the IR", True), "returned a str as its IR, not the Map it was given")])
def test_an_added_pass_that_fails_names_the_plugin_that_added_it(add_pass, fn, problem):
    """A pass returning another IR had the next pass blamed ("'output-forwarding' failed:
    AttributeError"), or the specializer's own component when it ran last."""
    from asp_core import Pass, SpecializationWarning

    add_pass(obj=Pass("misbehaving", fn), before="constant-folding")
    a = np.ones(3)
    with pytest.warns(SpecializationWarning,
                      match=rf"pass 'misbehaving' of 'elementwise-domain' \(added by plugin "
                            rf"'adder-0' \(in-process\)\) {problem}"):
        out, _ = _run(a)
    np.testing.assert_array_equal(out, a * 5.0)   # in Python, as the warning says
    assert not any(b.name == "test-elementwise" for b in plugins.broken_plugins())


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


@pytest.mark.parametrize("kw, problem", [
    ({"obj": "tests.no_such_module:x"}, "cannot be loaded from 'tests.no_such_module:x'"),
    ({"specializer": "elementwize"}, "no installed plugin registers specializer "
                                     "'elementwize'"),
    ({"after": "constant-foldng"}, "is to run next to 'constant-foldng', which no installed "
                                   "plugin defines")])
def test_asp_doctor_reports_an_added_pass_that_cannot_run(add_pass, kw, problem):
    """Only a kernel's run reported these, or nothing did (a misspelt specializer); asp list
    showed the pass with "broken": []."""
    from asp_core.passes import check_added

    specializer = kw.pop("specializer", "elementwise")
    plugins.register_plugin(_Adder(specializer=specializer, **kw), name="misplaced")
    try:
        with pytest.warns(PluginWarning, match="failed to add pass for"):
            check_added()
        assert any(problem in b.error for b in plugins.broken_plugins())
        if "after" not in kw:   # asp list finds these without importing every component
            plugins.reset()
            plugins.register_plugin(_Adder(specializer=specializer, **kw), name="misplaced")
            with pytest.warns(PluginWarning, match=problem):
                data = listing()
            assert any(problem in b["error"] for b in data["broken"])
    finally:
        plugins.unregister_plugin("misplaced")


@requires_compiler
def test_a_pass_added_to_a_manager_no_kernel_runs_is_warned_about(elementwise, fresh_cache,
                                                                   monkeypatch):
    """A misspelt manager name: the pass never ran, and nothing said so."""
    class Misspelt:
        @hookimpl
        def asp_register_specializers(self, register):
            register.add_pass(specializer="elementwise", manager="elementwise_domain",
                              obj=double_literals)

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    plugins.register_plugin(Misspelt(), name="misspelt")
    try:
        with pytest.warns(PluginWarning, match="'elementwise' kernels have run the pass managers "
                                               "elementwise-domain but none called "
                                               "'elementwise_domain'"):
            out, _ = _run(np.ones(3))
        np.testing.assert_array_equal(out, np.full(3, 5.0))
    finally:
        plugins.unregister_plugin("misspelt")


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


LEFT_OUT_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from asp_core import Dispatcher, plugins
from tests.specializers import elementwise
from tests.test_core_added_passes import _Adder

for plugin, name in ((elementwise, "left-out-elementwise"),
                     (_Adder(after="constant-fold"), "left-out-adder")):
    if not plugins.get_plugin_manager().is_registered(plugin):
        plugins.register_plugin(plugin, name=name)


def folded(a):
    return a * (2.0 + 3.0)


assert np.array_equal(Dispatcher("elementwise", folded)(np.ones(4)), np.full(4, 5.0))
"""


@requires_compiler
def test_asp_explain_says_why_an_added_pass_was_left_out(tmp_path, fresh_cache, monkeypatch):
    """Only the PluginWarning on stderr said so: ``--after`` printed "did not run for this
    kernel" with no reason."""
    from pathlib import Path

    from click.testing import CliRunner

    from asp_core.cli import cli

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    script = tmp_path / "left_out.py"
    script.write_text(LEFT_OUT_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1])))
    try:
        with pytest.warns(PluginWarning, match="is to run after 'constant-fold'"):
            out = CliRunner().invoke(cli, ["explain", "--after", "double-literals",
                                           str(script)], catch_exceptions=False)
    finally:
        for name in ("left-out-adder", "left-out-elementwise"):
            plugins.unregister_plugin(name)
    assert out.exit_code == 0, out.output
    assert "--- no IR after elementwise-domain:double-literals (left out: added by plugin " \
           "'left-out-adder' (in-process); pass for elementwise/elementwise-domain: pass " \
           "'double-literals' is to run after 'constant-fold'" in out.output, out.output
