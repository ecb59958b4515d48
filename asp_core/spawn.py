"""Starting compilers and probes so that a fork of this process cannot hang them.

Compiles run on background threads (``asp_core.background``), so a user's fork, such as a
``multiprocessing`` pool made right after a first call, can come while ``subprocess`` starts a
compiler. The forked process then holds copies of the new process's pipes: the compile waits
for their end (and ``subprocess`` for its exec-error pipe) until the forked process exits,
while a forked process that needs the same cache entry waits for that compile's lock, so both
hung. Starting a process and forking exclude each other here: the fork waits the few
milliseconds a start takes. The hooks are registered when ``asp_core`` is imported, before
any plugin's, so that they run after the plugins' own fork hooks (the last registered runs
first), which may wait for threads that start compilers.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import subprocess

__all__ = ["run_tool"]

_STARTING = threading.RLock()
#: process groups of the tools running now (POSIX): killed when this process exits, since in
#: groups of their own they no longer get the terminal's Ctrl-C with it
_RUNNING: set[int] = set()


#: seconds a fork waits at most for imports under way in other threads
FORK_WAIT_S = 10.0


def _importing_elsewhere() -> bool:
    """Whether a module is half imported by another thread: those this thread is importing
    (a fork at a module's import) run their ``<module>`` code on its stack."""
    mine = set()
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            mine.add(frame.f_globals.get("__name__"))
        frame = frame.f_back
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               and name not in mine for name, module in list(sys.modules.items()))


def wait_for_imports() -> None:
    """Before a fork, the last of Asp's hooks (registered first): wait for the imports other
    threads have under way.  Python does not release, in the child, the lock of a module half
    imported by a thread the child does not have, and a kernel's first call imports modules
    (the phases', NumPy's and platformdirs' lazy ones): a pool forked while another thread's
    first ``iterate`` ran had its workers wait for one forever."""
    deadline = time.monotonic() + FORK_WAIT_S
    while _importing_elsewhere() and time.monotonic() < deadline:
        time.sleep(0.001)


def hold_across_fork(lock: Any, in_child: Callable[[], None] | None = None) -> None:
    """Take ``lock`` before every fork and release it after, in parent and child (then run
    ``in_child`` in the child): a lock another thread held at the fork would stay held in the
    child, which has no such thread. Released only where the hook took it: one registered
    while a fork runs (by a module another fork hook imports) gets no ``before`` call for
    that fork."""
    held = [False]

    def before() -> None:
        lock.acquire()
        held[0] = True

    def after(child: bool) -> None:
        if child and in_child is not None:
            in_child()
        if held[0]:
            held[0] = False
            lock.release()

    os.register_at_fork(before=before, after_in_parent=lambda: after(False),
                        after_in_child=lambda: after(True))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=wait_for_imports)
    # the parent's tools, not the child's, to kill
    hold_across_fork(_STARTING, in_child=_RUNNING.clear)


def run_tool(cmd: list[str], *, timeout: float, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` with the output decoded with
    errors replaced (compilers print in the locale's encoding: an undecodable byte must not
    hide the log) and the start kept apart from forks.  ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds, the process killed with every process it started: it runs in a
    process group of its own (POSIX), as ``gcc`` runs ``cc1`` and a wrapper (ccache, a
    cluster's module shim) runs the compiler; killing the first alone left the one doing the
    work running, reparented to init, after every timeout. Given a ``cwd``, the tool keeps its
    temporary files there (``TMPDIR``), so that they go with that folder: gcc's ``cc*.s`` and
    ``cc*.o`` of a compile killed at a Ctrl-C stayed in the user's temporary directory."""
    import subprocess

    group = os.name == "posix"
    env = None if cwd is None else {**os.environ, "TMPDIR": os.path.abspath(cwd)}
    with _STARTING:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                                env=env, start_new_session=group)
        if group:
            _RUNNING.add(proc.pid)
    with proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:   # the timeout, or Ctrl-C: the compiler must not outlive the call
            _kill(proc, group)
            raise
        finally:
            _RUNNING.discard(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@atexit.register
def _kill_running() -> None:
    """At exit, the tools still running on background threads (a Ctrl-C ended the main
    thread during a first call's compiles, or during the exit's wait for them): they would
    run on, orphaned."""
    for pid in list(_RUNNING):
        _kill_group(pid)


def _kill(proc: subprocess.Popen[str], group: bool) -> None:
    """Kill ``proc`` and, with ``group``, its process group: before ``proc`` is reaped, so
    the group's id cannot have been given to another process."""
    if group:
        _kill_group(proc.pid)
    proc.kill()
    proc.wait()


def _kill_group(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):   # gone already
        pass
