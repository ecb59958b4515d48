"""Forked children and parents, x a view of out, the object API's dtype: calls that hung,
raised once compiled or computed in another dtype than SciPy."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery


def repeated(A, x, k):
    """``[x, A x, ..., A^k x]`` by SciPy's products."""
    out = [np.asarray(x, dtype=np.float64)]
    for _ in range(k):
        out.append(A @ out[-1])
    return np.array(out)


@pytest.fixture(autouse=True)
def _no_tuning(monkeypatch):
    """The default variant only (each tuned variant is another compile)."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")


@requires_compiler
def test_x_a_view_of_out_continues_the_basis():
    """``matrix_powers(A, V[k], k, out=V)`` (continue a basis from its last level, in place)
    gave the right answer from SciPy's products but ``ValueError: xs and out must not
    overlap`` (internal names) from the compiled kernel: x is now copied when it overlaps
    ``out``."""
    A = gallery.poisson2d(20)
    n, k = A.shape[0], 4
    x = np.random.default_rng(0).standard_normal(n)
    for level in (0, 2, k):
        V = np.zeros((k + 1, n))
        V[level] = x
        got = asp_mpk.matrix_powers(A, V[level], k, out=V)
        assert got is V
        np.testing.assert_allclose(V, repeated(A, x, k), rtol=1e-12, atol=1e-12)
    mp = asp_mpk.MatrixPowers(A, k)
    W = np.zeros((1, k + 1, n))
    W[0, k] = x
    assert mp(W[:, k], out=W) is W   # a 2-D x of one vector, contiguous inside out
    np.testing.assert_allclose(W[0], repeated(A, x, k), rtol=1e-12, atol=1e-12)


def _run_script(script, tmp_path, timeout=180, **env):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"), **env}
    try:
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script hung: {exc.stdout!r} {exc.stderr!r}"[-3000:])
    return run


@requires_compiler
def test_an_exit_during_a_first_call_s_compile_waits_for_it(tmp_path):
    """asp-mpk's exit handler (which waits for its specialisations) was registered before the
    core's kill of the compilers still running (``import asp_mpk`` imported the core after
    it): exit handlers run last-in first-out, so an exit while the kernel compiled killed gcc,
    warned "gcc was killed by SIGKILL ... (out of memory, or stopped by hand?)" and lost the
    compile."""
    script = ("import time, numpy as np\n"
              "from asp_mpk import MatrixPowers\n"
              "from asp_mpk.gallery import poisson2d\n"
              "import asp_core.spawn as spawn\n"
              "A = poisson2d(10)\n"
              "MatrixPowers(A, 4)(np.ones(A.shape[0]))\n"
              "def compiling():\n"
              "    for pid in list(spawn._RUNNING):\n"
              "        try:\n"
              "            if b'mpk_' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
              "                return True\n"
              "        except OSError:\n"
              "            pass\n"
              "    return False\n"
              "start = time.time()\n"
              "while not compiling() and time.time() - start < 60:\n"
              "    time.sleep(0.002)\n"
              "print('compiling at exit:', compiling())\n")
    if not os.path.isdir("/proc/self"):
        pytest.skip("reads /proc")
    run = _run_script(script, tmp_path, ASP_MPK_COMPILE="background")
    assert run.returncode == 0 and "compiling at exit: True" in run.stdout, run.stderr[-2000:]
    assert "SIGKILL" not in run.stderr and "Warning" not in run.stderr, run.stderr[-2000:]
    assert list((tmp_path / "cache").rglob("*.so")), "the compile did not land in the cache"


@requires_compiler
def test_a_forked_child_runs_the_kernels_on_its_forking_thread(tmp_path):
    """GNU OpenMP is not fork-safe: the parent's first calls ran parallel regions on the main
    thread (the planner's CSR products and checksum, the kernel), and the child's first call
    of more than one thread on that thread waited forever for the parent's pool of OpenMP
    workers (a ``multiprocessing`` pool forked after a call hung).  The forking thread now
    runs its native passes and kernels on one thread."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, faulthandler, numpy as np, asp_mpk\n"
              "from asp_mpk.gallery import poisson2d\n"
              "A = poisson2d(300); x = np.ones(A.shape[0])\n"
              "asp_mpk.matrix_powers(A, x, 3); asp_mpk.spmv(A, x)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    faulthandler.dump_traceback_later(60, exit=True)\n"
              "    V = asp_mpk.matrix_powers(A, 2 * x, 3)\n"
              "    W = asp_mpk.matrix_powers(A, np.stack([x, 2 * x]), 3)   # a first call\n"
              "    ok = np.allclose(V[3], A @ (A @ (A @ (2 * x)))) and np.allclose(W[1], V)\n"
              "    os._exit(0 if ok else 3)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    run = _run_script(script, tmp_path, ASP_MPK_COMPILE="background", OMP_NUM_THREADS="2")
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


@requires_compiler
def test_a_child_forked_right_after_calls_runs_their_native_calls(tmp_path):
    """The native calls that serve a matrix while its kernel is specialised (the CSR products
    of spmv, of matrix_powers and of a MatrixPowers object) were made with the parent's
    threads, and a child forked before the kernel was ready ran them with two threads on its
    forking thread: a ``multiprocessing`` worker hung at its first call.  They run one thread
    in a child forked after they were made."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, faulthandler, numpy as np, scipy.sparse as sp, asp_mpk\n"
              "n, one = 50_000, np.ones(50_000)\n"
              "A = sp.diags([-one[600:], -one[1:], 4 * one, -one[1:], -one[600:]],\n"
              "             [-600, -1, 0, 1, 600], format='csr')\n"
              "x = np.ones(n)\n"
              "for _ in range(3):\n"
              "    asp_mpk.matrix_powers(A, x, 4); asp_mpk.spmv(A, x)\n"
              "mp = asp_mpk.MatrixPowers(A, 4); mp(x)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    faulthandler.dump_traceback_later(60, exit=True)\n"
              "    want = [2 * x]\n"
              "    for _ in range(4):\n"
              "        want.append(A @ want[-1])\n"
              "    V, y, W = asp_mpk.matrix_powers(A, 2 * x, 4), asp_mpk.spmv(A, 2 * x), mp(2 * x)\n"
              "    ok = np.allclose(V, want) and np.allclose(y, want[1]) and np.allclose(W, want)\n"
              "    os._exit(0 if ok else 3)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    # tuned as by default: the native calls serve while the variants compile and are timed
    run = _run_script(script, tmp_path, ASP_MPK_COMPILE="background", OMP_NUM_THREADS="2",
                      ASP_AUTOTUNE="once")
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_a_fork_while_a_specialisation_takes_a_cache_lock_does_not_hang(tmp_path):
    """The fork hook that waits for the background specialisations ran after filelock's,
    which closes its gate to lock changes first: a specialisation that then released (or
    took) its compile-cache lock waited at that gate, and the fork waited for it forever.
    asp_mpk registers its hook after filelock's now, so it runs first."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    lock = str(tmp_path / "x.lock")
    script = ("import os, time, asp_mpk\n"
              "from asp_mpk import background\n"
              "import filelock   # imported later: by a specialisation's first compile\n"
              "def compile_():\n"
              "    time.sleep(1.0)   # the fork starts meanwhile\n"
              f"    with filelock.FileLock({lock!r}):\n"
              "        pass\n"
              "background.start(compile_, name='asp-mpk-specialise')\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    os._exit(0)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    run = _run_script(script, tmp_path, timeout=60)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_a_fork_while_a_specialisation_is_about_to_start_a_compiler_does_not_hang(tmp_path):
    """The core's fork hook (a fork waits for a compiler's start, ``asp_core.spawn``) ran before
    asp_mpk's, which waits for the background specialisations: one that then started its
    compiler waited for the fork, and the fork for it.  asp_mpk registers its hook after the
    core's now, so it runs first."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, sys, time, asp_mpk\n"
              "from asp_mpk import background\n"
              "from asp_core.spawn import run_tool\n"
              "def compile_():\n"
              "    time.sleep(1.0)   # the fork starts meanwhile\n"
              "    run_tool([sys.executable, '-c', 'pass'], timeout=30)\n"
              "background.start(compile_, name='asp-mpk-specialise')\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    os._exit(0)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    run = _run_script(script, tmp_path, timeout=60)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_a_child_forked_while_a_thread_fingerprints_a_matrix_can_fingerprint_another(
        tmp_path):
    """``AnalysedMatrix.values`` was a ``functools.cached_property``: on Python 3.11 that holds
    one lock for every matrix while it computes, so a child forked while a thread
    fingerprinted a matrix waited forever for it at its own first fingerprint."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = ("import os, threading, time, faulthandler\n"
              "import asp_mpk.analysis as an\n"
              "from asp_mpk import gallery\n"
              "from asp_mpk.matrix import analysed\n"
              "real = an.values_hash\n"
              "def slow(csr):\n"
              "    time.sleep(1.5)   # the fork comes meanwhile\n"
              "    return real(csr)\n"
              "an.values_hash = slow\n"
              "first, second = analysed(gallery.poisson2d(10)), analysed(gallery.poisson2d(11))\n"
              "threading.Thread(target=lambda: first.values).start()\n"
              "time.sleep(0.3)\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    faulthandler.dump_traceback_later(20, exit=True)\n"
              "    an.values_hash = real\n"
              "    os._exit(0 if second.values else 3)\n"
              "_, status = os.waitpid(pid, 0)\n"
              "print('child', os.waitstatus_to_exitcode(status))\n")
    run = _run_script(script, tmp_path, timeout=60)
    assert run.returncode == 0 and "child 0" in run.stdout, run.stdout + run.stderr[-2000:]


def test_the_object_api_computes_in_scipys_dtype():
    """``MatrixPowers(float32 A)(float64 x)`` converted x to float32, where ``A @ x`` (and
    ``matrix_powers``) compute in float64."""
    A = gallery.poisson2d(12).astype(np.float32)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    mp = asp_mpk.MatrixPowers(A, 3)
    V = mp(x)
    assert V.dtype == np.float64 == (A @ x).dtype
    np.testing.assert_allclose(V[3], A @ (A @ (A @ x)), rtol=1e-12)
    np.testing.assert_array_equal(V, asp_mpk.matrix_powers(A, x, 3))
    assert mp(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="float64"):
        mp(x, out=np.empty((4, A.shape[0]), dtype=np.float32))


@requires_compiler
def test_a_daemon_thread_in_a_native_pass_at_exit_does_not_abort_the_process(tmp_path):
    """A daemon thread looping on ``cg`` when the main thread returns: Python ends such a
    thread when it takes the GIL back, which, from inside the plan builder's GIL release,
    aborted the process ("terminate called without an active exception", status 134, every
    run). The exit waits for the passes under way instead."""
    script = textwrap.dedent("""
        import threading, time
        import numpy as np
        from asp_mpk import cg
        from asp_mpk.gallery import poisson2d
        A = poisson2d(300)
        b = A @ np.random.default_rng(0).random(A.shape[0])
        def solver():
            while True:
                cg(A, b, rtol=1e-9)
        threading.Thread(target=solver, daemon=True).start()
        time.sleep(1.0)
        print("main thread done", flush=True)
    """)
    for i in range(4):   # as a user runs it: a fresh cache, first calls compiling meanwhile
        run = _run_script(script, tmp_path / str(i), ASP_MPK_COMPILE="background")
        assert run.returncode == 0 and "main thread done" in run.stdout, run.stderr[-2000:]
        assert "terminate called" not in run.stderr


def test_a_child_forked_while_another_thread_runs_a_native_pass_exits(tmp_path):
    """The exit hook waits for the native passes under way; a child forked while another
    thread ran one inherited its count and waited at exit for a pass no thread of its ran."""
    script = textwrap.dedent("""
        import os, sys, threading, time
        import numpy as np
        from asp_mpk import _planner
        big = np.ones(20_000_000, dtype=np.uint8)
        stop = False
        def loop():
            while not stop:
                _planner.checksum([big], 1)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        time.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        stop = True
        t.join()
        deadline = time.time() + 30
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.time() > deadline:
                os.kill(pid, 9)
                print("child hung", flush=True)
                break
            time.sleep(0.05)
        else:
            print("child exited", flush=True)
    """)
    run = _run_script(script, tmp_path)
    assert "child exited" in run.stdout, (run.stdout, run.stderr[-2000:])
