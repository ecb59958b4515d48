"""Ctrl-C during a long compiled call (issue 14): KeyboardInterrupt reaches the caller while
the C code is still running; the call's memory stays alive until the C code ends."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

import numpy as np
import pytest

from asp_core import interrupt
from asp_core.build import compile_library
from pytest_asp import requires_compiler

SPIN = r"""
#include <time.h>
volatile int asp_spin_finished = 0;
void asp_spin(double seconds, double *out) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do { clock_gettime(CLOCK_MONOTONIC, &t); }
    while ((t.tv_sec - t0.tv_sec) + 1e-9 * (t.tv_nsec - t0.tv_nsec) < seconds);
    out[0] = 42.0;
    asp_spin_finished = 1;
}
"""


def _spin(fresh_cache):
    lib = compile_library(SPIN, name="spin", openmp=False)
    fn = lib.cdll.asp_spin
    fn.argtypes, fn.restype = [ctypes.c_double, ctypes.c_void_p], None
    return lib, fn, ctypes.c_int.in_dll(lib.cdll, "asp_spin_finished")


@requires_compiler
def test_ctrl_c_interrupts_a_long_compiled_call(fresh_cache, request):
    # Python's own Ctrl-C handler, whatever the test run inherited (a job started in the
    # background by a non-interactive shell ignores SIGINT, and Python then installs none)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    lib, fn, finished = _spin(fresh_cache)
    out = np.zeros(1)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt.call(fn, 3.0, out.ctypes.data)
        assert finished.value == 0  # interrupted while the C code was still running
    finally:
        timer.cancel()
        assert interrupt.wait_idle(60)
    assert finished.value == 1 and out[0] == 42.0  # it ran to its end on live memory
    finished.value = 0
    interrupt.call(fn, 0.0, out.ctypes.data)  # the worker serves later calls as before
    assert finished.value == 1


def test_errors_and_results_come_back_to_the_caller():
    assert interrupt.call(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        interrupt.call(lambda: 1 / 0)
    assert interrupt.wait_idle(5)


def test_other_threads_call_directly():
    seen = []
    t = threading.Thread(target=lambda: seen.append(interrupt.call(threading.current_thread)))
    t.start()
    t.join()
    assert seen == [t]


@requires_compiler
def test_large_stencil_calls_go_through_the_interruptible_path(fresh_cache, monkeypatch):
    asp_stencil = pytest.importorskip("asp_stencil")

    class Lap(asp_stencil.StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = -4.0 * u[x]
                for y in u.neighbors(x, 1):
                    out[x] += u[y]

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    used = []
    real = interrupt.call
    monkeypatch.setattr(interrupt, "call", lambda fn, *a, **k: used.append(fn) or real(fn, *a, **k))
    for n, expect in ((16, False), (2100, True)):
        used.clear()
        u, out = asp_stencil.StencilGrid((n, n)), asp_stencil.StencilGrid((n, n))
        u.data[...] = np.random.default_rng(0).random((n, n))
        Lap().kernel(u, out)
        ref = -4.0 * u.data[1:-1, 1:-1] + u.data[2:, 1:-1] + u.data[:-2, 1:-1] \
            + u.data[1:-1, 2:] + u.data[1:-1, :-2]
        np.testing.assert_allclose(out.data[1:-1, 1:-1], ref, rtol=1e-14)
        assert bool(used) == expect


@requires_compiler
@pytest.mark.filterwarnings("ignore:Best performing initialization did not converge")
def test_large_gmm_em_steps_go_through_the_interruptible_path(fresh_cache, monkeypatch):
    asp_gmm = pytest.importorskip("asp_gmm")
    pytest.importorskip("sklearn")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    used = []
    real = interrupt.call
    monkeypatch.setattr(interrupt, "call", lambda fn, *a, **k: used.append(fn) or real(fn, *a, **k))
    X = np.random.default_rng(0).normal(size=(300_000, 4))
    # a fit that starts while the library compiles runs its first steps in NumPy
    asp_gmm.GaussianMixture(4, covariance_type="diag", max_iter=2, random_state=0).fit(X)
    asp_gmm.engine.finish_preparing()
    used.clear()
    asp_gmm.GaussianMixture(4, covariance_type="diag", max_iter=2, random_state=0).fit(X)
    assert used
