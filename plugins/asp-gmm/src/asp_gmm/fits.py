"""Work that waits until no ``fit`` is running: the compiles of the EM candidates to be timed.

A fit needs one compiled variant; the other candidates only pay off in later processes, once
timed. Compiled next to a fit (even at low priority), they cost it: in a process whose first fit
had just built its library, the second fit (N=200k D=16 M=32 diag) took 0.28-0.42 s instead of
0.18 s while the siblings compiled and were timed. So the estimator runs its fits inside
:func:`fitting`, and the backend hands the candidates' compiles to :func:`after_fits`: they
start once no fit has run for :data:`IDLE_S` (at exit those still waiting are dropped: at low
priority they could hold a busy machine's exit for minutes). While any wait,
:func:`pending` is true, and a fit's EM step drops the untimed candidates for this process
instead of compiling them on its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

__all__ = ["IDLE_S", "after_fits", "fitting", "pending", "release"]

#: seconds without a fit after which the waiting work starts
IDLE_S = 0.5

_lock = threading.Lock()
_running = 0
_waiting: list[Callable[[], Future[Any]]] = []
_started: list[Future[Any]] = []
_timer: threading.Timer | None = None


@contextmanager
def fitting() -> Iterator[None]:
    """The span of one fit: the waiting work does not start inside it."""
    global _running, _timer
    with _lock:
        _running += 1
        if _timer is not None:
            _timer.cancel()
            _timer = None
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _waiting:
                _timer = threading.Timer(IDLE_S, _idle)
                _timer.daemon = True
                _timer.start()


def after_fits(submit: Callable[[], Future[Any]]) -> None:
    """Run ``submit`` (it starts a background compile and returns its future) now if no fit is
    running, else once none has run for :data:`IDLE_S`."""
    with _lock:
        if _running:
            _waiting.append(submit)
            return
    future = submit()
    with _lock:
        _started.append(future)


def pending() -> bool:
    """Whether work waits for the fits to end."""
    return bool(_waiting)


def _idle() -> None:
    with _lock:
        if _running:
            return
    release(wait=False)


def release(wait: bool = True, run_waiting: bool = True) -> None:
    """Start the waiting work now (or drop it: ``run_waiting=False``) and (``wait``) wait until
    all the work started has ended."""
    global _timer
    with _lock:
        work, _waiting[:] = list(_waiting) if run_waiting else [], []
        if _timer is not None:
            _timer.cancel()
            _timer = None
    futures = [submit() for submit in work]
    with _lock:
        _started.extend(futures)
        started = list(_started) if wait else []
    for future in started:
        try:
            future.result()
        except Exception:  # noqa: BLE001 - the variant's own build reports it
            pass
    if wait:
        with _lock:
            _started[:] = [f for f in _started if not f.done()]
