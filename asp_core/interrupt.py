"""Long compiled calls that Ctrl-C can interrupt.

Python runs signal handlers only between bytecodes of the main thread, so a ``KeyboardInterrupt``
typed during a 9-second C call normally arrives when the call returns. :func:`call` runs the
foreign function (a ctypes function, which releases the GIL) on one persistent worker thread
while the main thread waits on an event; that wait is interrupted by signals, so Ctrl-C raises
``KeyboardInterrupt`` in the caller at once.

What happens to memory: the C code cannot be stopped safely from outside, so it runs to its
end in the background. Its job keeps references to every argument (the arrays it writes stay
alive, so it never writes to freed memory), and the next :func:`call` waits until it has
finished (calls never overlap). After an interrupt the output arrays of that call are
undefined and may still change until it ends; :func:`wait_idle` waits for that.

The hand-off costs a few tens of microseconds, so backends go through :func:`run`, which hands
off only calls whose work reaches :data:`MIN_WORK`; calls from threads other than the main one
run directly (signals are delivered to the main thread only).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

__all__ = ["call", "run", "wait_idle", "MIN_WORK"]

#: Elements (grid points, stored matrix entries, samples x features) from which a call is run
#: interruptibly: several milliseconds of work, so the ~35 us hand-off costs under 1 %; smaller
#: calls end long before a Ctrl-C would be noticed as late.
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
    while True:
        job = _jobs.get()
        try:
            assert job.fn is not None and job.args is not None, "a job runs once"
            job.result = job.fn(*job.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            job.error = exc
        finally:
            job.fn = job.args = job.keep = None  # the arrays may be freed now, not before
            _finished()
            job.done.set()


def _finished() -> None:
    global _pending
    with _state:
        _pending -= 1
        if _pending == 0:
            _state.notify_all()


def run(fn: Callable[..., Any], *args: Any, work: int, keep: Any = None) -> Any:
    """``fn(*args)`` through :func:`call` when its ``work`` (element updates: grid points ×
    steps, samples × components × features...) reaches :data:`MIN_WORK`, else directly: a
    shorter call ends before a Ctrl-C would be noticed as late."""
    if work >= MIN_WORK:
        return call(fn, *args, keep=keep)
    return fn(*args)


def call(fn: Callable[..., Any], *args: Any, keep: Any = None) -> Any:
    """``fn(*args)`` on the worker thread; Ctrl-C in the main thread interrupts the wait.

    ``keep``: objects the C code uses through raw pointers in ``args`` (the arrays); they are
    kept alive until the C code has finished, even after an interrupt."""
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


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until no interrupted call is still running; True when idle."""
    with _state:
        return _state.wait_for(lambda: _pending == 0, timeout)
