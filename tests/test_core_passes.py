"""PassManager: order, change reporting, disabling by name (unknown names are errors), errors
naming the pass, insertion, and ``asp explain --after PASS``."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import Dispatcher, Pass, PassManager, SpecializationContext, Unspecializable, asp_pass
from asp_core.passes import PassError, PassNeeded, PassReport, PassResult, known_passes
from pytest_asp import requires_compiler


def _ctx(**options) -> SpecializationContext:
    return SpecializationContext("test", None, options=options)


@asp_pass("double")
def double(ir, ctx):
    """Multiply by two."""
    return ir * 2, ir != 0


@asp_pass("inc", "add one")
def inc(ir, ctx):
    return PassResult(ir + 1, True)


@asp_pass("same")
def same(ir, ctx):
    return ir, False


@asp_pass("annotate")
def annotate(ir, ctx):
    """Reports a change the tree comparison would miss (an analysis filling in facts)."""
    return ir, True


def _passes(ctx):
    return [(r.name, r.skipped, r.changed) for r in ctx.passes]


def test_runs_in_order_and_records():
    pm = PassManager("m", [double, inc, same])
    ctx = _ctx()
    assert pm.run(3, ctx) == 7
    assert _passes(ctx) == [("double", False, True), ("inc", False, True), ("same", False, False)]
    assert all(isinstance(r, PassReport) and r.manager == "m" and r.seconds >= 0
               for r in ctx.passes)
    # the asp explain log says the same
    assert [(d["name"], d["changed"]) for e, d in ctx.events if e == "pass"] == \
        [(r.name, r.changed) for r in ctx.passes]
    assert double.description == "Multiply by two." and inc.description == "add one"
    assert isinstance(double, Pass) and pm.names == ["double", "inc", "same"]


def test_change_is_what_the_pass_reports_not_a_comparison():
    ctx = _ctx()
    # double(0) == 0 reports no change; annotate returns an equal IR but says it changed
    assert PassManager("m", [double, annotate]).run(0, ctx) == 0
    assert _passes(ctx) == [("double", False, False), ("annotate", False, True)]
    assert all(d["ir"] is None for e, d in ctx.events if e == "pass")  # no dumps unless explaining


def test_direct_call_returns_the_ir_and_apply_the_result():
    assert double(4, _ctx()) == 8
    assert double.apply(4, _ctx()) == PassResult(8, True)
    assert same.apply(4, _ctx()) == (4, False)


@pytest.mark.parametrize("bad, problem", [
    (None, r"returned None instead of \(ir, changed\)"),
    (5, r"returned int instead of \(ir, changed\)"),
    ((5,), r"returned tuple instead of \(ir, changed\)"),
    ((5, 1), r"returned \(ir, changed\) with changed a int, not a bool"),
    ((5, "yes"), r"returned \(ir, changed\) with changed a str, not a bool"),
    ((None, True), r"returned tuple instead of \(ir, changed\)"),
    ([5, True], r"returned list instead of \(ir, changed\)"),
    (("not the IR", True), "returned a str as its IR, not the int it was given")])
def test_pass_breaking_the_protocol_is_named(bad, problem):
    broken = Pass("protocol-breaker", lambda ir, ctx: bad)
    with pytest.raises(PassError, match=rf"'protocol-breaker' of 'mgr' {problem}"):
        PassManager("mgr", [broken]).run(1, _ctx())
    if "as its IR" not in problem:   # a direct call checks the protocol, not the IR's type
        with pytest.raises(PassError, match="'protocol-breaker' returned"):
            broken(1, _ctx())


def test_unknown_disabled_name_is_an_error_listing_known_passes(monkeypatch):
    pm = PassManager("m", [double, inc])
    monkeypatch.setenv("ASP_DISABLE_PASSES", "double,dobule")
    with pytest.raises(ValueError, match=r"unknown pass name 'dobule' in ASP_DISABLE_PASSES.*"
                                         r"known passes: .*\bdouble\b.*\binc\b"):
        pm.run(3, _ctx())
    monkeypatch.delenv("ASP_DISABLE_PASSES")
    with pytest.raises(ValueError, match=r"unknown pass names 'no-such-1', 'no-such-2'"):
        pm.run(3, _ctx(disable_passes=["no-such-2", "no-such-1"]))
    # a pass of another manager (another specializer) is known, so naming it is fine
    assert {"same", "annotate"} <= known_passes()
    ctx = _ctx(disable_passes="same,double")  # a string is split on commas, not into letters
    assert pm.run(3, ctx) == 4


def test_disable_by_environment_and_option(monkeypatch):
    pm = PassManager("m", [double, inc])
    monkeypatch.setenv("ASP_DISABLE_PASSES", " double , same")
    ctx = _ctx()
    assert pm.run(3, ctx) == 4
    assert _passes(ctx) == [("double", True, False), ("inc", False, True)]
    assert ctx.passes[0] == PassReport("m", "double", changed=False, skipped=True, seconds=0.0)
    monkeypatch.delenv("ASP_DISABLE_PASSES")
    ctx = _ctx(disable_passes=["inc"])
    assert pm.run(3, ctx) == 6
    assert _passes(ctx)[1] == ("inc", True, False)


def test_a_name_qualified_by_a_specializer_disables_its_pass_only(monkeypatch):
    """Pass names are not unique across plugins (a new specializer's ``constant-folding`` and
    asp-stencil's): ``ASP_DISABLE_PASSES=constant-folding`` switched off both, and the
    stencil kernels ran in Python. ``spec:name`` names one specializer's pass."""
    pm = PassManager("m", [double, inc])
    monkeypatch.setenv("ASP_DISABLE_PASSES", "gmm:double")
    other = SpecializationContext("stencil", None)
    assert pm.run(3, other) == 7
    assert _passes(other)[0] == ("double", False, True)
    own = SpecializationContext("gmm", None)
    assert pm.run(3, own) == 4
    assert _passes(own)[0] == ("double", True, False)
    monkeypatch.setenv("ASP_DISABLE_PASSES", "double")   # plain: every specializer's
    assert pm.run(3, SpecializationContext("stencil", None)) == 4
    monkeypatch.setenv("ASP_DISABLE_PASSES", "stencl:double")
    with pytest.raises(ValueError, match=r"names 'stencl', which no installed plugin registers "
                                         r"as a specializer \(write spec:pass with one of: .*gmm"):
        pm.run(3, other)
    monkeypatch.setenv("ASP_DISABLE_PASSES", "stencil:dobule")
    with pytest.raises(ValueError, match=r"unknown pass name 'dobule'"):
        pm.run(3, other)
    monkeypatch.delenv("ASP_DISABLE_PASSES")
    assert pm.run(3, SpecializationContext("gmm", None, options={
        "disable_passes": ["gmm:inc"]})) == 6


def test_a_disabled_pass_the_ir_needs_is_refused_naming_it():
    """A pass can declare when what follows needs it: disabled there, the kernel is refused
    naming it (asp-stencil's platforms declined a program that still held what a disabled pass
    removes, and the kernel ran in Python without a warning); disabled where it is not
    needed, it is simply skipped."""
    @asp_pass("halve", needed=lambda ir: "odd numbers only halve exactly" if ir % 2 else None)
    def halve(ir, ctx):
        return ir // 2, True

    pm = PassManager("m", [inc, halve])
    ctx = _ctx(disable_passes=["halve"])
    assert pm.run(1, ctx) == 2   # 1 + 1 is even: not needed
    assert _passes(ctx)[1] == ("halve", True, False)
    ctx = _ctx(disable_passes=["halve"])
    with pytest.raises(PassNeeded, match=r"pass 'halve' of 'm' is disabled \(ASP_DISABLE_PASSES "
                                         r"or the kernel option disable_passes\), and this "
                                         r"kernel needs it: odd numbers only halve exactly"):
        pm.run(2, ctx)
    assert _passes(ctx)[1] == ("halve", True, False)
    (event,) = [d for e, d in ctx.events if e == "pass" and d["name"] == "halve"]
    assert event["skipped"] and "needs it" in event["error"]


def test_error_names_the_pass():
    @asp_pass("broken")
    def broken(ir, ctx):
        return ir["missing"]

    pm = PassManager("mgr", [inc, broken])
    with pytest.raises(PassError, match=r"pass 'broken' of 'mgr' failed: TypeError") as info:
        pm.run(1, _ctx())
    assert isinstance(info.value.__cause__, TypeError)


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
        pm.add_after("nope", Pass("x", lambda ir, ctx: (ir, False)))


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
            return PassManager("buggy-domain", [Pass("explode", lambda ir, c: (1 / 0, True))]).run(
                dast, ctx)

    name = derived("ew-buggy", replace={("domain_optimization", "fold"): Buggy()})
    d = Dispatcher(name, _folded)
    a = np.ones(3)
    with pytest.warns(SpecializationWarning, match="pass 'explode' of 'buggy-domain' failed: "
                                                   "ZeroDivisionError"):
        np.testing.assert_array_equal(d(a), a * 5.0)


EXPLAIN_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from asp_core import Dispatcher, plugins
from tests.specializers import elementwise

if not plugins.get_plugin_manager().is_registered(elementwise):
    plugins.register_plugin(elementwise, name="explain-after-elementwise")


def folded(a):
    return a * (2.0 + 3.0)


assert np.array_equal(Dispatcher("elementwise", folded)(np.ones(4)), np.full(4, 5.0))
"""


@pytest.fixture
def explain_script(tmp_path, fresh_cache, monkeypatch):
    from pathlib import Path

    from asp_core import plugins

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    path = tmp_path / "fold_script.py"
    path.write_text(EXPLAIN_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1])))
    yield path
    plugins.unregister_plugin("explain-after-elementwise")


def _explain(*args):
    from click.testing import CliRunner

    from asp_core.cli import cli

    return CliRunner().invoke(cli, ["explain", *map(str, args)], catch_exceptions=False)


@requires_compiler
def test_explain_after_prints_the_ir_after_the_named_pass(explain_script, monkeypatch):
    out = _explain("--after", "constant-folding", explain_script)
    assert out.exit_code == 0, out.output
    assert "=== kernel folded (elementwise)" in out.output
    assert "--- IR after elementwise-domain:constant-folding (changed the IR)" in out.output
    assert "Num(value=5.0)" in out.output and "Bin(op='+')" not in out.output
    assert "--- components chosen" not in out.output  # only the IR was asked for
    monkeypatch.setenv("ASP_DISABLE_PASSES", "constant-folding")
    out = _explain("--after", "constant-folding", explain_script).output
    assert "constant-folding (skipped (disabled))" in out
    assert "Bin(op='+')" in out and "Num(value=5.0)" not in out


@requires_compiler
def test_explain_after_json_and_unknown_pass(explain_script):
    import json

    data = json.loads(_explain("--json", explain_script).output)
    (p,) = data["kernels"][0]["passes"]
    assert p["name"] == "constant-folding" and "Num(value=5.0)" in p["ir"]
    bad = _explain("--after", "constant-foldin", explain_script)
    assert bad.exit_code == 2
    assert "no pass is called 'constant-foldin'; known passes: " in bad.output
    assert "constant-folding" in bad.output.split("known passes:")[1]


def test_a_pass_of_a_plugin_not_imported_yet_is_known(tmp_path):
    """Components load lazily: naming a stencil pass must not be an error in a process that has
    only run GMM passes so far (the stencil pass modules are imported to check the name)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("asp_gmm")
    pytest.importorskip("asp_stencil")
    code = ("import sys\nfrom asp_gmm.programs import problem\n"
            "assert 'asp_stencil.passes' not in sys.modules\n"
            "problem('em_step', 2, 2, 'diag')\n"
            "print('asp_stencil.passes' in sys.modules)\n")
    env = dict(os.environ, ASP_DISABLE_PASSES="cse", ASP_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    env["ASP_DISABLE_PASSES"] = "cse,nonesuch"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "unknown pass name 'nonesuch'" in out.stderr and "linear-detection" in out.stderr


@asp_pass("triple")
def triple(ir, ctx):
    return ir * 3, True


def test_a_name_qualified_by_a_specializer_without_that_pass_is_refused(monkeypatch):
    """``gmm:unroll-neighbors`` (asp-stencil's pass) disabled nothing and said nothing: the
    user believed a GMM pass was off. Refused when that specializer runs, naming its passes."""
    pm = PassManager("m", [double, inc])
    monkeypatch.setenv("ASP_DISABLE_PASSES", "gmm:triple")
    assert pm.run(3, SpecializationContext("stencil", None)) == 7   # not gmm's run
    with pytest.raises(ValueError, match=r"names 'gmm:triple', but 'gmm' has no pass of that "
                                         r"name \(its passes: double, .*inc.*; the name belongs"):
        pm.run(3, SpecializationContext("gmm", None))
