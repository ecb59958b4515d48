"""``asp explain`` and the pass machinery as users meet them: a pass that refuses the kernel is
shown as such (``--after`` too, with the fallback), and the script runs as ``python SCRIPT``
would (its daemon threads are not waited for, a symlinked script imports its neighbours,
Ctrl-C keeps the reports and exits 130)."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from asp_core import DomainOptimizer, PassManager, SpecializationContext, asp_pass
from asp_core.cli import cli
from asp_core.passes import PassError


def _explain(*args):
    return CliRunner().invoke(cli, ["explain", *map(str, args)], catch_exceptions=False)


@asp_pass("hunt-keep")
def _keep(ir, ctx):
    return ir, False


@asp_pass("hunt-refuse")
def _refuse(ir, ctx):
    raise ctx.unsupported(None, "a construct hunt-refuse declines")


class _Refusing(DomainOptimizer):
    def optimize(self, dast, ctx):
        return PassManager("hunt-domain", [_keep, _refuse]).run(dast, ctx)


REFUSED_SCRIPT = """
import warnings

import numpy as np

from asp_core import Dispatcher


def folded(a):
    return a * (2.0 + 3.0)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert np.array_equal(Dispatcher({name!r}, folded)(np.ones(4)), np.full(4, 5.0))
"""


@pytest.fixture
def refused_script(tmp_path, fresh_cache, derived):
    name = derived("ew-hunt-refusing", replace={("domain_optimization", "fold"): _Refusing()})
    path = tmp_path / "refused.py"
    path.write_text(REFUSED_SCRIPT.format(name=name))
    return path


def test_after_a_pass_that_refused_the_kernel_says_so_and_shows_the_fallback(refused_script):
    """``--after PASS`` said "pass 'hunt-refuse' did not run for this kernel" of the pass that
    ran and refused it, and never showed the fallback; the pass list stopped at the pass
    before it."""
    out = _explain("--after", "hunt-refuse", refused_script)
    assert out.exit_code == 0, out.output
    assert "did not run" not in out.output
    assert "no IR after hunt-domain:hunt-refuse (raised: " in out.output
    assert "--- FALLBACK to pure Python" in out.output
    assert "a construct hunt-refuse declines" in out.output
    # the pass before it ran: its IR, then the fallback that ended the specialisation
    out = _explain("--after", "hunt-keep", refused_script)
    assert "--- IR after hunt-domain:hunt-keep (no change)" in out.output
    assert "--- FALLBACK to pure Python" in out.output
    text = _explain(refused_script).output
    assert "hunt-domain:hunt-keep: no change" in text
    assert "hunt-domain:hunt-refuse: raised: " in text
    kernel = json.loads(_explain("--json", refused_script).stdout)["kernels"][0]
    assert [(p["name"], bool(p["error"])) for p in kernel["passes"]] == [
        ("hunt-keep", False), ("hunt-refuse", True)]
    assert "a construct hunt-refuse declines" in kernel["passes"][1]["error"]


def test_after_takes_a_specializer_qualified_pass_and_applies_to_json(refused_script):
    """``--after`` was ignored with ``--json`` (every pass's IR came out) and refused
    ``SPEC:PASS``, the form ``ASP_DISABLE_PASSES`` takes."""
    kernel = json.loads(_explain("--json", "--after", "hunt-keep", refused_script).stdout
                        )["kernels"][0]
    assert [p["name"] for p in kernel["passes"]] == ["hunt-keep"]
    spec = kernel["specializer"]
    out = _explain("--after", f"{spec}:hunt-keep", refused_script)
    assert out.exit_code == 0, out.output
    assert "--- IR after hunt-domain:hunt-keep (no change)" in out.output
    # another specializer's kernels only: this one is not shown
    out = _explain("--after", "stencil:hunt-keep", refused_script)
    assert out.exit_code == 0 and "=== kernel" not in out.output, out.output
    # the name as the reports print it (pass manager:pass) was refused as "no specializer"
    out = _explain("--after", "hunt-domain:hunt-keep", refused_script)
    assert out.exit_code == 0, out.output
    assert "--- IR after hunt-domain:hunt-keep (no change)" in out.output
    # a prefix naming neither: nothing shown, and the report says what was filtered out
    out = _explain("--after", "nosuchspec:hunt-keep", refused_script)
    assert out.exit_code == 0 and "=== kernel" not in out.output
    assert "no kernel was specialised running nosuchspec:hunt-keep (of 1 specialised)" \
        in out.output


def test_a_failing_pass_is_logged_with_its_error_and_the_passes_disabled_before_it(
        monkeypatch):
    """A pass that fails after a pass it relies on was disabled: the error named only the
    failing pass ("pass 'type-check' failed: NotLowered: Attr node"), reading as a bug of that
    pass; it now names the disabled ones, and the explain log keeps the failure."""

    @asp_pass("hunt-needs-keep")
    def needs_keep(ir, ctx):
        return ir["folded"], True

    ctx = SpecializationContext("test", None, options={"disable_passes": ["hunt-keep"]})
    with pytest.raises(PassError, match=r"pass 'hunt-needs-keep' of 'm' failed: TypeError: .*"
                                        r"\(disabled before it: hunt-keep\)"):
        PassManager("m", [_keep, needs_keep]).run(1, ctx)
    logged = [(d["name"], d["skipped"], d["error"]) for e, d in ctx.events if e == "pass"]
    assert logged[0] == ("hunt-keep", True, None)
    assert logged[1][:2] == ("hunt-needs-keep", False) and "TypeError" in logged[1][2]
    assert [r.name for r in ctx.passes] == ["hunt-keep"]   # the typed reports: passes that ended


def test_explain_does_not_wait_for_the_script_s_daemon_threads(tmp_path, monkeypatch):
    """``python SCRIPT`` does not wait for a daemon thread (a monitor, a server loop); explain
    waited its whole limit (300 s) for one and then said its kernels were not shown. Asp's own
    background threads (daemon threads named ``asp-...``) are still waited for."""
    from asp_core.cli import explain

    monkeypatch.setattr(explain, "WAIT_LIMIT_S", 3.0)
    done = tmp_path / "asp_thread_done"
    path = tmp_path / "daemon.py"
    path.write_text(textwrap.dedent(f"""
        import pathlib, threading, time

        threading.Thread(target=threading.Event().wait, args=(60,), daemon=True).start()

        def late():
            time.sleep(0.3)
            pathlib.Path({str(done)!r}).write_text("done")

        threading.Thread(target=late, daemon=True, name="asp-hunt-late").start()
    """))
    result = _explain(path)
    assert result.exit_code == 0, result.output
    assert "stopped waiting" not in result.output
    assert done.read_text() == "done"   # waited for Asp's thread


def test_explain_of_a_symlinked_script_imports_the_modules_beside_the_real_file(tmp_path):
    """``python link.py`` puts the directory of the file the link points to first on sys.path;
    explain put the link's directory there, so the script's own imports failed."""
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (real / "hunt_sibling_module.py").write_text("VALUE = 41\n")
    (real / "script.py").write_text("import hunt_sibling_module\n"
                                    "assert hunt_sibling_module.VALUE == 41\n")
    (links / "script.py").symlink_to(real / "script.py")
    try:
        result = _explain(links / "script.py")
    finally:
        sys.modules.pop("hunt_sibling_module", None)
    assert result.exit_code == 0, result.output
    assert "no kernel was specialised" in result.output


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("does", ["sys.stdout.close()", "sys.stdout = open(os.devnull, 'w')",
                                  "sys.stderr.close(); sys.stdout.close()"])
def test_a_script_that_closes_or_replaces_stdout_still_gets_its_report(tmp_path, fresh_cache,
                                                                       does, as_json):
    """A script that closed ``sys.stdout`` (or pointed it at a file) made ``asp explain``
    end in "I/O operation on closed file" (status 1, no report), or print the report into the
    script's file."""
    import subprocess

    script = tmp_path / "closes.py"
    script.write_text(f"import os, sys\nprint('from the script')\n{does}\n")
    proc = subprocess.run([sys.executable, "-m", "asp_core.cli", "explain",
                           *(["--json"] if as_json else []), str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    if as_json:
        assert json.loads(proc.stdout) == {"kernels": []}
    else:
        assert "from the script" in proc.stdout
        assert "asp explain: no kernel was specialised" in proc.stdout


def test_ctrl_c_in_the_script_keeps_the_reports_and_exits_130(tmp_path, elementwise):
    """A KeyboardInterrupt (Ctrl-C) in the script became click's "Aborted!" with status 1 and
    no report; ``python SCRIPT`` prints the traceback and exits 130."""
    path = tmp_path / "interrupted.py"
    path.write_text(textwrap.dedent("""
        import warnings

        import numpy as np

        from asp_core import Dispatcher


        def squares(a):
            return a ** 2


        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Dispatcher("elementwise", squares)(np.ones(3))
        raise KeyboardInterrupt
    """))
    result = _explain(path)
    assert result.exit_code == 130, result.output
    assert "Aborted!" not in result.output
    assert "KeyboardInterrupt" in result.output
    assert "=== kernel squares" in result.output and "FALLBACK to pure Python" in result.output
    # a BaseException subclass of the script's own: its traceback, status 1, the reports
    path.write_text(path.read_text().replace(
        "raise KeyboardInterrupt", "class Stop(BaseException):\n    pass\nraise Stop('stop')"))
    result = _explain(path)
    assert result.exit_code == 1, result.output
    assert "Stop: stop" in result.output
    assert "=== kernel squares" in result.output and "FALLBACK to pure Python" in result.output


def test_explain_shows_dropped_candidates_and_the_plugins_own_decisions(fresh_cache):
    """A candidate the tuner dropped (``exclude``: iterate prunes plain sweeps and blocked
    variants after one timing) and a plugin's own typed decision (asp-mpk's ``plan-fallback``)
    were recorded "for asp explain" and shown nowhere: the report listed the winner's rivals
    without the dropped ones."""
    from asp_core import recording
    from asp_core.autotune import Autotuner
    from asp_core.cli.explain import _record_dict, render

    ctx = SpecializationContext("test", None, kernel_name="k")
    tuner = Autotuner("hunt-explain-key", ["plain", "blocked"], mode="always",
                      on_event=ctx.tuning_events("iterate", chunk=4))
    tuner.exclude("plain", "first timing over 1.5x the fastest")
    ctx.decide("plan-fallback", "naive", reason="closures exceed 4x nnz", variant="csr-few")
    recording.start()
    try:
        recording.add_context(ctx, "k")
    finally:
        (rec,) = recording.stop()
    data = _record_dict(rec)
    text = render(data)
    assert "--- autotuning: winner blocked (only variant left: the others were excluded)" in text
    assert "--- candidates dropped\n  plain: first timing over 1.5x the fastest" in text
    assert "  plan-fallback: naive — closures exceed 4x nnz (variant=csr-few)" in text
    assert "  iterate: blocked (only variant left: the others were excluded; chunk=4)" in text
    assert json.loads(json.dumps(data["dropped"])) == [
        {"variant": "plain", "reason": "first timing over 1.5x the fastest"}]
    assert [d["what"] for d in data["decisions"]] == ["iterate", "plan-fallback"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork")
def test_a_child_the_script_forks_prints_no_report_of_its_own(tmp_path, fresh_cache):
    """The child left the script by ``sys.exit`` inside ``asp explain`` and printed the
    reports again (``--json``: two documents on stdout); it ends as under ``python SCRIPT``,
    with its own status, and only the parent reports."""
    import subprocess

    script = tmp_path / "forks.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        pid = os.fork()
        if pid == 0:
            sys.exit(3)
        _, status = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(status), file=sys.stderr)
    """))
    for args in (["--json"], []):
        proc = subprocess.run([sys.executable, "-m", "asp_core.cli", "explain", *args,
                               str(script)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "child status 3" in proc.stderr
        assert "exited with" not in proc.stderr   # the child's exit is the parent's to see
        if args:
            assert json.loads(proc.stdout) == {"kernels": []}
        else:
            assert proc.stdout.count("no kernel was specialised") == 1


def test_a_component_s_own_events_are_shown():
    """``ctx.record("my-note", ...)``, which the writer's guide gives for what ``asp explain``
    should show, was in neither the text report nor ``--json``."""
    from asp_core import recording
    from asp_core.cli.explain import _record_dict, render

    rec = recording.KernelRecord(kernel="k", specializer="s", key="()", events=[
        ("my-note", {"build": 1, "time": 0.0}), ("decision", {"what": "x", "choice": "y"})])
    data = _record_dict(rec)
    assert data["events"] == [{"event": "my-note", "build": 1}]
    assert "--- other events\n  my-note: build=1" in render(data)


SELF_DEFINED_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})

import numpy as np

from asp_core import Dispatcher, DomainOptimizer, PassManager, asp_pass, plugins
from tests.specializers.derived import DerivedPlugin


@asp_pass("script-own-pass")
def own(ir, ctx):
    return ir, False


class Own(DomainOptimizer):
    def optimize(self, dast, ctx):
        return PassManager("script-domain", [own]).run(dast, ctx)


plugins.register_plugin(DerivedPlugin("ew-script", replace={{("domain_optimization", "fold"):
                                                              Own()}}), name="ew-script")


def double(a):
    return a * 2.0


try:
    assert np.array_equal(Dispatcher("ew-script", double)(np.ones(4)), np.full(4, 2.0))
finally:
    plugins.unregister_plugin("ew-script")
"""


def test_after_names_a_pass_and_specializer_the_script_defines(tmp_path, fresh_cache):
    """A pass (or specializer) the script registers in-process was refused before it ran: "no
    pass is called 'script-own-pass'" (notebook-born specializers could not be explained)."""
    from pathlib import Path

    path = tmp_path / "own.py"
    path.write_text(SELF_DEFINED_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1])))
    for after in ("script-own-pass", "ew-script:script-own-pass"):
        out = _explain("--after", after, path)
        assert out.exit_code == 0, out.output
        assert "--- IR after script-domain:script-own-pass (no change)" in out.output
    # a name the script holds but never defines: refused once the script ran, listing its pass
    path.write_text(path.read_text() + "\n# script-own-pas\n")
    out = _explain("--after", "script-own-pas", path)
    assert out.exit_code == 2 and "no pass is called 'script-own-pas'" in out.output
    assert "script-own-pass" in out.output
