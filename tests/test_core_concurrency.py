"""The core used from several threads at once: a kernel's tuning calls from concurrent
threads, and a child forked while one of them runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from asp_core.autotune import Autotuner, PerfDB
from asp_core.pipeline import TuningCallable


class _Variants(dict):
    """The two :class:`TuningCallable` needs of :class:`~asp_core.pipeline.Variants`: every
    variant built already, none with a phase-4 step left."""

    @property
    def _built(self) -> dict:
        return self

    @staticmethod
    def variant(name: str) -> str:
        return name


def test_tuning_calls_from_two_threads_are_timed_one_at_a_time(tmp_path):
    """Two threads calling a kernel while its variants were timed ran them side by side: each
    timing held the other thread's call too, so the variant timed beside a busy one lost (and
    was stored as the slower for every later process), and both threads could decide and
    store the tuning. The second call now waits until the first one's timing is taken."""
    first_in, second_in = threading.Event(), threading.Event()
    overlapped = []

    def variant() -> None:
        if not first_in.is_set():
            first_in.set()
            # the second thread's call, if it runs now, shares this timing
            overlapped.append(second_in.wait(timeout=1.0))
        else:
            second_in.set()

    decided = []
    tuner = Autotuner("k", ["a", "b"], mode="always", db=PerfDB(tmp_path / "perf.sqlite"))
    kernel = TuningCallable(tuner, _Variants(a=variant, b=variant),  # type: ignore[arg-type]
                            decided.append)
    first = threading.Thread(target=kernel)
    first.start()
    assert first_in.wait(30)
    second = threading.Thread(target=kernel)
    second.start()
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert overlapped == [False]
    assert second_in.is_set() and sorted(tuner.times) == ["a", "b"]
    assert tuner.done and len(decided) == 1


def test_a_timed_call_that_calls_the_same_kernel_again_does_not_deadlock(tmp_path):
    """A variant whose call reaches user code that calls the same kernel (a solver's callback)
    re-enters its TuningCallable on the thread holding the timing lock: with a plain lock that
    thread waited for itself forever. The nested call runs (it is timed inside the outer one)."""
    depth = []

    def variant() -> None:
        depth.append(len(depth))
        if len(depth) == 1:
            kernel()  # the nested call, while the outer one is being timed

    tuner = Autotuner("k", ["a", "b"], mode="always", db=PerfDB(tmp_path / "perf.sqlite"))
    kernel = TuningCallable(tuner, _Variants(a=variant, b=variant),  # type: ignore[arg-type]
                            lambda fn: None)
    caller = threading.Thread(target=kernel, daemon=True)
    caller.start()
    caller.join(30)
    assert not caller.is_alive(), "the nested call deadlocked on the timing lock"
    assert depth == [0, 1]


FORK_WHILE_TIMING = """
import faulthandler, os, threading
from asp_core.autotune import Autotuner, PerfDB
from asp_core.pipeline import TuningCallable

class Variants(dict):
    _built = property(lambda self: self)
    variant = staticmethod(lambda name: name)

inside, leave = threading.Event(), threading.Event()
def slow():
    if threading.current_thread() is not threading.main_thread():
        inside.set(); leave.wait(60)
tuner = Autotuner("k", ["a", "b"], mode="always", db=PerfDB(os.environ["PERF_DB"]))
kernel = TuningCallable(tuner, Variants(a=slow, b=slow), lambda fn: None)
t = threading.Thread(target=kernel); t.start(); inside.wait(60)
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(30, exit=True)
    kernel(); kernel()
    os._exit(0)
leave.set(); t.join()
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_child_forked_while_a_thread_times_a_call_can_call_the_kernel(tmp_path):
    """The timing lock a parent's thread held at the fork (a tuning call under way) would stay
    held in the child, whose calls of the kernel would then wait forever."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    env = {**os.environ, "PERF_DB": str(tmp_path / "perf.sqlite"),
           "ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run([sys.executable, "-c", FORK_WHILE_TIMING], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]
