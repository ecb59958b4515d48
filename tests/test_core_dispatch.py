"""The dispatcher: specialise on the first call, dispatch from the table afterwards, and the
three ``ASP_MODE`` behaviours, missing compilers and bad input."""

from __future__ import annotations

import inspect
import math
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from asp_core import Dispatcher, SpecializationWarning, Unspecializable, plugins, specialize
from asp_core.decisions import PLATFORM
from asp_core.errors import for_caller
from pytest_asp import requires_compiler
from tests.specializers.derived import TrustingOpenMP, shaped_signature

HERE = Path(__file__).resolve()


def axpy(a, b):
    return 2.5 * a + b


def uses_helper(a):
    return math.floor(a)  # UNSUPPORTED-HERE


def _marker_position() -> tuple[int, int]:
    for lineno, line in enumerate(HERE.read_text().splitlines(), start=1):
        if line.endswith("# UNSUPPORTED-HERE"):
            return lineno, line.index("math.floor(a)") + 1
    raise AssertionError("marker line not found")


def _entries(root: Path) -> list[Path]:
    code = root / "code"
    return sorted(p for d in code.iterdir() for p in d.iterdir()) if code.exists() else []


def _arrays(n: int = 64, k: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.standard_normal(n) for _ in range(k)]


@requires_compiler
def test_first_call_specialises_then_hits_table(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert list(d.specializations) == [(2,)]
    bound = d.specializations[(2,)]
    assert getattr(bound, "c_function", None) is not None  # compiled C, not the fallback
    ctx = d.last_context
    assert [c.cached for c in ctx.compiles] == [False]  # compiled now, once

    import asp_core.pipeline as pipeline_mod

    def boom(*a, **k):
        raise AssertionError("the pipeline ran again for a known key")

    monkeypatch.setattr(pipeline_mod.Pipeline, "run", boom)
    for _ in range(3):
        np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert d.specializations[(2,)] is bound
    assert d.last_context is ctx
    assert len(_entries(fresh_cache)) == 1


@requires_compiler
def test_new_shape_is_a_new_specialisation(elementwise, derived, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    name = derived("ew-shaped", signature=shaped_signature)
    d = Dispatcher(name, axpy)
    a, b = _arrays(16)
    c, e = _arrays(33)
    d(a, b)
    first = d.last_context
    np.testing.assert_array_equal(d(c, e), 2.5 * c + e)
    assert set(d.specializations) == {(2, (16,)), (2, (33,))}
    assert d.last_context is not first and d.last_context.key == (2, (33,))
    d(a, b)  # known again: no third context
    assert d.last_context.key == (2, (33,))
    m = np.ones((3, 4))
    np.testing.assert_array_equal(d(m, m), 3.5 * m)  # 2-D: another key
    assert (2, (3, 4)) in d.specializations and len(d.specializations) == 3


@requires_compiler
def test_separate_kernels_have_separate_tables(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d1 = Dispatcher("elementwise", _one_arg)
    d2 = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    np.testing.assert_array_equal(d1(a), -a * a)
    np.testing.assert_array_equal(d2(a, b), 2.5 * a + b)
    assert list(d1.specializations) == [(1,)] and list(d2.specializations) == [(2,)]
    assert len(_entries(fresh_cache)) == 2


def _one_arg(x):
    return -x * x


def test_auto_mode_one_warning_with_location(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "auto")
    d = Dispatcher("elementwise", uses_helper, fallback=np.floor)
    line, col = _marker_position()
    a = np.array([1.5, -2.5, 3.0])
    with pytest.warns(SpecializationWarning) as record:
        for _ in range(4):
            np.testing.assert_array_equal(d(a), np.floor(a))
        np.testing.assert_array_equal(d(np.array([[0.5]])), [[0.0]])
    mine = [w for w in record if issubclass(w.category, SpecializationWarning)]
    assert len(mine) == 1, [str(w.message) for w in mine]
    text = str(mine[0].message)
    assert f"{HERE}:{line}:{col}" in text
    assert "math.floor" in text and "uses_helper" in text
    # the warning points at the user's call, not at the core's internals
    assert Path(mine[0].filename).resolve() == HERE
    assert _entries(fresh_cache) == []  # nothing was compiled for an unsupported kernel


def test_a_warning_on_a_thread_working_for_a_caller_names_the_callers_line(elementwise,
                                                                           monkeypatch):
    """A background specialisation (asp-mpk's) warned from its thread's own stack, which
    ends in threading.py: the warning named threading.py, not the user's line that started
    it (through a plugin's function, the caller of ``for_caller``)."""
    monkeypatch.setenv("ASP_MODE", "auto")
    plugin: dict = {"__name__": "some_plugin.background", "for_caller": for_caller,
                    "threading": threading}
    exec("def start(fn):\n"
         "    thread = threading.Thread(target=for_caller(fn))\n"
         "    thread.start()\n"
         "    thread.join()\n"
         "def in_two_stages(fn):\n"
         "    start(lambda: start(fn))\n", plugin)
    d = Dispatcher("elementwise", uses_helper, fallback=np.floor)
    results: list = []
    # a second stage started from the first's thread (asp-mpk's plans after its
    # specialisation): its warnings named threading.py again
    with pytest.warns(SpecializationWarning) as record:
        plugin["in_two_stages"](lambda: results.append(d(np.array([1.5]))))
        line = inspect.currentframe().f_lineno - 1
    assert results[0].tolist() == [1.0]
    mine = [w for w in record if issubclass(w.category, SpecializationWarning)]
    assert [(Path(w.filename).resolve(), w.lineno) for w in mine] == [(HERE, line)]


def test_strict_mode_raises(elementwise, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    d = Dispatcher("elementwise", uses_helper, fallback=np.floor)
    line, col = _marker_position()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Unspecializable) as info:
            d(np.ones(3))
    assert info.value.lineno == line and info.value.col == col
    assert info.value.filename == str(HERE)
    assert "math.floor" in info.value.construct


def test_strict_mode_set_after_a_fallback_raises(elementwise, fresh_cache, monkeypatch):
    """``ASP_MODE`` is read at every call: set to ``strict`` after a kernel fell back in
    ``auto``, its next call raises the reason (it went on returning the Python result)."""
    d = Dispatcher("elementwise", uses_helper, fallback=np.floor)
    with pytest.warns(SpecializationWarning):
        d(np.ones(3))
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Unspecializable, match="math.floor"):
        d(np.ones(3))
    monkeypatch.setenv("ASP_MODE", "auto")
    np.testing.assert_array_equal(d(np.full(3, 1.5)), np.ones(3))   # the fallback again


def test_python_mode_never_compiles(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "python")
    import asp_core.build

    def no_compile(*a, **k):
        raise AssertionError("ASP_MODE=python compiled something")

    monkeypatch.setattr(asp_core.build, "compile_library", no_compile)
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    for _ in range(3):
        np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert d.specializations == {}
    assert not (fresh_cache / "code").exists()


@requires_compiler
def test_python_mode_set_after_specialising_runs_python(elementwise, fresh_cache,
                                                        monkeypatch):
    """The docs: settings are read on every use. ``ASP_MODE=python`` set after a kernel was
    specialised ran the compiled code all the same (the table answered before the mode was
    read); it now runs the Python function until the variable is unset again."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    calls = []

    def fallback(a, b):
        calls.append(1)
        return axpy(a, b)

    d = Dispatcher("elementwise", axpy, fallback=fallback)
    a, b = _arrays()
    np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert list(d.specializations) == [(2,)] and not calls
    monkeypatch.setenv("ASP_MODE", " Python ")
    np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert calls == [1]
    monkeypatch.delenv("ASP_MODE")
    np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert calls == [1]


def test_invalid_mode_is_a_clear_error(elementwise, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "fast")
    d = Dispatcher("elementwise", axpy)
    with pytest.raises(ValueError, match="ASP_MODE='fast'.*auto, strict, python"):
        d(*_arrays())


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_invalid_compile_timeout_is_a_clear_error(elementwise, fresh_cache, monkeypatch, mode):
    """``ASP_COMPILE_TIMEOUT=0``, first read in the platform's compiler probe, made that
    platform look broken (a PluginWarning blaming its plugin) and the kernel ran elsewhere,
    even in strict mode; it is the ``ValueError`` an invalid ``ASP_MODE`` is."""
    monkeypatch.setenv("ASP_MODE", mode)
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "0")
    d = Dispatcher("elementwise", axpy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="ASP_COMPILE_TIMEOUT='0' is not valid"):
            d(*_arrays())


def test_missing_compiler_platform_check_falls_back_with_install_hint(
        elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    d = Dispatcher("elementwise", axpy, options={"platform_selection": "openmp"})
    a, b = _arrays()
    with pytest.warns(SpecializationWarning, match=r"apt-get install gcc") as record:
        np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    assert "ASP_CC" in str(record[0].message)
    assert _entries(fresh_cache) == []


@pytest.mark.parametrize("autotune", ["off", "once"])
def test_missing_compiler_in_backend_falls_back(elementwise, derived, fresh_cache, monkeypatch,
                                                autotune):
    """The platform believes a compiler exists; the backend finds none: still one warning."""
    monkeypatch.setenv("ASP_AUTOTUNE", autotune)
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    name = derived("ew-trusting", drop=(("platform_selection", "python"),),
                   replace={("platform_selection", "openmp"): TrustingOpenMP()})
    d = Dispatcher(name, axpy)
    a, b = _arrays()
    with pytest.warns(SpecializationWarning, match="no compiler.*install a C compiler"):
        for _ in range(5):
            np.testing.assert_array_equal(d(a, b), 2.5 * a + b)


def test_missing_compiler_uses_python_platform_when_installed(elementwise, fresh_cache,
                                                              monkeypatch):
    """With a lower-priority Python platform registered, no compiler means that platform."""
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    sel = d.last_context.decision(PLATFORM)
    assert sel is not None and sel.choice == "python"
    name, reason = sel.params["rejected"][0]
    assert name == "openmp" and "no c compiler" in reason


@requires_compiler
def test_bad_input_is_rejected_before_native_code(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    d = Dispatcher("elementwise", axpy)
    ints = np.arange(4), np.arange(4)
    with pytest.raises(TypeError, match="dtype int64, expected float64"):
        d(*ints)  # first call: rejected before any compile
    assert _entries(fresh_cache) == []
    a, b = _arrays(4)
    d(a, b)
    calls = []
    d._table[(2,)] = lambda *args: calls.append(args)  # a spy in place of the C function
    with pytest.raises(TypeError, match="dtype int64"):
        d(*ints)
    with pytest.raises(ValueError, match="shape"):
        d(a, np.ones(5))
    with pytest.raises(ValueError, match="C-contiguous"):
        d(np.ones((4, 4))[:, 0].copy(order="C")[::2], np.ones(2))
    with pytest.raises(TypeError, match="numpy array"):
        d([1.0, 2.0], b)
    assert calls == []


def test_unknown_specializer_falls_back_or_raises(monkeypatch):
    d = Dispatcher("no-such-specializer", axpy)
    a, b = _arrays()
    with pytest.warns(SpecializationWarning, match="pip install asp-no-such-specializer"):
        np.testing.assert_array_equal(d(a, b), 2.5 * a + b)
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Exception, match="not installed"):
        Dispatcher("no-such-specializer", axpy)(a, b)


@pytest.mark.parametrize("setting, says", [
    (("ASP_BLOCK_PLUGINS", "stencil"), "stencil (asp-stencil): ASP_BLOCK_PLUGINS"),
    (("ASP_LOAD_PLUGINS", "gmm"), "stencil (asp-stencil): not in ASP_LOAD_PLUGINS"),
    (("ASP_DISABLE_PLUGIN_AUTOLOAD", "1"), "ASP_DISABLE_PLUGIN_AUTOLOAD is set")])
def test_a_specializer_kept_out_by_a_setting_names_the_setting(plugin_state, monkeypatch,
                                                               setting, says):
    """A blocked asp-stencil was reported as "not installed; pip install asp-stencil"."""
    pytest.importorskip("asp_stencil")
    monkeypatch.setenv(*setting)
    plugin_state.reset()
    d = Dispatcher("stencil", axpy)
    with pytest.warns(SpecializationWarning, match="not installed") as seen:
        d(*_arrays())
    assert any(says in str(w.message) for w in seen), [str(w.message) for w in seen]


@requires_compiler
def test_specialize_decorator_and_clear(elementwise, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    @specialize("elementwise")
    def sq(x):
        return x * x

    a = np.linspace(-1, 1, 9)
    np.testing.assert_array_equal(sq(a), a * a)
    assert isinstance(sq, Dispatcher) and sq.name.endswith("sq")
    sq.clear()
    assert sq.specializations == {}
    np.testing.assert_array_equal(sq(a), a * a)
    assert sq.last_context.events  # specialised again (from the code cache)
    assert [c.cached for c in sq.last_context.compiles] == [True]


def test_dispatcher_needs_something_to_run():
    with pytest.raises(TypeError):
        Dispatcher("elementwise", None)


@requires_compiler
def test_concurrent_first_calls_specialise_once(elementwise, fresh_cache, monkeypatch):
    import threading

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    import asp_core.pipeline as pipeline_mod

    runs = []
    real_run = pipeline_mod.Pipeline.run

    def counting_run(self, ctx, rebind):
        runs.append(ctx.key)
        return real_run(self, ctx, rebind)

    monkeypatch.setattr(pipeline_mod.Pipeline, "run", counting_run)
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays(256)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(d(a, b))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, 2.5 * a + b)
    assert runs == [(2,)]


@requires_compiler
def test_compile_many_keeps_order_and_records(elementwise, fresh_cache):
    from asp_core import SpecializationContext

    ctx = SpecializationContext("elementwise", axpy)
    srcs = [{"source": f"int f{k}(void) {{ return {k}; }}\n", "name": f"f{k}", "openmp": False,
             "variant": f"v{k}"} for k in range(3)]
    libs = ctx.compile_many(srcs)
    assert [getattr(lib.cdll, f"f{k}")() for k, lib in enumerate(libs)] == [0, 1, 2]
    assert sorted((c.name, c.variant) for c in ctx.compiles) == \
        [("f0", "v0"), ("f1", "v1"), ("f2", "v2")]  # each labelled with its own variant
    assert sorted(c.library.path for c in ctx.compiles) == sorted(lib.path for lib in libs)
    assert ctx.compile_many([]) == []


@requires_compiler
def test_build_variants_and_tuned(elementwise, fresh_cache, monkeypatch):
    """Plugins compare variants through ``build_variants`` and ask ``tuned(key)`` whether a
    key's winner is bound, without reaching into the pipeline."""
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    built = d.build_variants(a, b)
    assert set(built) == {"parallel-simd", "serial"}
    for fn in built.values():
        np.testing.assert_array_equal(fn(a, b), 2.5 * a + b)
    assert d.specializations == {} and d.tuned((2,)) is None  # nothing bound by building
    d(a, b)
    assert d.tuned((2,)) is None  # still timing the second variant
    for _ in range(20):   # 3 timings each, 3 more each when they are close (autotune.CLOSE)
        d(a, b)
        if d.tuned((2,)) is not None:
            break
    winner = d.tuned((2,))
    assert winner is not None and winner is d.specializations[(2,)]
    np.testing.assert_array_equal(winner(a, b), 2.5 * a + b)


def test_variants_built_by_a_plugin_show_in_asp_explain(elementwise, fresh_cache):
    """asp-gmm builds its variants ahead of calls: those compiles were recorded nowhere, and the
    kernel's call later showed them as cache hits."""
    from asp_core import recording

    d = Dispatcher("elementwise", axpy)
    recording.start()
    try:
        d.build_variants(*_arrays())
    finally:
        records = recording.stop()
    (rec,) = records
    assert rec.kernel.endswith("(every variant built)")
    compiles = [data for event, data in rec.events if event == "compile"]
    assert compiles and not any(data["cached"] for data in compiles)


def test_tuned_is_none_for_a_python_fallback(elementwise, fresh_cache):
    d = Dispatcher("elementwise", uses_helper, fallback=np.floor)
    with pytest.warns(SpecializationWarning):
        d(np.ones(3))
    (key,) = d.specializations
    assert d.keys() == [key] and d.tuned(key) is None and d.tuning(key) is None


def test_build_variants_needs_the_specializer():
    d = Dispatcher("no-such-specializer", axpy)
    with pytest.raises(Exception, match="not installed"):
        d.build_variants(*_arrays())


@requires_compiler
def test_variants_compile_on_first_access(elementwise, fresh_cache):
    """``variants`` runs phases 1-4 only; each variant is compiled when first asked for."""
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    variants = d.variants(a, b)
    assert list(variants) == ["parallel-simd", "serial"] and len(variants) == 2
    assert variants.key == (2,)
    builds = lambda: [e["variant"] for n, e in variants.context.events if n == "build"]  # noqa: E731
    assert builds() == []
    np.testing.assert_array_equal(variants["serial"](a, b), 2.5 * a + b)
    assert variants["serial"] is variants["serial"] and builds() == ["serial"]
    assert d.specializations == {}
    with pytest.raises(KeyError):
        variants["no-such-variant"]


@requires_compiler
@pytest.mark.parametrize("autotune", ["off", "always"])
@pytest.mark.parametrize("entry", ["call", "variants"])
def test_a_kernel_keeps_no_array_of_its_first_call(elementwise, fresh_cache, monkeypatch,
                                                    autotune, entry):
    """The context of a specialisation (the dispatcher's ``last_context``, the variants of a
    tuning or a runner) held the first call's arguments as long as the kernel: arrays the
    caller had deleted stayed in memory. They are dropped once the phases have read them."""
    import gc
    import weakref

    monkeypatch.setenv("ASP_AUTOTUNE", autotune)
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    kept = d(a, b) if entry == "call" else d.variants(a, b)
    ctx = d.last_context if entry == "call" else kept.context
    assert ctx.key == (2,) and ctx.args == ()
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
    c, e = _arrays(64)
    np.testing.assert_array_equal(d(c, e), 2.5 * c + e)   # the kernel still runs


@requires_compiler
@pytest.mark.parametrize("autotune", ["off", "always"])
def test_tuning_decision_reaches_the_context(elementwise, fresh_cache, monkeypatch, autotune):
    """Later phases read the tuner's decision as a record, not from the event log."""
    from asp_core.decisions import VARIANT

    monkeypatch.setenv("ASP_AUTOTUNE", autotune)
    d = Dispatcher("elementwise", axpy)
    a, b = _arrays()
    d(a, b)
    ctx = d.last_context
    if autotune == "off":
        decision = ctx.decision(VARIANT)
        assert decision is not None and decision.choice == "parallel-simd"
        assert decision.source == "ASP_AUTOTUNE=off: default"
        return
    assert ctx.decision(VARIANT) is None   # still timing
    for _ in range(10):
        d(a, b)
    decision = ctx.decision(VARIANT)
    assert decision is not None and decision.source == "tuned now"
    assert decision.choice in {"parallel-simd", "serial"}


def test_a_forked_child_does_not_wait_for_a_lock_a_parents_thread_held(tmp_path):
    """A dispatcher's lock held by another thread at the fork (a specialisation under way)
    stayed held in the child, whose first call then waited forever."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, threading, faulthandler\n"
              "from asp_core import Dispatcher\n"
              "d = Dispatcher('no-such-specializer', None, fallback=lambda x: 2 * x)\n"
              "held, done = threading.Event(), threading.Event()\n"
              "def holder():\n"
              "    with d._lock:\n"
              "        held.set(); done.wait()\n"
              "t = threading.Thread(target=holder); t.start(); held.wait()\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    faulthandler.dump_traceback_later(30, exit=True)\n"
              "    os._exit(0 if d(21) == 42 else 3)\n"
              "done.set(); t.join()\n"
              "print('child', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"),
           "ASP_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_a_domain_ir_holding_numpy_arrays_is_optimised_and_run(fresh_cache):
    """A DAST node with an array field, copied by the domain optimiser: the pipeline compared
    the two trees with ``!=`` and raised "the truth value of an array is ambiguous" from
    inside the call (no fallback, no component named)."""
    from dataclasses import dataclass

    from asp_core import (Backend, DomainOptimizer, Frontend, Platform, PlatformProgram,
                          hookimpl)
    from asp_core.ir import Node

    @dataclass
    class Weights(Node):
        values: np.ndarray

    class Parse(Frontend):
        def parse(self, ctx):
            return Weights(np.array([1.0, 2.0, 3.0]))

    class Copy(DomainOptimizer):
        def optimize(self, dast, ctx):
            return dast.clone()

    class Lower(Platform):
        name = "py"

        def lower(self, dast, ctx):
            return PlatformProgram("py", dast)

    class Bind(Backend):
        def build(self, variant, ctx):
            total = variant.program.ir.values.sum()
            return lambda a: a * total

    class Plugin:
        @hookimpl
        def asp_register_specializers(self, register):
            register.specializer(name="arrays", signature=lambda args, kwargs, inst: ("k",))
            for phase, obj in (("frontend", Parse()), ("domain_optimization", Copy()),
                               ("platform_selection", Lower()), ("backend", Bind())):
                register.component(specializer="arrays", phase=phase, name="x", obj=obj)

    name = plugins.register_plugin(Plugin(), name="test-arrays")
    try:
        d = Dispatcher("arrays", lambda a: a * 6.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # no fallback
            assert d(2.0) == 12.0
        assert d.tuned(("k",)) is not None
    finally:
        plugins.unregister_plugin(name)


def _general_then_exact(state: dict):
    """A signature whose key asks for general code until ``state["general"]`` is False, a
    frontend that refuses the general key, and a ``respecialize`` saying whether it changed
    the key (``state["answer"]``: a bool, or an exception it raises)."""
    from tests.specializers import elementwise

    def signature(args, kwargs, instance):
        return ("general" if state["general"] else "exact",
                elementwise.signature(args, kwargs, instance))

    class Refusing(elementwise.ElementwiseFrontend):
        def parse(self, ctx):
            if ctx.key[0] == "general":
                raise ctx.unsupported(None, "code for every value", "")
            return super().parse(ctx)

    def respecialize(ctx, error):
        state["asked"].append((ctx.key[0], type(error).__name__))
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        state["general"] = not state["answer"]
        return True

    return signature, Refusing(), respecialize


@requires_compiler
@pytest.mark.parametrize("answer, compiled", [(True, True), (False, False),
                                               (RuntimeError("broken"), False)])
def test_a_key_the_specializer_takes_back_is_specialised_again(derived, fresh_cache, answer,
                                                               compiled):
    """``respecialize(ctx, error)`` returning True with another key now: that key is
    specialised (no fallback, no warning). Its key unchanged, or the hook raising: the
    first failure's fallback stands, once (no loop), its reason the first one."""
    state = {"general": True, "answer": answer, "asked": []}
    signature, frontend, respecialize = _general_then_exact(state)
    name = derived("respecialized", signature=signature,
                   replace={("frontend", "python-ast"): frontend}, respecialize=respecialize)
    d = Dispatcher(name, axpy)
    a, b = _arrays()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        np.testing.assert_allclose(d(a, b), axpy(a, b))
        np.testing.assert_allclose(d(a, b), axpy(a, b))
    assert state["asked"] == [("general", "Unspecializable")]
    fallbacks = [w for w in seen if issubclass(w.category, SpecializationWarning)]
    if compiled:
        assert not fallbacks and [k[0] for k in d.keys()] == ["exact"]
        assert d.last_context.decision(PLATFORM).choice == "openmp"
    else:
        assert len(fallbacks) == 1 and "code for every value" in str(fallbacks[0].message)
        assert d.last_context.decision(PLATFORM).choice == "python"
    assert any("raised RuntimeError: broken" in str(w.message) for w in seen) == (
        isinstance(answer, Exception))
