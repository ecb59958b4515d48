"""Long compiled calls that Ctrl-C can interrupt: Python runs signal handlers between bytecodes
of the main thread, so Ctrl-C during a 9-second C call would arrive when it returns.
:func:`call` runs the ctypes function on a worker thread while the main thread waits on an event
(which a signal interrupts); the C code, which cannot be stopped safely, runs to its end keeping
its arguments alive. The hand-off costs tens of microseconds: :func:`run` hands off only
calls of :data:`MIN_WORK`, and every call of the thread that forked a child process (its
OpenMP worker pool stayed in the parent).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable

__all__ = ["call", "run", "wait_idle", "is_worker", "on_forking_thread", "exit_wait",
           "exit_interrupted", "MIN_WORK"]

#: a Ctrl-C came while an exit handler waited (:func:`exit_wait`)
_exit_interrupted = False


def exit_wait(wait: Callable[[], Any]) -> None:
    """Run an exit handler's ``wait`` (for compiles or specialisations under way) so that a
    Ctrl-C during it stops the waiting: the waits of the exit handlers after it are skipped
    and the compilers still running are killed (:mod:`asp_core.spawn`'s exit handler); the
    exit then goes on as it was (the other exit handlers, open files flushed, the program's
    own status). Before, "Exception ignored in atexit callback ... KeyboardInterrupt" was
    printed and the process went on waiting in the next handler."""
    global _exit_interrupted
    if _exit_interrupted:
        return
    try:
        wait()
    except KeyboardInterrupt:
        _exit_interrupted = True


def exit_interrupted() -> bool:
    """Whether a Ctrl-C ended an exit handler's :func:`exit_wait`."""
    return _exit_interrupted

#: Elements (grid points, matrix entries, samples x features) from which a call is handed off:
#: milliseconds of work, so the ~35 us hand-off costs under 1 %.
MIN_WORK = 1 << 22


class _Job:
    __slots__ = ("fn", "args", "keep", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, keep: Any) -> None:
        # cleared (None) once the call has run, so the arrays can be freed
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple | None = args
        self.keep = keep
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_pending = 0  # jobs queued or running
_state = threading.Condition()
_start_lock = threading.Lock()
_worker: threading.Thread | None = None


def _serve() -> None:
    global _pending
    while True:
        job = _jobs.get()
        try:
            assert job.fn is not None and job.args is not None, "a job runs once"
            job.result = job.fn(*job.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            job.error = exc
        finally:
            job.fn = job.args = job.keep = None  # the arrays may be freed now, not before
            with _state:
                _pending -= 1
                if _pending == 0:
                    _state.notify_all()
            job.done.set()


def run(fn: Callable[..., Any], *args: Any, work: int, keep: Any = None) -> Any:
    """``fn(*args)`` through :func:`call` when ``work`` (element updates) reaches
    :data:`MIN_WORK`, else directly: a shorter call ends before a Ctrl-C would be late.  While
    an interrupted call still runs, through :func:`call` too, so that it runs after that one
    (run directly, it wrote the same arrays at the same time).  In a forked child, every call
    of the thread that forked goes through :func:`call` (see :func:`_after_fork`)."""
    if work >= MIN_WORK or _pending or on_forking_thread():
        return call(fn, *args, keep=keep)
    return fn(*args)


def call(fn: Callable[..., Any], *args: Any, keep: Any = None) -> Any:
    """``fn(*args)`` on the worker thread; Ctrl-C interrupts the wait. ``keep`` (the arrays
    behind raw pointers in ``args``) stays alive until the C code ends, even after Ctrl-C."""
    global _worker, _pending
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    if _worker is None or not _worker.is_alive():
        with _start_lock:
            if _worker is None or not _worker.is_alive():
                _worker = threading.Thread(target=_serve, name="asp-compiled-call", daemon=True)
                _worker.start()
    job = _Job(fn, args, keep)
    with _state:
        _pending += 1
    _jobs.put(job)
    job.done.wait()  # a signal interrupts this wait; the job then finishes in the background
    if job.error is not None:
        raise job.error
    return job.result


def is_worker(thread: threading.Thread) -> bool:
    """Whether ``thread`` is the worker that runs handed-off calls (it lives as long as the
    process: :func:`wait_idle` says when it has nothing left to run)."""
    return thread is _worker


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until no interrupted call is still running; True when idle."""
    with _state:
        return _state.wait_for(lambda: _pending == 0, timeout)


#: in a forked child, the thread that forked it (None before a fork)
_forked_thread: int | None = None


def on_forking_thread() -> bool:
    """Whether this process is a forked child and this is the thread that forked it: one whose
    OpenMP parallel regions of more than one thread would hang (see :func:`_after_fork`).
    Native code a plugin runs on the caller's thread takes one thread then."""
    return _forked_thread is not None and threading.get_ident() == _forked_thread


def _after_fork() -> None:
    """GNU OpenMP is not fork-safe: a thread that ran a parallel region keeps its pool of
    worker threads in the child, which does not have them, and its next parallel region waits
    for them forever (a ``multiprocessing`` worker forked after one kernel call hung at its
    first).  A thread the child starts has a pool of its own, so the compiled calls of the
    thread that forked run on the child's worker; the parent's jobs are not the child's."""
    global _jobs, _pending, _state, _start_lock, _worker, _forked_thread
    _jobs, _pending, _state = queue.SimpleQueue(), 0, threading.Condition()
    _start_lock, _worker = threading.Lock(), None
    _forked_thread = threading.get_ident()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
