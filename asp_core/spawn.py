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

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

__all__ = ["run_tool"]

_STARTING = threading.RLock()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_STARTING.acquire, after_in_parent=_STARTING.release,
                        after_in_child=_STARTING.release)


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
    with proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:   # the timeout, or Ctrl-C: the compiler must not outlive the call
            _kill(proc, group)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill(proc: subprocess.Popen[str], group: bool) -> None:
    """Kill ``proc`` and, with ``group``, its process group: before ``proc`` is reaped, so
    the group's id cannot have been given to another process."""
    if group:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()
    proc.wait()
