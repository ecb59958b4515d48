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
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

__all__ = ["run_tool"]

_STARTING = threading.RLock()
#: process groups of the tools running now (POSIX): killed when this process exits, since in
#: groups of their own they no longer get the terminal's Ctrl-C with it
_RUNNING: set[int] = set()


def _after_fork_in_child() -> None:
    _RUNNING.clear()   # the parent's, not this process's, to kill
    _STARTING.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_STARTING.acquire, after_in_parent=_STARTING.release,
                        after_in_child=_after_fork_in_child)


def run_tool(cmd: list[str], *, timeout: float, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` with the output decoded with
    errors replaced (compilers print in the locale's encoding: an undecodable byte must not
    hide the log) and the start kept apart from forks.  ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds, the process killed with every process it started: it runs in a
    process group of its own (POSIX), as ``gcc`` runs ``cc1`` and a wrapper (ccache, a
    cluster's module shim) runs the compiler; killing the first alone left the one doing the
    work running, reparented to init, after every timeout."""
    import subprocess

    group = os.name == "posix"
    with _STARTING:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                                start_new_session=group)
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
    thread during a first call's compiles): they would run on, orphaned."""
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
