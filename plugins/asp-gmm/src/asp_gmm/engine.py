"""The specialised EM engine: the two GMM kernels behind the core's Dispatcher.

``em_step``, ``log_prob``, ``e_step``, ``m_step``, ``kmeans_assign`` and ``kmeans_seed`` have the
signatures of
:mod:`asp_gmm.reference`; the first call with a new (M, D, covariance type, dtype) runs the
pipeline (:func:`prepare` builds that library in the background ahead of time, once a fit's
NumPy passes show it can pay off), and the first EM iterations of a new shape class each run a
different candidate variant until the fastest is known (candidates compiled once no fit has
run for a while: ``when_idle`` compiles of :mod:`asp_core.background`, fits being its
foreground spans).
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from asp_core import Dispatcher, background, recording
from asp_gmm import reference
from asp_gmm.reference import EMStep, KMeansAssignment, KMeansSeeding
from asp_gmm.programs import example_args

T = TypeVar("T")

__all__ = ["BUILD_AFTER_S", "GMMKernel", "compiled", "dispatcher", "e_step", "em_step",
           "explain_numpy_passes", "finish_preparing", "kmeans_assign", "kmeans_seed",
           "log_prob", "m_step", "prepare", "reset", "tuning", "while_compiling", "winner"]


@dataclass(frozen=True)
class GMMKernel:
    """The dispatcher's ``instance``: which of the two computations this is."""

    op: str


_LOCK = threading.Lock()
_DISPATCHERS: dict[tuple[str, frozenset], Dispatcher] = {}


def _hashable(value: Any) -> Any:
    """``value`` as part of a dictionary key: lists and tuples as tuples, sets and dicts as
    frozensets, recursively (frozensets, not sorted tuples: keys of mixed types cannot be
    sorted)."""
    if isinstance(value, (list, tuple)):
        return tuple(map(_hashable, value))
    if isinstance(value, (set, frozenset)):
        return frozenset(map(_hashable, value))
    if isinstance(value, dict):
        return frozenset((_hashable(k), _hashable(v)) for k, v in value.items())
    return value


def _options_key(options: dict[str, Any] | None) -> frozenset:
    """The key of ``options`` in the per-options tables: option values are often lists
    (docs/configuration.md: ``disable_passes`` lists passes to skip), which are not hashable."""
    try:
        return _hashable(options or {})  # a frozenset: building it hashes every part
    except TypeError as exc:
        raise TypeError(f"asp options must be lists, tuples, sets, dicts or hashable values, "
                        f"got {options!r} ({exc})") from None


def dispatcher(op: str, options: dict[str, Any] | None = None) -> Dispatcher:
    """The shared dispatcher of ``op`` for these options (one per process and options)."""
    key = (op, _options_key(options))
    with _LOCK:
        d = _DISPATCHERS.get(key)
        if d is None:
            func = getattr(reference, op)
            d = _DISPATCHERS[key] = Dispatcher("gmm", func, fallback=func,
                                               instance=GMMKernel(op), options=options,
                                               name=f"asp_gmm.{op}")
        return d


def reset() -> None:
    """Forget every specialisation in this process (the code cache and perf database stay);
    the next call runs the pipeline again, as a new process would. Builds not started yet and
    candidate compiles waiting for the fits to end are dropped, running ones waited for."""
    with _LOCK:
        _DEFERRED.clear()
    for thread in list(_PREPARING.values()):
        thread.join()
    background.release(run_waiting=False)
    with _LOCK:
        _DISPATCHERS.clear()
        _PREPARING.clear()
        _BUILT.clear()
        _DEFERRED.clear()
        _NUMPY_SECONDS.clear()
        _EXPLAINED.clear()


_PREPARING: dict[tuple, threading.Thread] = {}
#: builds :func:`prepare` registered but has not started yet (``defer=True``), by shape
_DEFERRED: dict[tuple, threading.Thread] = {}
#: seconds of NumPy passes run for a shape while its library was not built: (in all, in the
#: current fit, the current fit's fastest pass: inf before its first)
_NUMPY_SECONDS: dict[tuple, tuple[float, float, float]] = {}

#: under ``asp explain``, the NumPy passes of each shape's current fit: [passes, seconds]
_EXPLAINED: dict[tuple, list[float]] = {}

#: NumPy seconds a fit's passes have taken or foresee after which its deferred build starts.
#: A library takes about 0.5-1 s to generate and compile at low priority, and while it does,
#: its Python phases hold the GIL and gcc takes a core: a fit that started its build at once
#: was 2x slower (N=20k D=64 M=16 diag, measured under load) than one that ran all its NumPy
#: passes first, and ended long before the library could have been used. A fit that
#: foresees more than this starts it at once, so that its later passes find it compiled.
BUILD_AFTER_S = 0.1
#: NumPy seconds of a shape's earlier fits after which the next fit of the shape starts its
#: build at once: about what a build costs (ski rental), so that a process fitting small
#: problems in a loop compiles after a few fits, not in the middle of its second one.
BUILD_AFTER_FITS_S = 0.5


def _start(key: tuple) -> None:
    """Start the deferred build of ``key`` (once)."""
    with _LOCK:
        thread = _DEFERRED.pop(key, None)
        if thread is None:
            return
        _PREPARING[key] = thread
    thread.start()


def finish_preparing(*, candidates: bool = True) -> None:
    """Start the deferred builds and wait until every build :func:`prepare` registered is
    done, and (``candidates``) the EM candidates waiting for the fits to end."""
    for key in list(_DEFERRED):
        try:
            _start(key)
        except RuntimeError:  # no new threads at interpreter shutdown (Python >= 3.12)
            return
    for thread in list(_PREPARING.values()):
        thread.join()
    background.release(run_waiting=candidates)


@atexit.register
def _at_exit() -> None:
    """A process whose fits of a shape all ran in NumPy (small problems) builds that shape's
    library at exit, once per shape and cache (about a second at normal priority), so the
    next process starts compiled: when those fits took :data:`BUILD_AFTER_S` in all, else
    not (a model-selection sweep of 32 fits of 4000 x 2 samples, K = 1..8, four covariance
    types, spent 4 s at exit compiling 16 libraries for fits of 10-30 ms: 6.8 s for the
    process against scikit-learn's 2.8). The EM candidates still waiting are dropped: they
    compile at low priority, which on a busy machine could hold the exit for minutes; a later
    process that idles after its fits compiles and times them."""
    from asp_core.interrupt import exit_wait

    with _LOCK:
        for key in [k for k in _DEFERRED if _NUMPY_SECONDS.get(k, (0.0,))[0] < BUILD_AFTER_S]:
            del _DEFERRED[key]
    exit_wait(lambda: finish_preparing(candidates=False))

#: set once the background build of a shape has compiled (or failed to compile) its library
_BUILT: dict[tuple, threading.Event] = {}


def _shape_key(n_features: int, n_components: int, covariance_type: str, dtype: Any,
               options: dict[str, Any] | None) -> tuple:
    return (n_features, n_components, covariance_type, np.dtype(dtype).name,
            _options_key(options))


def compiled(n_features: int, n_components: int, covariance_type: str, dtype: Any,
             options: dict[str, Any] | None = None) -> bool:
    """Whether a kernel call of this shape would start without waiting for gcc: true unless
    :func:`prepare` is still compiling the shape's library in the background. The k-means
    initialisation asks before each pass and runs the NumPy reference pass meanwhile."""
    event = _BUILT.get(_shape_key(n_features, n_components, covariance_type, dtype, options))
    return event is None or event.is_set()


_CONTROLLER: list[Any] = []
_CONTROLLER_LOCK = threading.Lock()


def _controller() -> Any:
    """threadpoolctl's controller of this process's thread pools, made once: it inspects
    every loaded library (12 ms with scikit-learn's imports, quiet; 50 ms beside other
    threads), so :func:`prepare` starts making it in the background as a fit begins."""
    from threadpoolctl import ThreadpoolController

    with _CONTROLLER_LOCK:
        if not _CONTROLLER:
            _CONTROLLER.append(ThreadpoolController())
        return _CONTROLLER[0]


class _OneBlasThread:
    """BLAS on one thread while any NumPy pass of :func:`while_compiling` runs. threadpoolctl's
    limits are process-wide and its ``limit`` context restores, on exit, the limits it found on
    entry: two passes overlapping in concurrent fits (thread A enters, B enters and finds one
    thread, A leaves, B leaves) left BLAS on one thread for the rest of the process. The
    first pass in sets the limit, the last one out restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        controller = _controller()
        with self._lock:
            if self._passes == 0:
                self._limiter = controller.limit(limits=1, user_api="blas")
            self._passes += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._passes -= 1
            if self._passes == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_ONE_BLAS_THREAD = _OneBlasThread()


def _after_fork() -> None:
    """A forked child has none of the parent's threads: locks one of them held (making the
    threadpool controller, starting a build) would never be released, and every fit of the
    child hung in its first NumPy pass; builds running in the parent never finish here, so
    their shapes would have run in NumPy for good. The child takes fresh locks, forgets the
    builds in flight (its next fit of such a shape starts its own, as a new process would),
    and the BLAS limit of a NumPy pass that was running elsewhere is lifted."""
    global _LOCK, _CONTROLLER_LOCK
    _LOCK, _CONTROLLER_LOCK = threading.Lock(), threading.Lock()
    for key in [k for k, event in _BUILT.items() if not event.is_set()]:
        del _BUILT[key]
        _PREPARING.pop(key, None)
    blas = _ONE_BLAS_THREAD
    blas._lock = threading.Lock()
    if blas._passes:
        blas._passes = 0
        limiter, blas._limiter = blas._limiter, None
        try:
            limiter.restore_original_limits()
        except Exception:  # noqa: BLE001 - a child that cannot: BLAS stays on one thread
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def while_compiling(fn: Callable[..., T], *args: Any, shape: tuple | None = None,
                    calls_left: int = 1) -> T:
    """``fn(*args)`` (a NumPy reference pass of a shape whose library is not built) with
    BLAS on one thread: it may run while gcc compiles in the background, and a
    multi-threaded BLAS whose threads spin for a core gcc holds is tens of times slower than
    one thread (measured on two cores). ``shape`` (the :func:`_shape_key` of the pass):
    the pass is timed, and the shape's deferred build starts once the NumPy seconds spent,
    plus ``calls_left - 1`` more passes as fast as the fit's fastest, exceed
    :data:`BUILD_AFTER_S`. A fit's first pass foresees nothing: it pays one-time costs (BLAS
    threads, first-touch pages; 3.8 ms against 1.0-1.2 ms for the next seeding steps of
    N=20k D=64 M=16), and foreseen 32 times over it started the build of a fit that ended
    long before the library could be used, slowing it by the GIL and the core the build
    took."""
    with _ONE_BLAS_THREAD:  # entered before the clock: it may wait for threadpoolctl once
        start = time.perf_counter()
        result = fn(*args)
        took = time.perf_counter() - start
    if shape is not None and recording.is_recording():
        passes = _EXPLAINED.setdefault(shape, [0, 0.0])
        passes[0] += 1
        passes[1] += took
    if shape is not None and shape in _DEFERRED:
        total, this_fit, fastest = _NUMPY_SECONDS.get(shape, (0.0, 0.0, math.inf))
        _NUMPY_SECONDS[shape] = (total + took, this_fit + took, min(fastest, took))
        ahead = 0.0 if math.isinf(fastest) else min(fastest, took) * (calls_left - 1)
        if this_fit + took + ahead > BUILD_AFTER_S:
            _start(shape)
    return result


def numpy_pass(fn: Callable[..., T], X: Any, n_components: int, covariance_type: str,
               options: dict[str, Any] | None, *args: Any, calls_left: int = 1) -> T:
    """``fn(*args)`` through :func:`while_compiling`, accounted to the shape of ``X``."""
    key = _shape_key(X.shape[1], n_components, covariance_type, X.dtype, options)
    return while_compiling(fn, *args, shape=key, calls_left=calls_left)


def _compiled_for(X: Any, n_components: int, covariance_type: str,
                  options: dict[str, Any] | None) -> bool:
    shape: tuple[int, ...] = getattr(X, "shape", ())
    if len(shape) != 2:  # the dispatcher's signature reports what is wrong
        return True
    return compiled(shape[1], n_components, covariance_type, X.dtype, options)


def prepare(n_features: int, n_components: int, covariance_type: str, dtype: Any,
            options: dict[str, Any] | None = None, *, defer: bool = False
            ) -> threading.Thread | None:
    """Start compiling, in a background thread, the code a fit of this shape will call.

    The estimator calls this before its initialisation, whose k-means passes run in NumPy
    until the library is compiled (:func:`compiled`), so gcc runs while they do.
    ``defer=True`` registers the build without starting it: the fit's NumPy passes start it
    once they have taken, or foresee, :data:`BUILD_AFTER_S` (:func:`while_compiling`), a
    later fit once the shape's fits have taken :data:`BUILD_AFTER_FITS_S` in NumPy, and
    :func:`finish_preparing` (at the latest at exit) starts it otherwise.
    It builds the default variant's library, which every op shares, through the dispatcher's
    public ``build_variants`` (phases 1-5, nothing bound or tuned). Failures are
    left to the real call, which reports them (fallback warning or error) as usual. Returns
    the thread (None when nothing needs compiling), once per shape and process.
    """
    from asp_core import config

    if covariance_type not in ("full", "diag") or config.mode() == "python":
        return None
    # a misspelt ASP_DISABLE_PASSES name is an error here, as at any specialisation: a fit
    # that ends in NumPy before its build runs would never report it
    from asp_core.passes import check_disabled

    check_disabled(config.disabled_passes(options), [], "gmm")
    _check_component_settings(options)
    dt = np.dtype(dtype)
    key = _shape_key(n_features, n_components, covariance_type, dt, options)
    M, D = n_components, n_features
    m_args = example_args("m_step", M, D, covariance_type, dt.name, n_samples=M)

    def build() -> None:
        # the model's variant alone, whose library every op shares (k-means, the initial
        # M-step, EM, predict); the other EM candidates compile once no fit runs
        # (asp_core.background, when_idle), started by the first compiled EM step; one
        # build per core at a time (a burst of new shapes ran 35 compilers on two cores)
        from asp_core.background import specialising

        try:
            with specialising():
                dispatcher("m_step", options).build_variants(*m_args)
        except Exception:  # noqa: BLE001 - the real call reports it
            pass
        finally:
            built.set()

    if not _CONTROLLER:  # the NumPy passes will need it (unless the build is done by then)
        threading.Thread(target=_controller, daemon=True, name="asp-gmm-threadpools").start()
    with _LOCK:
        total = _NUMPY_SECONDS.get(key, (0.0, 0.0, math.inf))[0]
        _NUMPY_SECONDS[key] = (total, 0.0, math.inf)  # a new fit
        _EXPLAINED.pop(key, None)
        start_now = not defer or total > BUILD_AFTER_FITS_S
        if key in _DEFERRED:
            thread = None
        elif key in _PREPARING:
            return None
        else:
            built = _BUILT[key] = threading.Event()
            thread = threading.Thread(target=build, daemon=True,
                                      name=f"asp-gmm-prepare-{M}x{D}")
            _DEFERRED[key] = thread
    if start_now:
        _start(key)
    return thread


def explain_numpy_passes(n_features: int, n_components: int, covariance_type: str,
                         dtype: Any, options: dict[str, Any] | None, call: str) -> None:
    """Under ``asp explain``, a report for a fit (``call``) some of whose passes ran in NumPy
    while the shape's library was not built: a small fit may end before it is ever compiled,
    and its run printed "no kernel was specialised" without saying why."""
    if not recording.is_recording():
        return
    from asp_core.context import SpecializationContext

    key = _shape_key(n_features, n_components, covariance_type, dtype, options)
    with _LOCK:
        passes, seconds = _EXPLAINED.pop(key, (0, 0.0))
        deferred = key in _DEFERRED
        total = _NUMPY_SECONDS.get(key, (0.0, 0.0, math.inf))[0]
    if not passes:
        return
    shape = f"{n_components} components x {n_features} features, {covariance_type}, " \
        f"{np.dtype(dtype).name}"
    if deferred:
        reason = (f"the library of this shape is compiled (about 0.5-1 s) once a fit's NumPy "
                  f"passes take or foresee {BUILD_AFTER_S} s, or the shape's fits "
                  f"{BUILD_AFTER_FITS_S} s in all (so far {total:.3f} s): a shorter fit ends "
                  "before it could pay off")
    else:
        reason = ("its library was compiling in the background meanwhile; scikit-learn's "
                  "arithmetic ran instead of waiting for gcc")
    ctx = SpecializationContext("gmm", None, key=(call, shape), kernel_name=call)
    ctx.decide("NumPy passes", f"{int(passes)} passes ran in NumPy ({seconds:.3f} s)",
               reason=reason)
    recording.add_context(ctx, call)


def _check_component_settings(options: dict[str, Any] | None) -> None:
    """A phase setting (``asp_options``, ``ASP_<PHASE>``, the config file) naming no installed
    gmm component, reported as a kernel's specialisation reports it: raised in ``strict``
    mode, else a ``SpecializationWarning`` (the kernels would run in Python). A fit that ends
    in NumPy before its build runs never reached a kernel, and said nothing."""
    from asp_core import PHASES, PluginError, SpecializationWarning, config
    from asp_core.errors import warn
    from asp_core.plugins import get_registry

    registry = get_registry()
    for phase in PHASES:
        try:
            registry.choose("gmm", phase, options)
        except PluginError as exc:
            if config.mode() == "strict":
                raise
            warn(f"asp: the kernels of GaussianMixture fits run in pure Python: {exc}",
                 SpecializationWarning)
            return


def tuning(op: str = "em_step", options: dict[str, Any] | None = None) -> bool:
    """Whether some specialisation of ``op`` is still timing its variants."""
    d = dispatcher(op, options)
    return any(t is not None and not t.done for t in map(d.tuning, d.keys()))


def winner(op: str = "em_step", options: dict[str, Any] | None = None) -> str | None:
    """The variant chosen for the latest specialisation of ``op`` (None while tuning or fallen
    back): the tuner's decision (timed here or read from the perf database), or the only
    variant built."""
    from asp_core.decisions import VARIANT

    d = dispatcher(op, options)
    ctx = d.last_context
    if ctx is None:
        return None
    t = d.tuning(ctx.key)
    if t is not None:
        return t.winner
    decided = ctx.decision(VARIANT) if d.tuned(ctx.key) is not None else None
    return decided.choice if decided is not None else None


def em_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
            precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float,
            options: dict[str, Any] | None = None, *, wait_for_candidates: bool = True
            ) -> EMStep:
    """One EM iteration (see :func:`asp_gmm.reference.em_step`), specialised.

    ``wait_for_candidates=False`` (what ``fit`` passes): while :func:`prepare` is still
    compiling the shape's library, the iteration runs in NumPy (:func:`asp_gmm.reference.em_step`,
    scikit-learn's arithmetic) instead of waiting for gcc; while the variants are being timed
    and a candidate compiled in the background during this call (so the call's time shared
    the cores with gcc) or still compiles, the untimed candidates are dropped for this
    process: waiting for gcc would cost more than a better variant saves on a fit whose
    iterations finish first, and a time taken next to gcc would bias the choice. Nothing is
    stored, so a later process, which finds them compiled, times them at no compile cost.
    """
    from asp_gmm.backends import compiling

    args = (X, weights, means, precisions_cholesky, covariance_type, reg_covar)
    if not wait_for_candidates and not _compiled_for(X, means.shape[0], covariance_type,
                                                     options):
        return numpy_pass(reference.em_step, X, means.shape[0], covariance_type, options,
                          *args)
    d = dispatcher("em_step", options)
    busy = not wait_for_candidates and compiling()
    result = d(*args)
    if not wait_for_candidates and (busy or compiling()):
        _drop_untimed_candidates(d, args)
    return result


def _drop_untimed_candidates(d: Dispatcher, args: tuple) -> None:
    from asp_gmm.signature import signature

    t = d.tuning(signature(args, {}, d.instance))
    if t is None or t.done or not t.timings:
        return
    timed = t.timings
    for name in [v for v in t.candidates if v not in timed]:
        t.exclude(name, "compiling in the background while the others were timed: "
                        "not timed in this process")


def log_prob(X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray,
             covariance_type: str, options: dict[str, Any] | None = None) -> np.ndarray:
    """Per-component log-densities (see :func:`asp_gmm.reference.log_prob`), specialised."""
    return dispatcher("log_prob", options)(X, means, precisions_cholesky, covariance_type)


def e_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
           precisions_cholesky: np.ndarray, covariance_type: str, output: str,
           options: dict[str, Any] | None = None, *, wait_for_compile: bool = True
           ) -> np.ndarray | float:
    """The E-step reduced to ``output`` (see :func:`asp_gmm.reference.e_step`), specialised;
    with ``wait_for_compile=False`` it runs in NumPy while :func:`prepare`'s build of the
    shape's library is pending or running, or, for a shape no fit of this process prepared
    (``predict`` of a model unpickled in a one-shot scoring process, of float32 data under a
    float64 fit), registered now as a deferred build (:func:`prepare`): such a call
    specialised at once, a second of gcc (0.1 s from a warm cache) for a millisecond's
    work."""
    args = (X, weights, means, precisions_cholesky, covariance_type, output)
    shape: tuple[int, ...] = getattr(X, "shape", ())
    if not wait_for_compile and len(shape) == 2 and _shape_key(
            shape[1], means.shape[0], covariance_type, X.dtype, options) not in _BUILT:
        prepare(shape[1], means.shape[0], covariance_type, X.dtype, options, defer=True)
    if not wait_for_compile and not _compiled_for(X, means.shape[0], covariance_type,
                                                  options):
        return numpy_pass(reference.e_step, X, means.shape[0], covariance_type, options,
                          *args)
    return dispatcher("e_step", options)(*args)


def m_step(X: np.ndarray, resp: np.ndarray, n_components: int, covariance_type: str,
           reg_covar: float, options: dict[str, Any] | None = None, *,
           wait_for_compile: bool = True) -> EMStep:
    """The M-step from given responsibilities or labels (see
    :func:`asp_gmm.reference.m_step`), specialised; with ``wait_for_compile=False`` it runs
    in NumPy while :func:`prepare` is still compiling the shape's library."""
    if not wait_for_compile and not _compiled_for(X, n_components, covariance_type, options):
        # itself and an EM iteration foreseen: an E-step and an M-step
        return numpy_pass(reference.m_step, X, n_components, covariance_type, options,
                          X, resp, n_components, covariance_type, reg_covar, calls_left=3)
    return dispatcher("m_step", options)(X, resp, n_components, covariance_type, reg_covar)


def kmeans_assign(X: np.ndarray, centers: np.ndarray, covariance_type: str,
                  bounds: np.ndarray, moved: np.ndarray,
                  options: dict[str, Any] | None = None) -> KMeansAssignment:
    """One Lloyd pass of k-means (see :func:`asp_gmm.reference.kmeans_assign`), specialised."""
    return dispatcher("kmeans_assign", options)(X, centers, covariance_type, bounds, moved)


def kmeans_seed(X: np.ndarray, x_squared_norms: np.ndarray, indices: np.ndarray,
                closest: np.ndarray, uniforms: np.ndarray, n_components: int,
                covariance_type: str, options: dict[str, Any] | None = None) -> KMeansSeeding:
    """The rest of a k-means++ seeding (see :func:`asp_gmm.reference.kmeans_seed`),
    specialised."""
    return dispatcher("kmeans_seed", options)(X, x_squared_norms, indices, closest, uniforms,
                                              n_components, covariance_type)
