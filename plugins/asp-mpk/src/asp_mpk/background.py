"""Background specialisations of asp-mpk, joined when the interpreter exits.

A specialisation runs the pipeline up to the first variant's compile and a first kernel call on
its own thread (:meth:`asp_mpk.powers.MatrixPowers.prepare`); the other variants' compiles go
to the core's pool, :mod:`asp_core.background`.  A compile or a first kernel call cut off at
exit would leave OpenMP threads running while the process tears down (``terminate called
without an active exception``) and waste the compile that the next process would find in the
cache, so exit waits for what was started, including threads those threads start meanwhile
(work that can stop early asks :func:`stopping`).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any, Callable

# the core first: exit handlers run last-in first-out, and asp_core's kill of the compilers
# still running at exit (asp_core.spawn) must run after this module's join of the
# specialisations that run them (registered before it, an exit during a first call's compile
# killed gcc: "runs in pure Python: gcc was killed by SIGKILL", the compile lost)
import asp_core  # noqa: F401
from asp_core.errors import for_caller

__all__ = ["start", "join_all", "busy", "crowded", "stopping"]

_LOCK = threading.Lock()
_THREADS: list[threading.Thread] = []
_STOPPING = threading.Event()


def start(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Run ``target(*args)`` on a daemon thread that :func:`join_all` waits for; its warnings
    name the user's line that started it."""
    thread = threading.Thread(target=for_caller(target), args=args, name=name, daemon=True)
    with _LOCK:   # keep threads another caller appended but has not started yet
        _THREADS[:] = [t for t in _THREADS if t.ident is None or t.is_alive()]
        _THREADS.append(thread)
    try:
        thread.start()
    except BaseException:
        with _LOCK:
            _THREADS.remove(thread)
        raise
    return thread


def crowded(name: str) -> bool:
    """Whether as many threads ``name`` are alive (started, running or waiting for a core) as
    there are usable cores: one more would only wait. A ``MatrixPowers`` made per step
    started a thread per object, 1.2 ms a call, and 900 waited at once, each for an object
    dropped by the time its turn came."""
    from asp_core.hardware import available_cpus

    with _LOCK:
        alive = sum(1 for t in _THREADS if t.name == name and (t.ident is None or t.is_alive()))
    return alive >= available_cpus()


def busy(*, waiting: bool = True) -> bool:
    """Whether background work (a specialisation here, a compile in :mod:`asp_core.background`)
    is running now: timings taken meanwhile share the cores with gcc.  ``waiting=False``: leave
    out compiles the pool holds back until the solves pause (they share nothing yet)."""
    from asp_core import background as pool

    with _LOCK:
        if any(t.is_alive() for t in _THREADS):
            return True
    return pool.busy(waiting=waiting)


def stopping() -> bool:
    """Whether the interpreter is exiting: optional background work should end now."""
    return _STOPPING.is_set()


def join_all(timeout: float | None = None) -> None:
    """Wait for every background thread started so far (each for at most ``timeout`` s) and,
    without a timeout, for those they start meanwhile."""
    while True:
        with _LOCK:
            alive = [t for t in _THREADS if t.ident is None or t.is_alive()]
        for thread in alive:
            if thread.ident is None:   # appended by start(), which starts it right away
                time.sleep(0.001)
            else:
                thread.join(timeout)
        if not alive or timeout is not None:
            return


@atexit.register
def _at_exit() -> None:
    from asp_core.interrupt import exit_wait

    _STOPPING.set()
    exit_wait(join_all)


def _before_fork() -> None:
    """A fork while a specialisation runs would copy the locks it holds (the plugin registry's,
    the dispatcher's) into a child with no thread to release them: the child's first call
    waited forever.  The specialisations end with their first compile, so the fork waits."""
    if threading.current_thread() not in _THREADS:
        join_all()


if hasattr(os, "register_at_fork"):
    # filelock's own hooks first (it guards asp_core's compile cache, and imports them on first
    # use, in a specialisation's compile): hooks before a fork run in the reverse order of
    # their registration, so this one runs before filelock's closes its gate.  Registered
    # after it, this join waited for a specialisation that waited at that gate to release its
    # cache lock: the parent's fork hung (a multiprocessing pool made after a first call).
    # The same for asp_core's (asp_core.spawn: a fork waits for a compiler's start, which a
    # specialisation this join waits for may be about to make)
    import filelock  # noqa: F401

    os.register_at_fork(before=_before_fork)
