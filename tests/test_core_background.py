"""asp_core.background: compiles off the caller's path, one compiler per cache key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import threading
import textwrap

import pytest

from asp_core import background
from asp_core.build import compile_library
from asp_core.context import SpecializationContext
from asp_core.errors import CompileError, ToolchainError
from asp_core.toolchain import Toolchain
from tests.test_core_toolchain import _ends

pytestmark = pytest.mark.compiler


def _source(tag: str) -> str:
    return f'int asp_bg_{tag}(int x) {{ return x + {len(tag)}; }}\n'


@pytest.fixture
def gated_compiler(monkeypatch):
    """Counts compiler runs per source; a run of a source listed in ``hold`` waits for
    ``release``, so a test can look at the pool while a compile is running."""
    real = Toolchain.compile
    state = {"runs": [], "hold": set(), "release": threading.Event(), "started": threading.Event(),
             "nice": {}}

    def compile(self, source, workdir, **kw):
        state["runs"].append(source)
        if hasattr(os, "getpriority"):
            state["nice"][source] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        if source in state["hold"]:
            state["started"].set()
            assert state["release"].wait(60)
        return real(self, source, workdir, **kw)

    monkeypatch.setattr(Toolchain, "compile", compile)
    yield state
    state["release"].set()


def _restart_pool() -> None:
    """Stop the workers earlier tests started (they would take a job this test queues) and
    reopen the pool empty."""
    background.shutdown(wait=True)
    background._workers.update({False: [], True: []})
    background._closed = False


@pytest.fixture
def one_worker(monkeypatch):
    """A pool of exactly one worker for the length of the test."""
    _restart_pool()
    monkeypatch.setattr(background, "_max_workers", lambda: 1)
    yield
    _restart_pool()


def test_submit_compiles_and_records(fresh_cache):
    ctx = SpecializationContext("test", None, variant="default")
    lib = background.submit(ctx, source=_source("a"), openmp=False, name="bg_a",
                            variant="wide").result(timeout=120)
    assert lib.cdll.asp_bg_a(1) == 2 and not lib.cached
    assert [(c.variant, c.library) for c in ctx.compiles] == [("wide", lib)]
    assert not background.busy()
    again = compile_library(_source("a"), openmp=False, name="bg_a")
    assert again.cached and again.path == lib.path


def test_foreground_waits_for_the_running_compile(fresh_cache, gated_compiler):
    src = _source("run")
    gated_compiler["hold"].add(src)
    future = background.submit(source=src, openmp=False, name="bg_run")
    assert background.submit(source=src, openmp=False, name="bg_run") is future  # one per key
    assert gated_compiler["started"].wait(60) and background.busy()
    result: list = []
    fg = threading.Thread(target=lambda: result.append(
        compile_library(src, openmp=False, name="bg_run")))
    fg.start()
    fg.join(0.3)
    assert fg.is_alive()  # waiting for the background compile, not compiling itself
    gated_compiler["release"].set()
    fg.join(60)
    assert gated_compiler["runs"].count(src) == 1
    assert result[0].cached and result[0].path == future.result().path
    assert not background.busy()


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="threads have nice values of their own on Linux only")
def test_low_priority_compiles_run_niced_on_their_own_workers(fresh_cache, gated_compiler):
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    low, normal = _source("low"), _source("normal")
    assert background.submit(source=low, openmp=False, name="bg_low",
                             low_priority=True).result(timeout=120).cdll.asp_bg_low(1) == 4
    background.submit(source=normal, openmp=False, name="bg_normal").result(timeout=120)
    assert gated_compiler["nice"][low] == min(base + background.LOW_PRIORITY_NICE, 19)
    assert gated_compiler["nice"][normal] == base  # the normal workers keep their priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    assert not background.busy()


def test_busy_counts_only_compiles_at_normal_priority(fresh_cache, gated_compiler):
    """Timings taken next to a low-priority compile are trusted (it gives way to the caller's
    code); next to a normal one they are not."""
    low, normal = _source("busy_low"), _source("busy_normal")
    gated_compiler["hold"].update({low, normal})
    f_low = background.submit(source=low, openmp=False, name="bg_busy_low", low_priority=True)
    assert gated_compiler["started"].wait(60)
    assert not background.busy() and background.busy(low_priority=True)
    f_normal = background.submit(source=normal, openmp=False, name="bg_busy_normal")
    assert background.busy()
    gated_compiler["release"].set()
    f_low.result(timeout=120), f_normal.result(timeout=120)
    assert not background.busy()


def test_foreground_takes_over_a_queued_compile(fresh_cache, gated_compiler, one_worker):
    first, queued = _source("first"), _source("queued")
    gated_compiler["hold"].add(first)
    f1 = background.submit(source=first, openmp=False, name="bg_first")
    assert gated_compiler["started"].wait(60)
    f2 = background.submit(source=queued, openmp=False, name="bg_queued")
    lib = compile_library(queued, openmp=False, name="bg_queued")  # no wait behind `first`
    assert f2.cancelled() and not lib.cached and lib.cdll.asp_bg_queued(0) == 6
    gated_compiler["release"].set()
    assert f1.result(timeout=60).cdll.asp_bg_first(0) == 5
    assert gated_compiler["runs"].count(queued) == 1


def test_errors_stay_in_the_future_and_reach_the_foreground(fresh_cache):
    bad = "int asp_bg_bad(void) { return undeclared_name; }\n"
    future = background.submit(source=bad, openmp=False, name="bg_bad")
    assert isinstance(future.exception(timeout=120), CompileError)
    with pytest.raises(CompileError, match="undeclared_name"):
        compile_library(bad, openmp=False, name="bg_bad")


def _counting_cc(tmp_path, monkeypatch, then: str):
    """``ASP_CC`` set to a compiler that notes each compile (a line in the returned file),
    then runs the shell lines ``then`` (the probes pass); a compile limit of 0.5 s."""
    runs = tmp_path / "runs"
    fake = tmp_path / "fake-cc"
    fake.write_text('#!/bin/sh\ncase "$*" in *probe*|--version) exec gcc "$@";; esac\n'
                    f"echo run >> {runs}\n{then}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(fake))
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "0.5")
    return runs


def test_a_compile_that_timed_out_in_the_background_is_not_run_again(fresh_cache, monkeypatch,
                                                                     tmp_path):
    """A compile killed at ASP_COMPILE_TIMEOUT in the background was run again by the
    foreground build of its key: the caller waited for the limit a second time."""
    runs = _counting_cc(tmp_path, monkeypatch, "exec sleep 8")
    future = background.submit(source=_source("hang"), openmp=False, name="bg_hang")
    assert isinstance(future.exception(timeout=60), ToolchainError)
    with pytest.raises(ToolchainError, match="did not finish compiling .*ASP_COMPILE_TIMEOUT"):
        compile_library(_source("hang"), openmp=False, name="bg_hang")
    assert background.submit(source=_source("hang"), openmp=False, name="bg_hang").exception()
    assert runs.read_text().split() == ["run"]


@pytest.mark.parametrize("ending, error", [("exec sleep 8", "did not finish compiling"),
                                           ("exit 1", "failed on generated code")])
def test_a_foreground_compile_that_failed_is_not_run_again(fresh_cache, tmp_path, monkeypatch,
                                                           ending, error):
    """A kernel's first-call compile that timed out (or was rejected) ran again for each new
    instance of the kernel: with the default limit, 600 s per instance."""
    runs = _counting_cc(tmp_path, monkeypatch, ending)
    for _ in range(3):
        with pytest.raises(ToolchainError, match=error):
            compile_library(_source("fg_fail"), openmp=False, name="fg_fail")
    assert background.submit(source=_source("fg_fail"), openmp=False,
                             name="fg_fail").exception(timeout=5)
    assert runs.read_text().split() == ["run"]


def test_a_failure_that_may_not_recur_is_compiled_again(fresh_cache, tmp_path, monkeypatch):
    """A compile killed by a signal (the OOM killer) is run again by the next build, and one
    that timed out is once the limit changed (its message says to raise it): both stayed
    failed for the rest of the process."""
    import gc
    import weakref

    runs = _counting_cc(tmp_path, monkeypatch, f'[ -e {tmp_path / "kill"} ] && kill -9 $$\n'
                                               f'[ -e {tmp_path / "hang"} ] && exec sleep 8\n'
                                               'exec gcc "$@"')
    (tmp_path / "kill").touch()
    with pytest.raises(ToolchainError, match="killed by SIGKILL"):
        compile_library(_source("oom"), openmp=False, name="oom")
    (tmp_path / "kill").unlink()
    assert compile_library(_source("oom"), openmp=False, name="oom").cdll.asp_bg_oom(1) == 4
    (tmp_path / "hang").touch()

    class Grid:   # what a caller's frame holds: freed once the call is over
        pass

    def call(grid):
        compile_library(_source("slow"), openmp=False, name="slow")

    held = []
    for _ in range(3):
        grid = Grid()
        held.append(weakref.ref(grid))
        with pytest.raises(ToolchainError, match="did not finish compiling"):
            call(grid)
        del grid
    gc.collect()
    assert [r() for r in held] == [None, None, None]
    (tmp_path / "hang").unlink()
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "120")
    assert compile_library(_source("slow"), openmp=False, name="slow").cdll.asp_bg_slow(1) == 5
    assert runs.read_text().split().count("run") == 4   # oom twice, slow once per limit


def test_the_compiler_probes_keep_to_the_compile_timeout(monkeypatch):
    """The probes (``--version``, one-line builds) had limits of their own, 30 and 60 s: with
    a compiler that hangs and ``ASP_COMPILE_TIMEOUT=3``, each process's first kernel call
    waited 120 s.  They keep to the compile limit, down to a floor a loaded machine needs."""
    from asp_core import toolchain

    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "3")
    assert toolchain._probe_limit(30) == toolchain._probe_limit(60) == toolchain.PROBE_FLOOR_S
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "40")
    assert (toolchain._probe_limit(30), toolchain._probe_limit(60)) == (30, 40)


def test_submit_without_a_compiler_returns_the_error(fresh_cache, monkeypatch):
    from asp_core.errors import CompilerNotFound

    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    future = background.submit(source=_source("none"), openmp=False, name="bg_none")
    assert isinstance(future.exception(timeout=5), CompilerNotFound)
    assert not background.busy()


def test_context_compile_many_keeps_order(fresh_cache):
    ctx = SpecializationContext("test", None)
    libs = ctx.compile_many([{"source": _source(t), "openmp": False, "name": f"bg_{t}",
                              "variant": t} for t in ("x", "yy", "zzz")])
    assert [lib.cdll[f"asp_bg_{t}"](0) for lib, t in zip(libs, ("x", "yy", "zzz"))] == [1, 2, 3]


def test_exit_cancels_queued_compiles_and_waits_for_running_ones(fresh_cache):
    script = textwrap.dedent("""
        from asp_core import background
        background._max_workers = lambda: 1
        futures = [background.submit(source=f"int asp_bg_{i}(void) {{ return {i}; }}\\n",
                                     openmp=False, name=f"bg_{i}") for i in range(6)]
        background.shutdown()
        done = [f for f in futures if not f.cancelled()]
        assert done and all(f.done() for f in done), futures
        assert any(f.cancelled() for f in futures), futures
        assert done[0].result().cdll.asp_bg_0() == 0
        late = background.submit(source="int asp_bg_late(void) { return 7; }\\n",
                                 openmp=False, name="bg_late")
        assert late.done() and late.result().cdll.asp_bg_late() == 7
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_normal_exit_lets_the_running_background_compile_finish(fresh_cache, tmp_path):
    """A script ending while a compile ran on the pool: the exit waited for it, as documented,
    and killed nothing.  The kill of running tools (for a Ctrl-C) ran first, so every such
    compile died by SIGKILL, its kernel was reported as running in Python "out of memory"
    after the script's last line, and the next process compiled it again."""
    from asp_core.toolchain import find_toolchain

    slow = tmp_path / "slow-cc"
    slow.write_text(f"#!/bin/sh\ncase \"$*\" in *bg_exit*) sleep 1;; esac\n"
                    f"exec {find_toolchain('c').executable} \"$@\"\n")   # probes pass at once
    slow.chmod(0o755)
    marker = tmp_path / "started"
    script = textwrap.dedent(f"""
        import atexit, time
        futures = []
        # registered first, so it runs after asp_core's exit handlers
        atexit.register(lambda: print("compiled:", futures[0].result().cdll.asp_bg_exit()))
        from asp_core import background
        futures.append(background.submit(source="int asp_bg_exit(void) {{ return 5; }}\\n",
                                          openmp=False, name="bg_exit"))
        time.sleep(0.5)   # the slow compiler is running
        open({str(marker)!r}, "w").close()
    """)
    env = dict(os.environ, ASP_CC=str(slow), ASP_CACHE_DIR=str(fresh_cache))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=env)
    assert marker.exists(), out.stderr
    assert out.returncode == 0 and "compiled: 5" in out.stdout, out.stderr


def _hanging_compile(tmp_path, cache, tag, then):
    """``(script, env, pidfile)``: a script that submits a background compile of ``tag``
    whose compiler hangs (its pid written to ``pidfile``), waits for it, then runs ``then``."""
    from asp_core.toolchain import find_toolchain

    pidfile = tmp_path / "worker.pid"
    slow = tmp_path / "slow-cc"
    slow.write_text(f"#!/bin/sh\ncase \"$*\" in *bg_{tag}*) sleep 600 & echo $! > {pidfile}; "
                    f"wait;; esac\nexec {find_toolchain('c').executable} \"$@\"\n")  # probes pass
    slow.chmod(0o755)
    script = textwrap.dedent(f"""
        import pathlib, time
        from asp_core import background
        background.submit(source="int asp_bg_{tag}(void) {{ return 5; }}\\n", openmp=False,
                          name="bg_{tag}")
        while not pathlib.Path({str(pidfile)!r}).exists():
            time.sleep(0.01)
    """) + textwrap.dedent(then)
    return script, dict(os.environ, ASP_CC=str(slow), ASP_CACHE_DIR=str(cache)), pidfile


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc (Linux)")
def test_a_ctrl_c_exit_kills_the_running_background_compile(fresh_cache, tmp_path):
    """Ended by Ctrl-C, the process does not wait for its pool's compiles: they are killed
    (with what they started) and it exits."""
    script, env, pidfile = _hanging_compile(tmp_path, fresh_cache, "stop",
                                            "raise KeyboardInterrupt\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert "KeyboardInterrupt" in out.stderr
    worker = int(pidfile.read_text())
    assert _ends(worker), "the compile outlived the process"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc (Linux)")
def test_a_ctrl_c_while_the_exit_waits_for_compiles_stops_the_wait(fresh_cache, tmp_path):
    """Ctrl-C while the exit waited for a running compile printed "Exception ignored in atexit
    callback ... KeyboardInterrupt" and went on waiting: the wait stops quietly, the compiler
    is killed, and the exit goes on as it was (the program's status, its files flushed)."""
    import signal

    script, env, pidfile = _hanging_compile(tmp_path, fresh_cache, "wait", f"""
        results = open({str(tmp_path / "results.txt")!r}, "w")
        results.write("kept")   # buffered, flushed at the end of the exit
        print("exiting", flush=True)
        raise SystemExit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline() == "exiting\n"
    time.sleep(0.5)   # in the exit handler's wait for the compile
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (proc.returncode, err)
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert (tmp_path / "results.txt").read_text() == "kept"
    assert _ends(int(pidfile.read_text())), "the compile outlived the process"


def test_when_idle_compiles_wait_for_the_foreground_spans(fresh_cache, gated_compiler,
                                                          monkeypatch):
    """A ``when_idle`` compile submitted inside a foreground span starts only once no span has
    run for IDLE_S: a second span begun in between holds it back again."""
    monkeypatch.setattr(background, "IDLE_S", 0.2)
    src = _source("idle")
    with background.foreground():
        future = background.submit(source=src, openmp=False, name="bg_idle", when_idle=True)
        assert background.busy() and not future.running()
        assert not background.busy(waiting=False)   # held back: no compiler runs yet
    with background.foreground():   # within IDLE_S of the first span: still waiting
        threading.Event().wait(0.3)
        assert src not in gated_compiler["runs"] and not future.done()
    assert future.result(timeout=120).cdll.asp_bg_idle(1) == 5
    assert gated_compiler["runs"].count(src) == 1
    assert not background.busy()


def test_when_idle_compile_runs_at_once_outside_spans_and_a_build_takes_it_over(
        fresh_cache, gated_compiler):
    now = background.submit(source=_source("now"), openmp=False, name="bg_now", when_idle=True)
    assert now.result(timeout=120).cdll.asp_bg_now(1) == 4   # no span: not deferred
    src = _source("over")
    with background.foreground():
        waiting = background.submit(source=src, openmp=False, name="bg_over", when_idle=True)
        lib = compile_library(src, openmp=False, name="bg_over")   # the caller needs it now
        assert waiting.cancelled() and lib.cdll.asp_bg_over(1) == 5
    assert gated_compiler["runs"].count(src) == 1 and not background.busy()


def test_release_starts_or_cancels_the_held_back_compiles_and_waits(fresh_cache,
                                                                    gated_compiler,
                                                                    monkeypatch):
    """``release`` does at once what the idle gap would do (or drops the held-back compiles)
    and waits for every queued or running compile: a plugin's exit and reset need that."""
    monkeypatch.setattr(background, "IDLE_S", 60.0)
    kept, dropped = _source("kept"), _source("dropped")
    with background.foreground():
        future = background.submit(source=kept, openmp=False, name="bg_kept", when_idle=True)
    assert not future.running() and background.busy()
    background.release()
    assert future.done() and future.result().cdll.asp_bg_kept(1) == 5
    assert gated_compiler["runs"].count(kept) == 1 and not background.busy()
    with background.foreground():
        gone = background.submit(source=dropped, openmp=False, name="bg_dropped",
                                 when_idle=True)
    background.release(run_waiting=False)
    assert gone.cancelled() and dropped not in gated_compiler["runs"]
    assert not background.busy()
