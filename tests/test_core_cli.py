"""The ``asp`` command line through click's CliRunner: list, explain, doctor, cache, bench."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from asp_core import PHASES
from asp_core import plugins as plugins_mod
from asp_core.cli import cli
from pytest_asp import requires_compiler
from tests.specializers.fake_plugins import FakeEntryPoint, install

REPO = Path(__file__).resolve().parents[1]


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- asp list -----------------------------------------------------------------------------------
def test_list_json_schema(elementwise):
    result = _invoke("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"specializers", "broken"}
    assert isinstance(data["broken"], list)
    for b in data["broken"]:
        assert set(b) >= {"name", "distribution", "error"}
    by_name = {s["name"]: s for s in data["specializers"]}
    assert "elementwise" in by_name
    for spec in data["specializers"]:
        assert {"name", "distribution", "version", "phases", "unmet"} <= set(spec)
        assert list(spec["phases"]) == list(PHASES)
        chosen = None
        for phase, comps in spec["phases"].items():
            for comp in comps:
                assert {"name", "distribution", "default", "unavailable"} <= set(comp)
                assert isinstance(comp["default"], bool)
            defaults = [c for c in comps if c["default"]]
            assert len(defaults) <= 1, f"{spec['name']}/{phase}: several defaults"
            if phase == "platform_selection":
                usable = [c for c in comps if not c["unavailable"]]
                assert defaults == usable[:1]
                chosen = usable[0]["name"] if usable else None
            elif phase in ("platform_optimization", "backend") and chosen:
                serving = [c for c in comps if not c["platforms"] or chosen in c["platforms"]]
                assert defaults == serving[:1]
            else:
                assert defaults == comps[:1]
    ew = by_name["elementwise"]
    assert ew["distribution"] == "(in-process)"
    sel = ew["phases"]["platform_selection"]
    assert [(c["name"], c["default"]) for c in sel] == [("openmp", True), ("python", False)]
    assert [(c["name"], c["platforms"], c["default"]) for c in ew["phases"]["backend"]] == [
        ("c", ["openmp"], True), ("vectorize", ["python"], False)]


def test_list_default_follows_settings_and_unavailable_platforms(elementwise, monkeypatch):
    """The default is what a kernel gets here: a user setting wins; a platform that cannot run
    on this machine (no GPU, say) is passed over, with its reason, and the backend follows."""
    def by(data):
        ew = next(s for s in data["specializers"] if s["name"] == "elementwise")
        return {phase: [c["name"] for c in comps if c["default"]]
                for phase, comps in ew["phases"].items()}, ew

    monkeypatch.setenv("ASP_PLATFORM_SELECTION", "python")
    defaults, _ = by(json.loads(_invoke("list", "--json").output))
    assert defaults["platform_selection"] == ["python"] and defaults["backend"] == ["vectorize"]
    monkeypatch.delenv("ASP_PLATFORM_SELECTION")
    monkeypatch.setattr(elementwise.OpenMPPlatform, "unavailable_reason",
                        lambda self: "no such device here", raising=False)
    defaults, ew = by(json.loads(_invoke("list", "--json").output))
    assert defaults["platform_selection"] == ["python"] and defaults["backend"] == ["vectorize"]
    omp = ew["phases"]["platform_selection"][0]
    assert omp["name"] == "openmp" and omp["unavailable"] == "no such device here"
    text = _invoke("list").output
    assert "unavailable: no such device here" in text


def test_list_names_a_setting_that_no_component_answers(elementwise, monkeypatch):
    """A setting naming no installed component (or one serving another platform) cannot be
    honoured, and the kernels run in Python: asp list still showed the highest-priority
    component as the default."""
    def ew():
        data = json.loads(_invoke("list", "--json").output)
        return next(s for s in data["specializers"] if s["name"] == "elementwise")

    monkeypatch.setenv("ASP_BACKEND", "elementwise:nosuch")
    spec = ew()
    assert spec["unmet"] == [{"phase": "backend", "setting": "ASP_BACKEND",
                              "component": "nosuch"}]
    assert not any(c["default"] for c in spec["phases"]["backend"])
    assert "ASP_BACKEND asks for 'nosuch' in backend" in _invoke("list").output
    monkeypatch.setenv("ASP_BACKEND", "elementwise:vectorize")   # the python platform's
    assert [u["component"] for u in ew()["unmet"]] == ["vectorize"]
    monkeypatch.delenv("ASP_BACKEND")
    assert ew()["unmet"] == []


@pytest.mark.parametrize("value", ["elementwise:c,elementwise:vectorize", "elementwise:"])
def test_list_of_a_setting_naming_no_one_component_is_one_line(elementwise, monkeypatch, value):
    """``asp list`` ended in a traceback where ``asp doctor`` fails a settings row."""
    monkeypatch.setenv("ASP_BACKEND", value)
    for args in (["list"], ["list", "--json"]):
        out = _invoke(*args)
        assert out.exit_code == 1 and "Traceback" not in out.output, out.output
        assert out.output.startswith("Error: ASP_BACKEND=") and out.output.count("\n") == 1


def test_list_reports_installed_distributions_and_versions():
    """Specializers from entry points carry their distribution's real name and version."""
    data = json.loads(_invoke("list", "--json").output)
    dists = {ep.dist.name: ep.dist.version for ep in metadata.entry_points(group="asp")
             if ep.dist}
    for spec in data["specializers"]:
        if spec["distribution"] in dists:
            assert spec["version"] == dists[spec["distribution"]]
        for comps in spec["phases"].values():
            for comp in comps:
                if comp["distribution"] in dists:
                    assert comp["version"] == dists[comp["distribution"]]


def test_list_text(elementwise):
    out = _invoke("list").output
    row = next(line for line in out.splitlines() if " openmp " in line and "(in-process)" in line)
    assert "default" in row and "elementwise" in out and "platform_selection" in out


# -- asp explain --------------------------------------------------------------------------------
SCRIPT = '''
import sys
import warnings
sys.path.insert(0, {repo!r})

import numpy as np

from asp_core import Dispatcher, plugins
from tests.specializers import elementwise

if not plugins.get_plugin_manager().is_registered(elementwise):
    plugins.register_plugin(elementwise, name="explain-elementwise")


def saxpy(a, b):
    return 3.0 * a + b * (1.0 + 1.0)


def squares(a):
    return a ** 2  # FALLBACK-LINE


a, b = np.ones(100), np.arange(100.0)
d = Dispatcher("elementwise", saxpy)
for _ in range(8):
    assert np.array_equal(d(a, b), 3.0 * a + 2.0 * b)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert np.array_equal(Dispatcher("elementwise", squares)(a), a ** 2)
'''


@pytest.fixture
def script(tmp_path, fresh_cache):
    path = tmp_path / "user_script.py"
    path.write_text(SCRIPT.format(repo=str(REPO)))
    yield path
    plugins_mod.unregister_plugin("explain-elementwise")


def _fallback_line(path: Path) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1)
                if line.endswith("# FALLBACK-LINE"))


@requires_compiler
def test_explain_text(script, fresh_cache):
    result = _invoke("explain", str(script))
    assert result.exit_code == 0, result.output
    out = result.output
    saxpy = out[out.index("=== kernel saxpy"):out.index("=== kernel squares")]
    for needle in [
        f"at {script}:",
        "--- Python source", "def saxpy(a, b):",
        "--- DAST after frontend", "Map(nparams=2)",
        "--- DAST after domain_optimization", "Num(value=2.0)",
        "--- domain/platform passes", "elementwise-domain:constant-folding: changed the IR",
        "--- components chosen",
        "platform_selection: openmp — highest priority (10)",
        "backend: c",
        "--- platform program (openmp)", "void asp_map(", "(3.0 * in0[i])",
        "--- variants: parallel-simd, serial",
        "--- compile asp_map for variant parallel-simd (compiled in ", "-shared", "-fopenmp",
        f"cache entry: {fresh_cache}",
        "--- autotuning: winner",
    ]:
        assert needle in saxpy, f"{needle!r} missing from:\n{saxpy}"
    assert saxpy.count(" ms  (") == 2  # one timing line per variant
    squares = out[out.index("=== kernel squares"):]
    line = _fallback_line(script)
    assert "--- FALLBACK to pure Python" in squares
    assert f"unsupported construct `BinOp` at {script}:{line}:12" in squares


@requires_compiler
def test_explain_json_and_kernel_filter(script, fresh_cache):
    result = _invoke("explain", "--json", str(script))
    assert result.exit_code == 0, result.output
    kernels = json.loads(result.output)["kernels"]
    assert [k["kernel"] for k in kernels] == ["saxpy", "squares"]
    sax, sq = kernels
    assert sax["fallback"] is None and sax["file"] == str(script)
    assert "def saxpy" in sax["source"] and sax["specializer"] == "elementwise"
    assert {p["phase"] for p in sax["phases"]} == set(PHASES)
    assert sax["variants"][0]["names"] == ["parallel-simd", "serial"]
    assert {c["variant"] for c in sax["compiles"]} == {"parallel-simd", "serial"}
    for comp in sax["compiles"]:
        assert Path(comp["path"]).exists() and comp["command"][0]
        assert "asp_map" in comp["source"]
    assert sax["autotune"][-1]["source"] == "tuned now"
    assert sq["fallback"].startswith("unsupported construct `BinOp`")
    assert f":{_fallback_line(script)}:" in sq["fallback"]
    only = json.loads(_invoke("explain", "--json", "--kernel", "squa", str(script)).output)
    assert [k["kernel"] for k in only["kernels"]] == ["squares"]


def test_explain_script_without_kernels(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text("x = 1\n")
    assert "no kernel was specialised" in _invoke("explain", str(path)).output
    failing = tmp_path / "exits.py"
    failing.write_text("raise SystemExit(3)\n")
    result = _invoke("explain", str(failing))
    assert "exited with 3" in result.output and result.exit_code == 3   # CI sees the failure
    path.write_text("print('ran')\n")
    result = CliRunner().invoke(cli, ["explain", "--after", "no-such-pass", str(path)])
    assert result.exit_code == 2 and "no pass is called 'no-such-pass'" in result.output
    assert "ran" not in result.output   # refused before the script ran


def test_explain_passes_every_argument_after_the_script_to_it(tmp_path):
    """``asp explain SCRIPT ARGS`` is ``python SCRIPT ARGS``: options the script shares with asp
    (``--json``, ``-h``), ones asp lacks (``--n``) and ``--`` all reach the script's argv;
    asp's own options go before SCRIPT."""
    seen = tmp_path / "argv.json"
    path = tmp_path / "args.py"
    path.write_text(f"import json, sys\nopen({str(seen)!r}, 'w').write(json.dumps(sys.argv))\n")
    for args in (["--n", "3", "a", "--", "b"], ["--json"], ["-h"]):
        result = _invoke("explain", str(path), *args)
        assert result.exit_code == 0, result.output
        assert json.loads(seen.read_text()) == [str(path), *args]
        assert "Usage:" not in result.output and '"kernels"' not in result.output
    result = _invoke("explain", "--json", "--kernel", "x", str(path), "--kernel")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"kernels": []}
    assert json.loads(seen.read_text()) == [str(path), "--kernel"]


def test_explain_reports_a_script_error_as_python_does(tmp_path):
    """Only the script's frames, not explain's and runpy's; a file that is not Python is
    Python's SyntaxError report, without a traceback."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world text\n")
    result = CliRunner().invoke(cli, ["explain", str(notes)])
    assert result.exit_code == 1
    assert f'File "{notes}", line 1' in result.output
    assert "SyntaxError: invalid syntax" in result.output
    assert "Traceback" not in result.output and "runpy" not in result.output
    raising = tmp_path / "raising.py"
    raising.write_text("def fail():\n    raise ValueError('boom')\n\n\nfail()\n")
    result = CliRunner().invoke(cli, ["explain", str(raising)])
    assert result.exit_code == 1
    trace = result.output[result.output.index("Traceback (most recent call last):"):]
    frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
    assert frames == [(str(raising), "5"), (str(raising), "2")], trace
    assert "ValueError: boom" in trace


# -- asp doctor ---------------------------------------------------------------------------------
def test_cache_sizes_say_whose_they_are():
    """A VM reporting its host's 480 MiB L3 to a 2-CPU guest, a cache shared beyond the CPUs
    this process may use, and a plain machine."""
    from asp_core.cli.doctor import caches_note

    mib = 1 << 20
    caches = {"L1d": 48 << 10, "L2": 2 * mib, "L3": 480 * mib}
    vm = caches_note(caches, {"L3": 2}, hypervisor=True, usable=2)
    assert "VM host" in vm and "480 MiB" in vm
    assert caches_note({"L3": 32 * mib}, {"L3": 2}, hypervisor=True, usable=2) == ""
    shared = caches_note({"L3": 32 * mib}, {"L3": 16}, hypervisor=False, usable=4)
    assert "shared by 16 CPUs" in shared and "may use 4" in shared
    assert caches_note({"L3": 32 * mib}, {"L3": 16}, False, 16) == ""


def test_stream_copy_is_measured_once_and_cached(fresh_cache, monkeypatch):
    from asp_bench import stream

    from asp_core import hardware
    from asp_core.cli.doctor import stream_copy_gbs

    calls = []

    def fake(nbytes, repeats=8):
        calls.append(nbytes)
        return 12.5

    monkeypatch.setattr(stream, "measure_stream_copy", fake)
    hw = hardware.query()
    assert stream_copy_gbs(hw) == 12.5
    assert len(calls) == 1 and calls[0] >= 64 << 20
    stored = json.loads((fresh_cache / "hardware.json").read_text())
    assert stored["stream_copy_gbs"] == 12.5
    assert stream_copy_gbs(hw) == 12.5 and len(calls) == 1  # second call: no measurement
    assert stream_copy_gbs(hw, refresh=True) == 12.5 and len(calls) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # another configuration: measured again
    stream_copy_gbs(hw)
    assert len(calls) == 3


def test_corrupt_stream_cache_is_remeasured(fresh_cache, monkeypatch):
    from asp_bench import stream

    from asp_core import hardware
    from asp_core.cli.doctor import stream_copy_gbs

    monkeypatch.setattr(stream, "measure_stream_copy", lambda nbytes, repeats=8: 3.0)
    from asp_core.cache import CodeCache

    CodeCache(fresh_cache).ensure()
    (fresh_cache / "hardware.json").write_text("{ broken")
    assert stream_copy_gbs(hardware.query()) == 3.0


def test_doctor_no_stream(fresh_cache, monkeypatch):
    from asp_bench import stream

    monkeypatch.setattr(stream, "measure_stream_copy",
                        lambda *a, **k: pytest.fail("--no-stream measured the bandwidth"))
    result = _invoke("doctor", "--no-stream")
    out = result.output
    for name in ("c compiler", "OpenMP", "GPU", "MPI", "cache", "plugins"):
        assert f"] {name}" in out, out
    assert "machine:" in out and "STREAM" not in out
    assert result.exit_code == (1 if "FAIL" in out else 0)


def test_doctor_without_asp_bench_names_an_install_that_works(fresh_cache, monkeypatch):
    """asp-bench is released with asp-core, not found on every package index: the hint was
    `pip install asp-bench`, which a fresh environment answered with "No matching
    distribution found"; from a checkout it is the checkout's plugins/asp-bench."""
    from asp_core import hardware
    from asp_core.cli.doctor import _stream_check

    monkeypatch.setitem(sys.modules, "asp_bench", None)   # as if not installed
    name, ok, detail = _stream_check(hardware.query(), refresh=True)
    source = Path(__file__).resolve().parents[1] / "plugins" / "asp-bench"
    assert (name, ok) == ("STREAM copy", True)
    assert f"pip install -e {source}" in detail, detail


def test_doctor_names_components_for_platforms_nobody_provides(elementwise):
    """A backend serving a platform no installed plugin provides (a misspelt one) is never
    used, and nothing said so."""
    import types

    from asp_core import hookimpl, plugins
    from asp_core.cli.doctor import checks

    class Misspelt:
        platforms = ("opnemp",)

    @hookimpl
    def asp_register_specializers(register):
        register.component(specializer="elementwise", phase="backend", name="typo",
                           obj=Misspelt())

    assert not [c for c in checks(measure_stream=False) if c[0] == "unused components"]
    name = plugins.register_plugin(types.SimpleNamespace(
        asp_register_specializers=asp_register_specializers), name="misspelt")
    try:
        rows = [c for c in checks(measure_stream=False) if c[0] == "unused components"]
    finally:
        plugins.unregister_plugin(name)
    assert rows and rows[0][1] is True
    assert "elementwise/backend/typo (in-process) serves opnemp, which no installed " \
           "elementwise platform is: never used" in rows[0][2]


def test_doctor_names_components_of_a_specializer_no_plugin_defines():
    """asp-stencil-numpy left behind by ``pip uninstall asp-stencil``: its components are
    never used, and doctor said only "[ok] plugins"."""
    import types

    from asp_core import hookimpl, plugins
    from asp_core.cli.doctor import checks

    @hookimpl
    def asp_register_specializers(register):
        register.component(specializer="no-such-spec", phase="backend", name="left",
                           obj=object())

    name = plugins.register_plugin(types.SimpleNamespace(
        asp_register_specializers=asp_register_specializers), name="leftover")
    try:
        rows = [c for c in checks(measure_stream=False) if c[0] == "unused components"]
    finally:
        plugins.unregister_plugin(name)
    assert rows and "components of specializer 'no-such-spec' (in-process), which no " \
        "installed plugin defines: never used" in rows[0][2]


def test_doctor_labels_fresh_and_cached_bandwidth_honestly(fresh_cache, monkeypatch):
    """First run: measured now (announced before the wait); second: the cached figure with its
    date; --refresh: measured again."""
    from asp_bench import stream

    calls = []
    monkeypatch.setattr(stream, "measure_stream_copy",
                        lambda *a, **k: calls.append(1) or 21.5)
    first = _invoke("doctor").output
    assert re.search(r"STREAM copy +21\.5 GB/s \(measured now\)", first) and len(calls) == 1
    second = _invoke("doctor").output
    assert "21.5 GB/s (cached measurement from 2" in second and len(calls) == 1
    third = _invoke("doctor", "--refresh").output
    assert "(measured now)" in third and len(calls) == 2


def test_explain_sections_mark_generated_code_for_highlighting():
    from asp_core.cli.explain import _sections, render

    rec = {"kernel": "k", "specializer": "s", "file": "f.py", "line": 1, "key": "x",
           "source": "def k(): ...", "dast": [], "passes": [], "phases": [], "variants": [],
           "program": [{"platform": "openmp", "text": "void f(void) {}\n"}], "compiles": [],
           "autotune": [], "fallback": None}
    lexers = [lexer for lexer, _ in _sections(rec)]
    assert lexers == ["", "c"] and "void f(void) {}" in render(rec)
    rec["program"][0]["platform"] = "cuda"
    assert [lexer for lexer, _ in _sections(rec)] == ["", "cuda"]


def test_doctor_explains_broken_plugin_and_bad_cache(plugin_state, monkeypatch, tmp_path):
    install(monkeypatch, FakeEntryPoint("halfbaked", ImportError("No module named 'nothere'"),
                                        dist="asp-halfbaked"))
    root = tmp_path / "open-cache"
    root.mkdir()
    root.chmod(0o777)
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    try:
        with pytest.warns(Warning):
            result = _invoke("doctor", "--no-stream")
    finally:
        root.chmod(0o700)
    assert result.exit_code == 1
    assert "BROKEN halfbaked (asp-halfbaked): ImportError: No module named 'nothere'" in \
        result.output
    assert "FAIL" in result.output and "writable by other users" in result.output


# -- asp cache ----------------------------------------------------------------------------------
@requires_compiler
def test_cache_info_verify_clear(fresh_cache):
    from asp_core.autotune import PerfDB
    from asp_core.build import compile_library

    good = compile_library("int f(void) { return 1; }\n", name="f", openmp=False)
    bad = compile_library("int g(void) { return 2; }\n", name="g", openmp=False)
    PerfDB().set_winner("k" * 64, "fast-variant", label="demo:kernel")
    out = _invoke("cache", "info").output
    assert f"cache directory: {fresh_cache}" in out
    assert "entries: 2" in out and "autotuned kernels: 1" in out
    assert "demo:kernel: fast-variant" in out
    (bad.path.parent / "meta.json").write_text("{}")
    out = _invoke("cache", "verify").output
    assert "1 entries OK, 1 bad entries or build leftovers removed" in out and bad.key in out
    assert good.path.exists() and not bad.path.parent.exists()
    mine = [fresh_cache / "code" / "userdir", fresh_cache / "code" / "ab"]
    for folder in mine:   # empty folders of the user's: clear removes only what Asp made
        folder.mkdir()
    locks = fresh_cache / "locks"
    theirs = locks / "notes.lock"   # not named for a key: not one of Asp's locks
    theirs.write_text("")
    assert (locks / f"{good.key}.lock").exists()
    from filelock import FileLock

    held = FileLock(str(locks / f"{'b' * 64}.lock"))   # a compile under way elsewhere
    with held:
        out = _invoke("cache", "clear").output
    assert "removed 1 entries" in out and not good.path.exists()
    assert not good.path.parent.parent.exists() and all(f.is_dir() for f in mine)
    # the entries' locks go too (a clear left one per key ever built); a held one and
    # others' files stay
    assert sorted(p.name for p in locks.iterdir()) == [f"{'b' * 64}.lock", "notes.lock"]
    assert PerfDB().winner("k" * 64) == "fast-variant"  # kept without --perf
    assert "entries: 0" in _invoke("cache", "info").output
    assert "tuning results" in _invoke("cache", "clear", "--perf").output
    assert PerfDB().winner("k" * 64) is None


# -- asp bench ----------------------------------------------------------------------------------
BENCH = '''
import numpy as np
from asp_core import hookimpl


def run(bench):
    x = np.arange(2000.0)
    bench.note("quick=%s" % bench.quick)
    bench.compare("copy 16 KB", {{"numpy-copy": lambda: x.copy(), "asp-slice": lambda: x[:] * 1}},
                  anchor="numpy-copy", bytes=2 * x.nbytes, flops=x.size, repeats=3)


@hookimpl
def asp_register_benchmarks(register):
    register.benchmark(name="{name}", func=run, description="tiny test suite")
'''


def test_bench_runs_registered_suite(tmp_path, monkeypatch, fresh_cache, plugin_state):
    from asp_bench import stream

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")  # only the suite under test
    plugins_mod.reset()
    monkeypatch.setattr(stream, "measure_stream_copy", lambda *a, **k: 20.0)
    suite = "tinysuite"
    bench_dir = tmp_path / "benches"
    bench_dir.mkdir()
    (bench_dir / "bench_tiny.py").write_text(BENCH.format(name=suite))
    (bench_dir / "helper.py").write_text("raise RuntimeError('not a bench file')\n")
    out_dir = tmp_path / "out"
    listed = _invoke("bench", "--path", str(bench_dir), "--list").output
    assert suite in listed and "tiny test suite" in listed
    result = _invoke("bench", suite, "--path", str(bench_dir), "--out", str(out_dir), "--quick")
    assert result.exit_code == 0, result.output
    assert "quick=True" in result.output and "vs numpy-copy" in result.output
    saved = json.loads((out_dir / "results.json").read_text())
    rows = [r for r in saved if "impl" in r]  # the measurements; the note rows have none
    assert {r["impl"] for r in rows} == {"numpy-copy", "asp-slice"}
    assert [r for r in saved if "impl" not in r] == [
        {"kind": "note", "suite": suite, "case": None, "note": "quick=True"}]
    for r in rows:
        assert r["suite"] == suite and r["anchor"] == "numpy-copy" and r["gbs"] > 0
        assert r["ratio"] > 0 and r["best"] <= r["median"]
    anchor = next(r for r in rows if r["impl"] == "numpy-copy")
    assert anchor["ratio"] == 1.0
    for name in ("roofline.png", "ratios.png"):
        png = (out_dir / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    bad = CliRunner().invoke(cli, ["bench", "no-such-suite", "--path", str(bench_dir)])
    assert bad.exit_code == 2 and "unknown suite" in bad.output


def test_version_and_help():
    assert "asp" in _invoke("--version").output
    out = _invoke("--help").output
    for name in ("list", "explain", "doctor", "cache", "bench", "new"):
        assert name in out


RAISING = '''
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from asp_core import Dispatcher, plugins
from tests.specializers import elementwise
from sibling_helpers import OFFSET  # a module next to the script, as `python script.py` allows

if not plugins.get_plugin_manager().is_registered(elementwise):
    plugins.register_plugin(elementwise, name="explain-elementwise")


def shift(a):
    return a + 1.5


Dispatcher("elementwise", shift)(np.ones(4) * OFFSET)
raise RuntimeError("the user's script fails after the kernel ran")
'''


@requires_compiler
def test_explain_script_that_raises_still_shows_kernels(tmp_path, fresh_cache, monkeypatch):
    import sys

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    (tmp_path / "sibling_helpers.py").write_text("OFFSET = 2.0\n")
    path = tmp_path / "raising.py"
    path.write_text(RAISING.format(repo=str(REPO)))
    before = list(sys.path)
    try:
        result = CliRunner().invoke(cli, ["explain", str(path)])
    finally:
        plugins_mod.unregister_plugin("explain-elementwise")
        sys.modules.pop("sibling_helpers", None)
    assert result.exit_code == 1
    assert "RuntimeError: the user's script fails after the kernel ran" in result.output
    assert "=== kernel shift" in result.output and "--- compile asp_map" in result.output
    assert sys.path == before


@requires_compiler
def test_cache_verify_refuses_unsafe_directory(tmp_path, monkeypatch):
    from asp_core.build import compile_library

    root = tmp_path / "c"
    monkeypatch.setenv("ASP_CACHE_DIR", str(root))
    compile_library("int f(void) { return 1; }\n", name="f", openmp=False)
    root.chmod(0o777)
    try:
        result = CliRunner().invoke(cli, ["cache", "verify"])
    finally:
        root.chmod(0o700)
    assert result.exit_code == 1 and result.exception is not None
    assert isinstance(result.exception, SystemExit)  # a clean error, not a traceback
    assert "writable by other users" in result.output and "Traceback" not in result.output


FAILING_BENCH = '''
from asp_core import hookimpl


def broken(bench):
    raise RuntimeError("suite bug")


def fine(bench):
    bench.compare("noop", {"a": lambda: None, "b": lambda: None}, anchor="a", bytes=8,
                  repeats=1)


@hookimpl
def asp_register_benchmarks(register):
    register.benchmark(name="aaa-broken", func=broken)
    register.benchmark(name="zzz-fine", func=fine)
'''


def test_bench_failing_suite_does_not_lose_the_others(tmp_path, monkeypatch, fresh_cache,
                                                     plugin_state):
    from asp_bench import stream

    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    monkeypatch.setattr(stream, "measure_stream_copy", lambda *a, **k: 20.0)
    (tmp_path / "bench_two.py").write_text(FAILING_BENCH)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["bench", "--path", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 1
    assert "RuntimeError: suite bug" in result.output
    assert "suite(s) failed: aaa-broken" in result.output
    rows = json.loads((out / "results.json").read_text())
    assert {r["suite"] for r in rows if "impl" in r} == {"zzz-fine"}
    assert [r for r in rows if "impl" not in r] == [
        {"kind": "failed", "suite": "aaa-broken", "case": None, "note": "RuntimeError: suite bug"}]


def test_bench_refuses_bad_options_before_any_suite_runs(tmp_path, monkeypatch, fresh_cache,
                                                         plugin_state):
    """``--repeats 0`` (every suite failed on min() of no timings), an ``--out`` that cannot be
    created (the results were lost after all suites ran) and a ``--path`` file that does not
    import (a traceback) are one-line usage errors, given before anything is timed."""
    monkeypatch.setenv("ASP_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins_mod.reset()
    (tmp_path / "bench_tiny.py").write_text(BENCH.format(name="tinysuite"))
    (tmp_path / "afile").write_text("")
    runs = [(["--repeats", "0"], "'--repeats': 0 is not in the range x>=1"),
            (["--repeats", "-2"], "'--repeats': -2 is not in the range x>=1"),
            (["--out", str(tmp_path / "afile" / "sub")], "--out: cannot create")]
    for args, message in runs:
        result = CliRunner().invoke(cli, ["bench", "--path", str(tmp_path), "--quick", *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "== tinysuite" not in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    for text, error in (("def oops(:\n", "SyntaxError: "),
                        ("raise RuntimeError('import fails')\n", "RuntimeError: import fails")):
        (bad / "bench_bad.py").write_text(text)
        result = CliRunner().invoke(cli, ["bench", "--path", str(bad), "--list"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"--path: cannot load {bad / 'bench_bad.py'}: {error}" in result.output


# -- output for machines and people -------------------------------------------------------------
@requires_compiler
def test_explain_json_is_pure_json_even_when_the_script_prints(tmp_path, fresh_cache):
    """``asp explain --json script.py | python -m json.tool``: the script's Python prints and
    its C-level writes to fd 1 go to stderr; stdout is the report alone."""
    path = tmp_path / "noisy.py"
    path.write_text(SCRIPT.format(repo=str(REPO)) + textwrap.dedent("""
        import os
        print("hello from the script")
        os.write(1, b"raw bytes on fd 1\\n")
    """))
    env = dict(os.environ, ASP_CACHE_DIR=str(fresh_cache))
    proc = subprocess.run([sys.executable, "-m", "asp_core.cli", "explain", "--json", str(path)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [k["kernel"] for k in data["kernels"]] == ["saxpy", "squares"]
    assert "hello from the script" in proc.stderr and "raw bytes on fd 1" in proc.stderr


def test_quiet_and_verbose_set_the_asp_log_level():
    import logging

    from asp_core.log import logger, set_level

    try:
        _invoke("-q", "cache", "info")
        assert logger.level == logging.WARNING
        _invoke("-qq", "cache", "info")
        assert logger.level == logging.ERROR
        _invoke("-v", "cache", "info")
        assert logger.level == logging.DEBUG
    finally:
        set_level()


def test_platform_reason_names_the_platforms_that_declined():
    from asp_core.pipeline import _platform_reason
    from asp_core.registry import Choice, Component

    def comp(name, priority):
        return Component("s", "platform_selection", name, object(), priority, "p", "d", "1", 0,
                         None)

    cuda, omp = comp("cuda", 20), comp("openmp", 10)
    choice = Choice([cuda, omp], "highest priority (20)")
    assert _platform_reason(choice, cuda, []) == "highest priority (20)"
    reason = _platform_reason(choice, omp, ["cuda"])
    assert reason.startswith("priority 10") and "cuda declined it" in reason


def test_explain_does_not_wait_for_the_core_s_long_lived_workers(tmp_path, monkeypatch):
    """The worker of interruptible calls (started by the script's first long compiled call)
    lives as long as the process, like the compile pool's: explain waits for its work, not
    for it (it waited its whole limit, 300 s, after examples/demo.py)."""
    from asp_core import interrupt
    from asp_core.cli import explain

    monkeypatch.setattr(interrupt, "_worker", None)   # the script starts a fresh one,
    # serving a queue of its own: restored, the old worker and the old queue are the only
    # pair (two workers on one queue ran a later test's calls side by side)
    monkeypatch.setattr(interrupt, "_jobs", queue.SimpleQueue())
    monkeypatch.setattr(explain, "WAIT_LIMIT_S", 20.0)
    path = tmp_path / "long_call.py"
    path.write_text("from asp_core import interrupt\n"
                    "assert interrupt.call(lambda: 41 + 1) == 42\n")
    result = _invoke("explain", str(path))
    assert result.exit_code == 0, result.output
    assert "stopped waiting" not in result.output
    assert interrupt._worker is not None and interrupt.is_worker(interrupt._worker)
