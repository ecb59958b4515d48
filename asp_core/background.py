"""Compiling in the background (daemon threads, one per usable core) the variants a call will
want next. Futures are kept per cache key, so a foreground
:func:`~asp_core.build.compile_library` of the key waits for a running compile or takes over a
queued one, never racing a second compiler. At exit queued compiles are cancelled and running
ones waited for (a compiler cut off leaves a build directory behind).

A compile only later calls need can also wait for the cores to be free of the caller's own work:
a plugin runs the calls whose speed the user sees (a solve, a fit) inside :func:`foreground`,
and submits such compiles with ``when_idle=True``; they start once no foreground span has run
for :data:`IDLE_S`.  On two cores even a niced gcc next to a two-thread OpenMP pass stalls the
pass at each barrier: asp-gmm's second fit took 0.28-0.42 s instead of 0.18 s while candidates
compiled, asp-mpk's second solve ran twice its steady time while other formats compiled.
"""

from __future__ import annotations

import atexit
import copy
import os
import queue
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

from asp_core import config
from asp_core.errors import CompileError, CompileTimeout
from asp_core.log import get_logger

if TYPE_CHECKING:
    from asp_core.build import CompiledLibrary
    from asp_core.context import SpecializationContext

__all__ = ["submit", "busy", "claim", "failed", "release", "shutdown", "foreground",
           "specialising", "IDLE_S"]

_log = get_logger("build")
_lock = threading.Lock()
_Slot = tuple[str, str]  # (cache directory, cache key): one compile's identity
_Queue = queue.SimpleQueue[tuple[_Slot, Future, Callable[[], Any]] | None]
#: per ``low_priority``: the job queue and its worker threads (low-priority workers lower their
#: scheduling priority once: a thread cannot raise it back)
_jobs: dict[bool, _Queue] = {False: queue.SimpleQueue(), True: queue.SimpleQueue()}
_workers: dict[bool, list[threading.Thread]] = {False: [], True: []}
#: nice increment of the low-priority workers and of the compilers they start. +10 still took
#: the 2-3 ms slices that stall a two-thread OpenMP pass of a few milliseconds at its end
#: (asp-gmm: the fit after a first one 0.44 s instead of 0.22 s with gcc at +10, 0.23-0.28 s
#: at +19, two cores). The price: next to other programs' busy threads such a compile gets
#: about 1.5 % of a core, so waiting for it (at exit) can take long on a busy machine.
LOW_PRIORITY_NICE = 19
_futures: dict[_Slot, Future] = {}  # queued or running compiles
_low_priority: set[_Slot] = set()  # the low-priority ones among them
_held: set[_Slot] = set()  # the when_idle ones not handed to the workers yet
#: compiles that would fail again: rejected by the compiler, or timed out (under the limit in
#: force then): a foreground build of the key gets the failure instead of running the
#: compiler again (a compile that timed out in the background took the limit a second time
#: in the caller's call, and each new kernel instance once more)
_failed: dict[_Slot, Future] = {}
_local = threading.local()  # .slot: what this worker thread is compiling
_closed = False
#: seconds without a :func:`foreground` span after which ``when_idle`` compiles start
IDLE_S = 0.5
_spans = 0  # foreground spans running now
_idle_timer: threading.Timer | None = None  # started when the last span ends
_deferred: list[tuple[bool, tuple[_Slot, Future, Callable[[], Any]]]] = []  # waiting for idle
_specialisations: threading.BoundedSemaphore | None = None  # see specialising()


def submit(ctx: SpecializationContext | None = None, *, low_priority: bool = False,
           when_idle: bool = False, **compile_args: Any) -> Future[CompiledLibrary]:
    """A future of the :class:`~asp_core.build.CompiledLibrary`; ``compile_args`` are
    :meth:`SpecializationContext.compile`'s, recorded on ``ctx`` if given. A key already queued
    or compiling returns the same future, as does one that failed for the toolchain's reasons
    in this process; after :func:`shutdown` the compile runs here.
    ``low_priority``: a compile only later calls may use runs on workers niced by
    :data:`LOW_PRIORITY_NICE` on Linux, so it takes no core the caller's code wants.
    ``when_idle``: while a :func:`foreground` span runs, or less than :data:`IDLE_S` after one
    ended, the compile waits (queued: :func:`busy` counts it, a foreground build of its key
    takes it over, exit drops it) until that much time has passed without one."""
    from asp_core.build import compile_library, library_key

    args = {k: v for k, v in compile_args.items() if k != "variant"}
    try:
        key = library_key(args["source"], **{k: v for k, v in args.items()
                                             if k in ("lang", "openmp", "flags",
                                                      "specialised_on")})
    except Exception as exc:  # noqa: BLE001 - e.g. no compiler: the future holds it
        failed: Future[CompiledLibrary] = Future()
        failed.set_exception(exc)
        return failed

    def job() -> CompiledLibrary:
        return ctx.compile(**compile_args) if ctx is not None else compile_library(**args)

    slot = _slot(key)
    with _lock:
        future = _futures.get(slot) or _remembered(slot)
        if future is not None:
            return future
        future = Future()
        if not _closed:
            _futures[slot] = future
            if low_priority:
                _low_priority.add(slot)
            if when_idle and (_spans or _idle_timer is not None):
                _deferred.append((low_priority, (slot, future, job)))
                _held.add(slot)
            else:
                _enqueue(low_priority, (slot, future, job))
            return future
    future.set_running_or_notify_cancel()
    _run(slot, future, job)
    return future


def _enqueue(low_priority: bool, item: tuple[_Slot, Future, Callable[[], Any]]) -> None:
    """Hand a job to the workers (the caller holds ``_lock``)."""
    _jobs[low_priority].put(item)
    if len(_workers[low_priority]) < min(len(_futures), _max_workers()):
        _start_worker(low_priority)


@contextmanager
def foreground() -> Iterator[None]:
    """The span of a call whose time the user sees: compiles submitted with ``when_idle=True``
    start only once no span has run for :data:`IDLE_S` (spans may nest and overlap)."""
    global _spans, _idle_timer
    with _lock:
        _spans += 1
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
    try:
        yield
    finally:
        with _lock:
            _spans -= 1
            if _spans == 0 and _deferred and not _closed:
                _idle_timer = threading.Timer(IDLE_S, _idle)
                _idle_timer.daemon = True
                _idle_timer.start()


def _idle() -> None:
    """:data:`IDLE_S` passed since the last foreground span ended: start the waiting compiles
    (cancelled ones, taken over by a foreground build, are skipped by the workers)."""
    global _idle_timer
    with _lock:
        if _spans or _closed or threading.current_thread() is not _idle_timer:
            return
        _idle_timer = None
        for low_priority, item in _deferred:
            _enqueue(low_priority, item)
        _deferred.clear()
        _held.clear()


def busy(*, low_priority: bool = False, waiting: bool = True) -> bool:
    """Whether compiles at normal priority are queued or running: a timing taken now shares
    the cores with them (low-priority ones give way to the caller's code). ``low_priority``:
    count those too, i.e. whether any variant is still to come from the pool. ``waiting=False``:
    leave out ``when_idle`` compiles still held back (they run no compiler yet)."""
    with _lock:
        return any((low_priority or slot not in _low_priority)
                   and (waiting or slot not in _held) for slot in _futures)


def claim(key: str) -> Future[CompiledLibrary] | None:
    """For a foreground build of ``key``: the running compile to wait for, or its failure in
    this process (a toolchain error), or None (build it yourself; a queued compile of it is
    cancelled)."""
    slot = _slot(key)
    if getattr(_local, "slot", None) == slot:
        return None  # the worker's own build of its key
    with _lock:
        future = _futures.get(slot) or _remembered(slot)
        if future is None or not future.cancel():
            return future
        _forget(slot)
        return None


def failed(key: str, exc: BaseException) -> None:
    """Remember that building ``key`` failed so that it would fail again (the compiler
    rejected it, or it timed out, until ``ASP_COMPILE_TIMEOUT`` changes): :func:`claim` and
    :func:`submit` give later builds of it this error instead of running the compiler again.
    Each new instance of a kernel whose compile timed out waited out the whole limit again
    (600 s by default). Other failures (a compiler killed by the OOM killer) may not recur."""
    with _lock:
        _remember(_slot(key), exc)


def _remember(slot: _Slot, exc: BaseException) -> None:
    """(Holding ``_lock``.) :func:`failed`: a copy without the traceback is kept, whose frames
    (a caller's grids among them) stayed alive, one more set at each re-raise."""
    if isinstance(exc, (CompileError, CompileTimeout)) and slot not in _failed:
        future: Future[CompiledLibrary] = Future()
        future.set_exception(copy.copy(exc))
        _failed[slot] = future


def _remembered(slot: _Slot) -> Future | None:
    """(Holding ``_lock``.) The remembered failure of ``slot``, unless it was a timeout under
    another limit than the one in force now (the message tells the user to raise it)."""
    future = _failed.get(slot)
    if future is not None:
        exc = future.exception()
        if isinstance(exc, CompileTimeout) and exc.limit != config.compile_timeout():
            del _failed[slot]
            return None
    return future


@contextmanager
def specialising() -> Iterator[None]:
    """Held by a plugin's specialisation on a thread of its own (phases 1-5 and their compile,
    off the caller's path: asp-mpk's first calls, asp-gmm's shape builds) while it runs: one
    per usable core, the others wait here. 200 ``MatrixPowers`` made in a loop ran 200 such
    threads and as many compilers at once on two cores; a burst of new GMM shapes, 35."""
    global _specialisations
    with _lock:
        if _specialisations is None:
            _specialisations = threading.BoundedSemaphore(_max_workers())
        slots = _specialisations
    with slots:
        yield


def release(*, run_waiting: bool = True, wait: bool = True) -> None:
    """Hand the ``when_idle`` compiles held back to the workers now (``run_waiting=False``:
    cancel them) and (``wait``) wait until every queued or running compile has ended. For a
    plugin that must see its variants compiled now (its exit, a reset) rather than after the
    next idle gap; a failed compile is left to its own build to report."""
    global _idle_timer
    with _lock:
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
        held, _deferred[:] = list(_deferred), []
        _held.clear()
        for low_priority, (slot, future, job) in held:
            if run_waiting and not _closed:
                _enqueue(low_priority, (slot, future, job))
            elif future.cancel() and _futures.get(slot) is future:
                _forget(slot)  # (one a foreground build took over is forgotten already)
        futures = list(_futures.values()) if wait else []
    for future in futures:
        try:
            future.result()
        except BaseException:  # noqa: BLE001 - cancelled or failed: reported by its own build
            pass


def is_worker(thread: threading.Thread) -> bool:
    """Whether ``thread`` is one of the pool's workers, which live as long as the process."""
    return any(thread in workers for workers in _workers.values())


def shutdown(wait: bool = True) -> None:
    """Cancel queued compiles and (``wait``) wait for running ones; later :func:`submit` calls
    compile on the calling thread. Runs at exit."""
    global _closed, _idle_timer
    with _lock:
        _closed = True
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
        _deferred.clear()
        for slot, future in list(_futures.items()):
            if future.cancel():
                _forget(slot)
        workers = {low: list(threads) for low, threads in _workers.items()}
    for low, threads in workers.items():
        for _ in threads:
            _jobs[low].put(None)
    if wait:
        for thread in workers[False] + workers[True]:
            thread.join()


def _at_exit() -> None:
    """Wait for the running compiles (the next process finds them in the cache), unless a
    Ctrl-C ends the process (or comes while it waits): the user asked it to stop, and
    asp_core.spawn's exit handler, which runs next, kills them."""
    from asp_core.interrupt import exit_interrupted, exit_wait

    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt) or exit_interrupted():
        shutdown(wait=False)
    else:
        exit_wait(shutdown)


atexit.register(_at_exit)


def _slot(key: str) -> _Slot:
    """A compile's identity: its key in the cache it goes to (``ASP_CACHE_DIR`` may change)."""
    return str(config.cache_dir()), key


def _forget(slot: _Slot) -> None:
    """Drop a compile that ended or was cancelled (the caller holds ``_lock``)."""
    del _futures[slot]
    _low_priority.discard(slot)
    _held.discard(slot)


def _max_workers() -> int:
    from asp_core.hardware import available_cpus

    return available_cpus()


def _start_worker(low_priority: bool = False) -> None:
    workers = _workers[low_priority]
    name = f"asp-compile-{'low-' if low_priority else ''}{len(workers)}"
    thread = threading.Thread(target=_work, args=(low_priority,), name=name, daemon=True)
    workers.append(thread)
    thread.start()


def _lower_priority() -> None:
    """Lower this thread's priority (and its compilers'); Linux only, where threads are
    scheduled one by one (elsewhere it would renice the whole process)."""
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, tid) + LOW_PRIORITY_NICE
            os.setpriority(os.PRIO_PROCESS, tid, min(nice, 19))
        except OSError as exc:  # e.g. a seccomp profile forbids it: normal priority then
            _log.debug("background compiles keep normal priority: %s", exc)


def _work(low_priority: bool = False) -> None:
    if low_priority:
        _lower_priority()
    jobs = _jobs[low_priority]
    while (item := jobs.get()) is not None:
        if item[1].set_running_or_notify_cancel():
            _run(*item)
        del item   # waiting for the next job, keep nothing of this one's (a plugin's matrix)


def _run(slot: _Slot, future: Future, job: Callable[[], Any]) -> None:
    _local.slot = slot
    try:
        future.set_result(job())
    except BaseException as exc:  # noqa: BLE001 - kept in the future for whoever waits
        _log.debug("background compile %s failed: %s", slot[1][:12], exc)
        future.set_exception(exc)
    finally:
        _local.slot = None
        with _lock:
            if _futures.get(slot) is future:
                _forget(slot)
                error = future.exception(timeout=0) if not future.cancelled() else None
                if error is not None:
                    _remember(slot, error)


def _after_fork() -> None:
    """A forked child has none of the parent's threads: start from an empty pool."""
    global _lock, _spans, _idle_timer, _specialisations
    _lock = threading.Lock()
    _spans, _idle_timer, _specialisations = 0, None, None
    _deferred.clear()
    _jobs.update({False: queue.SimpleQueue(), True: queue.SimpleQueue()})
    _workers.update({False: [], True: []})
    _futures.clear()
    _failed.clear()
    _low_priority.clear()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
