"""When ``fit`` builds its shape's library (issue 12): a short fit runs its NumPy passes without
gcc and code generation beside it; a fit whose passes take or foresee more than
``engine.BUILD_AFTER_S`` starts the build at once; a deferred build runs at the latest in
``finish_preparing`` (at exit), after which fits run compiled."""

from __future__ import annotations

import numpy as np
import pytest
from asp_gmm import GaussianMixture, engine
from sklearn.mixture import GaussianMixture as SkGaussianMixture

pytestmark = pytest.mark.compiler


@pytest.fixture
def fresh_engine(tmp_path, monkeypatch):
    from pytest_asp import has_compiler

    if not has_compiler("c"):
        pytest.skip("no C compiler (install gcc)")
    engine.reset()  # an earlier test's build must not land in this cache
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    engine.reset()
    yield
    engine.reset()


def _data(N: int = 1500, D: int = 3, M: int = 3) -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.normal(scale=4.0, size=(M, D))[rng.integers(0, M, N)] + rng.normal(size=(N, D))


def _started() -> list[tuple]:
    return list(engine._PREPARING)


def test_short_fit_defers_its_build_until_finish_preparing(fresh_engine, monkeypatch):
    monkeypatch.setattr(engine, "BUILD_AFTER_S", 60.0)
    X = _data()
    ours = GaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    assert _started() == []  # every pass ran in NumPy, nothing compiled beside them
    ref = SkGaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    engine.finish_preparing()
    assert len(_started()) == 1
    assert engine.compiled(3, 3, "diag", np.float64)
    assert not engine.dispatcher("em_step").specializations  # built, nothing bound yet
    again = GaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    assert engine.dispatcher("em_step").specializations  # the EM iterations ran compiled
    np.testing.assert_allclose(again.lower_bound_, ref.lower_bound_, rtol=1e-6)


def test_fit_foreseeing_long_numpy_passes_starts_the_build(fresh_engine, monkeypatch):
    monkeypatch.setattr(engine, "BUILD_AFTER_S", 0.0)
    GaussianMixture(3, covariance_type="diag", max_iter=3, random_state=0).fit(_data())
    assert len(_started()) == 1
    engine.finish_preparing()


def test_a_fits_first_pass_foresees_nothing(fresh_engine, monkeypatch):
    """The first NumPy pass of a fit pays one-time costs (3.8 ms against 1.0-1.2 ms for the
    next seeding steps of N=20k D=64 M=16): foreseen for every pass left, it started the
    build of a fit that ended long before the library was ready (first fit 178 -> 103 ms
    without it). Later passes foresee the rest at the fit's fastest pass so far."""
    from types import SimpleNamespace

    monkeypatch.setattr(engine, "BUILD_AFTER_S", 0.5)
    engine.prepare(3, 3, "diag", np.float64, defer=True)
    clock = [0.0]
    monkeypatch.setattr(engine, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def numpy_pass(seconds: float, calls_left: int) -> None:
        def run() -> None:
            clock[0] += seconds
        engine.numpy_pass(run, _data(), 3, "diag", None, calls_left=calls_left)

    numpy_pass(0.03, 100)       # alone 3 s foreseen: the warm-up is not the fit's pace
    assert _started() == []
    numpy_pass(0.001, 99)       # 0.031 spent + 98 x 0.001
    numpy_pass(0.01, 98)        # 0.041 spent + 97 x 0.001 (the fastest): 0.138
    assert _started() == []
    numpy_pass(0.006, 97)       # 0.047 spent + 96 x 0.001 = 0.143
    assert _started() == []
    numpy_pass(0.46, 96)        # 0.507 spent
    assert len(_started()) == 1
    engine.finish_preparing()


def test_shape_with_long_numpy_history_builds_at_the_next_fit(fresh_engine, monkeypatch):
    monkeypatch.setattr(engine, "BUILD_AFTER_S", 60.0)
    X = _data()
    GaussianMixture(3, covariance_type="diag", max_iter=3, random_state=0).fit(X)
    assert _started() == []
    monkeypatch.setattr(engine, "BUILD_AFTER_FITS_S", 1e-9)  # the first fit's passes exceed it
    engine.prepare(3, 3, "diag", np.float64, defer=True)
    assert len(_started()) == 1
    engine.finish_preparing()


@pytest.mark.filterwarnings("ignore:Best performing initialization did not converge")
def test_compiled_fit_neither_compiles_nor_times_candidates(fresh_engine, monkeypatch):
    """The EM candidates besides the model's variant wait for the fits to end: a fit on the
    compiled library runs that variant and drops the untimed ones for this process."""
    from asp_core import background
    from asp_gmm.programs import variants_for

    monkeypatch.setattr(background, "IDLE_S", 60.0)
    X = _data(4000, 3, 4)
    engine.prepare(3, 4, "diag", np.float64)
    engine.finish_preparing()
    GaussianMixture(4, covariance_type="diag", max_iter=5, tol=0.0, random_state=0).fit(X)
    assert background.busy(low_priority=True)   # the candidates wait for the idle gap
    assert not background.busy(low_priority=True, waiting=False)
    assert not engine.tuning()
    model = variants_for("openmp", "em_step", 4, 3, "diag")[0].name
    assert engine.winner() == model
    background.release()
    assert not background.busy(low_priority=True)
    # a later process finds the candidates in the code cache and times them on its fits
    engine.reset()
    engine.prepare(3, 4, "diag", np.float64)
    engine.finish_preparing()
    GaussianMixture(4, covariance_type="diag", max_iter=5, tol=0.0, random_state=0).fit(X)
    assert not background.busy(low_priority=True)
    events = engine.dispatcher("em_step").last_context.events
    timed = [d for e, d in events if e == "autotune" and d.get("timings")]
    assert timed and len(timed[0]["timings"]) > 1


@pytest.mark.parametrize("numpy_seconds_needed", [1e9, 0.0])
def test_exit_builds_only_shapes_whose_fits_took_a_while(tmp_path, numpy_seconds_needed):
    """At exit, a shape whose fits all ran in NumPy is built (so the next process starts
    compiled) only when they took ``BUILD_AFTER_S`` in all: a model-selection sweep of small
    fits (K = 1..8, two covariance types here) built every shape's library at exit, seconds
    after fits of milliseconds."""
    import subprocess
    import sys

    from pytest_asp import has_compiler

    if not has_compiler("c"):
        pytest.skip("no C compiler (install gcc)")
    script = (
        "import numpy as np\n"
        "from asp_gmm import GaussianMixture, engine\n"
        "engine.BUILD_AFTER_S = 1e9   # every fit in NumPy\n"
        "X = np.random.default_rng(0).normal(size=(500, 2))\n"
        "for k in (1, 2, 3):\n"
        "    for cov in ('full', 'diag'):\n"
        "        GaussianMixture(k, covariance_type=cov, random_state=0).fit(X)\n"
        "assert not engine._PREPARING, 'nothing built during the fits'\n"
        f"engine.BUILD_AFTER_S = {numpy_seconds_needed!r}   # what the exit asks for\n")
    cache = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ,
                                           "ASP_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stderr[-2000:]
    built = list(cache.rglob("*.so"))
    assert (len(built) == 6) if numpy_seconds_needed == 0.0 else not built, built


FORK_SCRIPT = """
import faulthandler, os, sys, threading
import numpy as np
from asp_gmm import GaussianMixture, engine

gate = threading.Event()   # holds the parent's build in flight
real = engine.dispatcher


class Held:
    def __init__(self, d):
        self.d = d

    def build_variants(self, *args):
        gate.wait()
        return self.d.build_variants(*args)


engine.dispatcher = lambda op, options=None: Held(real(op, options)) if op == "m_step" else \\
    real(op, options)
X = np.random.default_rng(0).normal(size=(3000, 5))
engine.prepare(5, 3, "diag", np.float64)   # a build thread, held before it compiles
engine._CONTROLLER_LOCK.acquire()          # as the thread making the threadpool controller does
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(60, exit=True)   # a hang is exit status 1
    gate.set()
    for _ in range(2):
        GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    engine.finish_preparing()
    os._exit(0 if engine.compiled(5, 3, "diag", np.float64) else 3)
gate.set()
engine._CONTROLLER_LOCK.release()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_during_a_build_fits_and_builds_its_own(tmp_path):
    """A process forked while a fit's helper threads held the engine's locks (the threadpool
    controller being made, at the start of every first fit) hung in the child's first fit, and
    a build running in the parent at the fork never finished in the child, whose fits of that
    shape then ran in NumPy for good (``multiprocessing``'s default start method on Linux is
    fork)."""
    import os
    import subprocess
    import sys

    from pytest_asp import has_compiler

    if not has_compiler("c") or not hasattr(os, "fork"):
        pytest.skip("needs a C compiler and fork")
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, ASP_CACHE_DIR=str(tmp_path / "c")))
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_for_a_shape_no_fit_prepared_runs_in_numpy(fresh_engine, dtype):
    """A model unpickled in a new process (no fit of its shape there), or float32 data under a
    float64 fit: ``predict`` specialised at once, about a second of gcc for a millisecond's
    work. It registers a deferred build and answers in NumPy, like a short fit."""
    import pickle

    X = _data()
    model = pickle.dumps(GaussianMixture(3, random_state=0).fit(X))
    engine.reset()   # what a new process knows
    gm = pickle.loads(model)
    labels = gm.predict(X.astype(dtype))
    assert labels.tolist() == SkGaussianMixture(3, random_state=0).fit(X).predict(X).tolist()
    assert _started() == []   # nothing compiles: the build waits for NumPy time or exit
    assert not engine.compiled(3, 3, "full", dtype)
