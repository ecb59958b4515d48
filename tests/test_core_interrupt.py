"""Ctrl-C during a long compiled call (:mod:`asp_core.interrupt`)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from pytest_asp import requires_compiler

from asp_core import interrupt


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix",
                    reason="needs POSIX signals")
def test_a_small_call_after_ctrl_c_waits_for_the_interrupted_one():
    """The interrupted call runs on to its end on the worker; a next call too small to be
    handed off ran at once beside it, on the same arrays ("calls never overlap" was false)."""
    assert interrupt.wait_idle(60)   # an earlier test's interrupted call may still run
    done: list[str] = []
    started = threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(1.0)
        done.append("slow")

    def ctrl_c() -> None:   # once the call runs on the worker (a busy machine may start it late)
        if started.wait(60):
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=ctrl_c)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt.call(slow)
    finally:
        sender.join()
    assert interrupt.run(lambda: list(done), work=1) == ["slow"]
    assert interrupt.wait_idle(5)


OMP_SUM = """
double omp_sum(const double *x, long n) {
    double s = 0.0;
    #pragma omp parallel for reduction(+:s) num_threads(2)
    for (long i = 0; i < n; ++i) s += x[i];
    return s;
}
"""


@requires_compiler
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_compiled_openmp_calls():
    """GNU OpenMP keeps the forking thread's worker pool in the child, which has none of its
    threads: the child's first parallel region on that thread waited forever (a stencil kernel
    called in a multiprocessing worker forked after one call in the parent hung)."""
    import ctypes
    import faulthandler

    import numpy as np

    from asp_core.build import compile_library

    fn = compile_library(OMP_SUM, name="omp_sum").cdll.omp_sum
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_long], ctypes.c_double
    x = np.arange(1000, dtype=np.float64)
    assert interrupt.run(fn, x.ctypes.data, x.size, work=1) == x.sum()
    pid = os.fork()
    if pid == 0:   # the child: exit 0 when both calls return the sum, 1 when one hangs
        faulthandler.dump_traceback_later(30, exit=True)   # exits with status 1
        ok = all(interrupt.run(fn, x.ctypes.data, x.size, work=1) == x.sum() for _ in range(2))
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
