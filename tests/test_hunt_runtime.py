"""Robustness of the core runtime (hunt): forked children, compilers that hang, are killed or
write nothing, and tuning data holding cells of the wrong type."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from pytest_asp import requires_compiler

from asp_core import (CompileError, CompilerNotFound, Dispatcher, SpecializationWarning,
                      ToolchainError)
from asp_core import interrupt, toolchain
from asp_core.autotune import Autotuner, PerfDB
from asp_core.toolchain import Toolchain, find_toolchain

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (it forks: not inside pytest's own process),
    with a cache of its own."""
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)


#: a child that prints "child 0" when its call returned, or is ended by faulthandler (status 1,
#: with a traceback) when it waits for a lock nobody in it will release
_FORK_AND_CALL = """
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(20, exit=True)
    os._exit(0 if CHILD_CALL() else 3)
release.set(); loader.join()
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@needs_fork
def test_a_child_forked_while_another_thread_loads_the_plugins_can_call_kernels(tmp_path):
    """Another thread's first kernel call builds the registry holding the plugins' lock; a
    child forked meanwhile (a ``multiprocessing`` pool started then) waited for that lock at
    its own first kernel call, for good: the thread holding it does not exist there."""
    script = """
import faulthandler, os, threading
from asp_core import plugins

parent, holding, release = os.getpid(), threading.Event(), threading.Event()

class SlowToRegister:
    @plugins.hookimpl
    def asp_register_specializers(self, register):
        if os.getpid() == parent:   # the parent's loader is mid-way when the child forks
            holding.set()
            # the fork itself waits for the registry lock (asp_core's at-fork hook) until the
            # loader is done: 60 s here made this test the suite's slowest by far
            release.wait(2)

plugins.register_plugin(SlowToRegister(), name="slow-to-register")
loader = threading.Thread(target=plugins.get_registry)
loader.start()
holding.wait(60)

def CHILD_CALL():
    return plugins.get_registry() is not None
""" + _FORK_AND_CALL
    run = _run_script(script, tmp_path)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-3000:]


@needs_fork
def test_a_child_forked_while_another_thread_parses_a_kernel_can_specialise(tmp_path):
    """On Python 3.11 ``functools.cached_property`` holds one lock for all instances while it
    computes: a child forked while another thread read a kernel's source (its first call)
    waited for that lock forever at its own first specialisation."""
    script = """
import faulthandler, os, threading
from asp_core import context
from asp_core.context import SpecializationContext

parent, holding, release = os.getpid(), threading.Event(), threading.Event()
real = context.kernel_source

def slow_source(func):
    if os.getpid() == parent:   # the parent's thread is parsing when the child forks
        holding.set()
        release.wait(60)
    return real(func)

context.kernel_source = slow_source

from textwrap import dedent as kernel   # any function whose source file Python can read

loader = threading.Thread(target=lambda: SpecializationContext("k", kernel).source)
loader.start()
holding.wait(60)

def CHILD_CALL():
    return "def dedent" in SpecializationContext("k", kernel).source
""" + _FORK_AND_CALL
    run = _run_script(script, tmp_path)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-3000:]


def _axpy(a, b):
    return a + 3.0 * b


def _fake_compiler(tmp_path: Path, body: str) -> Path:
    """A compiler script running ``body`` for real compiles, and gcc for the probes (so the
    toolchain is found, as a wrapper that breaks only on kernels would be)."""
    script = tmp_path / "fake-cc"
    script.write_text("#!/bin/sh\n"
                      'case "$*" in *probe*|--version) exec gcc "$@";; esac\n'
                      f"{body}\n")
    script.chmod(0o755)
    return script


def test_a_compiler_that_never_ends_is_stopped(tmp_path, monkeypatch):
    """A compile had no time limit: a compiler that hangs (a wrapper waiting for a licence
    server) hung the kernel's first call, and the exit that waits for background compiles."""
    monkeypatch.setenv("ASP_COMPILE_TIMEOUT", "0.5")
    fake = _fake_compiler(tmp_path, "exec sleep 8")
    tc = Toolchain("c", str(fake), "gcc", "12", ())
    with pytest.raises(ToolchainError, match="did not finish compiling generated code in 0.5 s "
                                             ".*ASP_COMPILE_TIMEOUT sets the limit") as info:
        tc.compile("int f(void) { return 1; }\n", tmp_path, name="f")
    assert not isinstance(info.value, CompileError)   # not the generated code's fault


@pytest.mark.parametrize("body, cause", [("kill -9 $$", "killed by SIGKILL"),
                                         ("echo done; exit 0", "wrote no libasp_map.so")])
@requires_compiler
def test_a_compiler_killed_or_writing_nothing_is_not_reported_as_a_bug(
        elementwise, fresh_cache, monkeypatch, tmp_path, body, cause):
    """A compiler killed (the OOM killer) or a wrapper that exits 0 without output: the kernel
    ran in Python with "generated code failed to compile (a bug; please report it) ... (exit
    -9)", sending the user to report a bug in Asp for what broke the compiler."""
    monkeypatch.setenv("ASP_CC", str(_fake_compiler(tmp_path, body)))
    d = Dispatcher("elementwise", _axpy)
    a, b = np.ones(4), np.arange(4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
    messages = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    assert len(messages) == 1 and cause in messages[0], messages
    assert "a bug" not in messages[0] and "failed on generated code" not in messages[0]


def test_tuning_rows_with_cells_of_the_wrong_type_are_skipped(fresh_cache):
    """SQLite keeps any type in any column: a timing whose seconds cell is text (damaged, or
    written by another program) made every first call tuned under that key raise
    ``ValueError`` from the tuner, and a key that is not text broke ``asp cache info``."""
    db = PerfDB()
    db.record_many("k", [("a", 1.0, None), ("b", 2.0, None)], winner="a")
    with sqlite3.connect(db.path) as con:
        con.execute("UPDATE timings SET seconds = 'garbage' WHERE variant = 'a'")
        con.execute("INSERT INTO winners VALUES (x'00ff', 'b', '', 0)")
    assert db.timings("k") == [("b", 2.0, 1)]
    tuner = Autotuner("k", ["a", "b"], mode="once", db=db)
    assert (tuner.winner, tuner.source) == ("a", "perf database")
    assert db.summary() == [("k", "", "a")]


def _forget_probes() -> None:
    """Forget this process's compiler probes, as a new process would have none."""
    for memo in (toolchain._probe, toolchain._openmp_works, toolchain._broken,
                 toolchain._missing):
        memo.cache_clear()


@requires_compiler
def test_a_probe_that_failed_for_the_moment_is_not_remembered(fresh_cache, monkeypatch):
    """A probe failing for a reason of the moment (``TMPDIR`` full: "fatal error: error closing
    /tmp/ccX.s: No space left on device") was written to ``toolchains.json``: every later
    process then said "cc is not a working c compiler" and ran its kernels in Python, until
    the compiler was upgraded or the cache cleared."""
    _forget_probes()
    try:
        expected = find_toolchain("c").has_openmp   # what this machine's compiler can do
        (fresh_cache / "toolchains.json").unlink()
        _forget_probes()
        with monkeypatch.context() as m:   # this process: no space for the compiler's files
            m.setattr(toolchain, "_build_probe", lambda *a: "a one-line test file failed "
                      "to compile (exit 1: fatal error: No space left on device)")
            with pytest.raises(CompilerNotFound, match="No space left on device"):
                find_toolchain("c")
        _forget_probes()   # a later process, with space again
        assert find_toolchain("c").has_openmp == expected
        memo = json.loads((fresh_cache / "toolchains.json").read_text())
        assert all(v is True for k, v in memo.items() if k.startswith("openmp-so:"))
        assert all(v == "" for k, v in memo.items() if k.startswith("works:"))
    finally:
        _forget_probes()


def test_a_probe_failure_names_the_compilers_error_line(tmp_path, monkeypatch):
    """gcc ends its output with "compilation terminated.", and that last line was all the
    message showed, hiding what went wrong."""
    fake = tmp_path / "cc-without-space"
    fake.write_text("#!/bin/sh\n"
                    "echo 'probe.c:1:1: fatal error: error closing /tmp/cc1.s: "
                    "No space left on device' >&2\n"
                    "echo 'compilation terminated.' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(fake))
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CompilerNotFound, match="No space left on device"):
        find_toolchain("c")


class _Built(dict):
    """Built variants, name -> callable, as :class:`TuningCallable` reads a ``Variants``."""

    def __init__(self, fns: dict) -> None:
        super().__init__(fns)
        self._built = dict(fns)

    def variant(self, name: str) -> str:
        return name


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_a_variant_timed_after_ctrl_c_is_not_charged_for_the_interrupted_call(tmp_path):
    """After Ctrl-C the interrupted compiled call runs on to its end on the worker, and the
    next compiled call waits for it: a tuning call timed that wait as its variant's time, so
    the variant lost and the wrong winner was stored for later processes (a notebook's
    "interrupt kernel" during a kernel's first calls)."""
    from asp_core.pipeline import TuningCallable

    assert interrupt.wait_idle(60)   # an earlier test's interrupted call may still run
    started, finished_at = threading.Event(), []

    def interrupted_call() -> None:
        started.set()
        time.sleep(1.0)
        finished_at.append(time.perf_counter())

    def ctrl_c() -> None:
        if started.wait(60):
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=ctrl_c)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt.call(interrupted_call)
    finally:
        sender.join()
    tuner = Autotuner("k", ["a", "b"], mode="always", db=PerfDB(tmp_path / "perf.sqlite"))
    compiled = _Built({name: lambda: interrupt.run(lambda: None, work=1) for name in "ab"})
    TuningCallable(tuner, compiled, lambda fn: None)()   # type: ignore[arg-type]
    returned = time.perf_counter()
    assert finished_at, "the interrupted call ended before the tuning call returned"
    assert tuner.times["a"][0] <= returned - finished_at[0]   # timed after it ended


#: a compile on a thread and a fork at the worst moment: while ``subprocess`` starts the
#: compiler, after it made the pipes and before it closed the compiler's ends of them (the
#: start is slowed down there).  The forked process lives 60 s; prints "done" when the compile
#: finished while it lived
_FORK_WHILE_STARTING = """
import os, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path
from asp_core.toolchain import find_toolchain

starting, forked = threading.Event(), threading.Event()
real = subprocess.Popen._close_pipe_fds

def slow_close(self, *fds):
    starting.set()
    forked.wait(2)   # the fork comes in here, unless it waits for the start to end
    return real(self, *fds)

subprocess.Popen._close_pipe_fds = slow_close
tc = find_toolchain("c")   # probed first: only the compile goes through the slow start
workdir = Path(tempfile.mkdtemp())
thread = threading.Thread(target=tc.compile, args=("int f(void) { return 1; }\\n", workdir))
thread.start()
starting.wait(30)
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
forked.set()
thread.join(30)
print("done" if not thread.is_alive() else "the compile waited for the forked process")
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
"""


@needs_fork
@requires_compiler
@pytest.mark.skipif(not hasattr(subprocess.Popen, "_close_pipe_fds"),
                    reason="this Python's subprocess has no step to slow down")
def test_a_fork_while_a_compiler_starts_does_not_hang_the_compile(tmp_path):
    """A fork by one thread while another started a compiler (``multiprocessing`` right after
    a first call, whose compile runs in the background) gave the forked process copies of the
    compiler's pipes: the compile waited for their end until that process exited, and one
    that needed the same cache entry waited for the compile's lock, both for good. Starting a
    process and forking now exclude each other (``asp_core.spawn``)."""
    proc = _run_script(_FORK_WHILE_STARTING, tmp_path)
    assert proc.stdout.strip() == "done", proc.stdout + proc.stderr
