"""The core used from several threads at once: a kernel's tuning calls from concurrent
threads."""

from __future__ import annotations

import threading

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
