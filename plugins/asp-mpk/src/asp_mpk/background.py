"""Background work of asp-mpk (specialising, compiling), joined when the interpreter exits.

A compile or a first kernel call cut off at exit would leave OpenMP threads running while the
process tears down (``terminate called without an active exception``) and waste the compile
that the next process would find in the cache, so exit waits for what was started.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Callable

__all__ = ["start", "join_all", "in_background", "busy"]

_LOCK = threading.Lock()
_THREADS: list[threading.Thread] = []


def start(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Run ``target(*args)`` on a daemon thread that :func:`join_all` waits for."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with _LOCK:
        _THREADS[:] = [t for t in _THREADS if t.is_alive()]
        _THREADS.append(thread)
    thread.start()
    return thread


def in_background() -> bool:
    """Whether the calling thread is one that :func:`start` started."""
    with _LOCK:
        return threading.current_thread() in _THREADS


def busy() -> bool:
    """Whether background work (a compile, a specialisation) is running now: timings taken
    meanwhile share the cores with gcc."""
    with _LOCK:
        return any(t.is_alive() for t in _THREADS)


@atexit.register
def join_all(timeout: float | None = None) -> None:
    """Wait for every background thread started so far."""
    with _LOCK:
        threads = list(_THREADS)
    for thread in threads:
        thread.join(timeout)
