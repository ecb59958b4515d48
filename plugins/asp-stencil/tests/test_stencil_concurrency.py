"""Stencil kernels used from several threads at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

import asp_core
from asp_stencil.temporal.bench import Heat
from asp_stencil.temporal import runner
from asp_stencil.temporal.iterate import PLAIN, IterateChoice
from asp_stencil.testing import make_grids


def test_threads_making_a_kernels_first_call_at_once_share_one_dispatcher(monkeypatch):
    """``k.kernel`` first reached from two threads at once made a dispatcher in each; each
    thread specialised and tuned its own (twice the pipeline, two tunings timed side by side)
    and the last one stored was kept. The first one stored is everyone's now."""
    both_made = threading.Barrier(2, timeout=30)

    class Meeting(asp_core.Dispatcher):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            both_made.wait()   # each thread has made its dispatcher before either stores it

    monkeypatch.setattr(asp_core, "Dispatcher", Meeting)
    k = Heat()
    got = []
    threads = [threading.Thread(target=lambda: got.append(k.kernel)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 2 and got[0] is got[1] is k.kernel


def _blocked(run) -> SimpleNamespace:
    """A :class:`~asp_stencil.temporal.runner.Blocked` of one blocked variant, ``run``."""
    events = SimpleNamespace(tuning_events=lambda *a, **k: lambda *a, **k: None)
    return SimpleNamespace(runs={"blocked": run}, params={"blocked": {}}, key="k", ctx=events)


def test_concurrent_iterations_wait_while_one_times_a_chunk(monkeypatch, tmp_path):
    """While ``iterate`` timed plain against blocked sweeps, another thread's iteration of the
    same kernel and grids ran beside the timed chunk (its rest shorter than a chunk in plain
    sweeps, or a chunk timed too): two OpenMP teams on the same cores, timings tens of times
    too long, the wrong candidate chosen and stored. It now waits until the chunk is timed."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    first_thread, first_in, second_in = [], threading.Event(), threading.Event()
    overlapped = []

    def sweep(*grids, steps: int = 1) -> None:
        if not first_thread:
            first_thread.append(threading.current_thread())
            first_in.set()
            # the second thread's sweeps, if they run now, share this chunk's timing
            overlapped.append(second_in.wait(timeout=1.0))
        elif threading.current_thread() is not first_thread[0]:
            second_in.set()

    choice = IterateChoice(_blocked(sweep), chunk=2, mode="auto", label="t")  # type: ignore[arg-type]
    timed = threading.Thread(target=choice.run, args=(sweep, ["u", "v"], 2))
    timed.start()
    assert first_in.wait(30)
    rest = threading.Thread(target=choice.run, args=(sweep, ["u", "v"], 1))
    rest.start()
    timed.join(60)
    rest.join(60)
    assert not timed.is_alive() and not rest.is_alive()
    assert overlapped == [False] and second_in.is_set()
    assert list(choice.tuner.times) == [PLAIN]


def test_concurrent_first_iterations_build_the_blocked_variants_once(monkeypatch, tmp_path):
    """Two threads' first ``iterate`` of a kernel on grids of one signature each built the
    blocked variants (generated, compiled, recorded for ``asp explain``), each then tuned its
    own set against plain sweeps, and the last one stored was kept."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    builds, second_built = [], threading.Event()

    def build(kernel, variants):
        builds.append(variants)
        if len(builds) == 1:
            second_built.wait(timeout=1.0)   # a second build now would be a duplicate
        else:
            second_built.set()
        return "not built in this test"

    monkeypatch.setattr(runner, "_build", build)
    k = Heat()
    grids = tuple(make_grids((8, 9), 1))
    got = []
    threads = [threading.Thread(target=lambda: got.append(runner.get_iterator(k, grids)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == ["not built in this test"] * 2 and len(builds) == 1


FORK_WHILE_ITERATING = """
import faulthandler, os, threading
from types import SimpleNamespace
from asp_stencil.temporal import runner
from asp_stencil.temporal.bench import Heat
from asp_stencil.temporal.iterate import IterateChoice

inside, leave = threading.Event(), threading.Event()
def sweep(*grids, steps=1):
    if threading.current_thread() is not threading.main_thread():
        inside.set(); leave.wait(60)
events = SimpleNamespace(tuning_events=lambda *a, **k: lambda *a, **k: None)
blocked = SimpleNamespace(runs={"blocked": sweep}, params={"blocked": {}}, key="k", ctx=events)
choice = IterateChoice(blocked, chunk=2, mode="auto", label="t")
k = Heat()
def busy():   # building the blocked variants of k, and timing a chunk
    with runner._building(k):
        choice.run(sweep, ["u", "v"], 2)
t = threading.Thread(target=busy); t.start(); inside.wait(60)
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(30, exit=True)
    choice.run(sweep, ["u", "v"], 2)
    with runner._building(k):
        pass
    os._exit(0)
leave.set(); t.join()
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_child_forked_while_a_thread_iterates_can_iterate(tmp_path):
    """The locks a parent's thread held at the fork (a chunk being timed, blocked variants
    being built) stay held in the child, whose iterations must not wait for them."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "always"}
    run = subprocess.run([sys.executable, "-c", FORK_WHILE_ITERATING], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]
