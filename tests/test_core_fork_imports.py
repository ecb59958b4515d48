"""A fork while another thread imports a module: the child must be able to import it (Python
keeps, in the child, that module's lock held by a thread the child does not have; a pool forked
while another thread's first ``iterate`` imported Asp's modules had its workers hang)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SCRIPT = """
import os, signal, sys, threading, time
sys.path.insert(0, {where!r})
import asp_core   # registers the fork hooks, as a kernel module's import does
t = threading.Thread(target=lambda: __import__("slow_import_mod"))
t.start()
while "slow_import_mod" not in sys.modules:
    time.sleep(0.001)
pid = os.fork()
if pid == 0:
    signal.alarm(20)   # a hang ends the child with SIGALRM
    import slow_import_mod
    os._exit(0 if slow_import_mod.DONE else 3)
_, status = os.waitpid(pid, 0)
t.join()
print("child", os.waitstatus_to_exitcode(status))
"""


def _run(tmp_path: Path, module_body: str, script: str) -> tuple[str, float]:
    (tmp_path / "slow_import_mod.py").write_text(module_body)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, time.monotonic() - start


def test_a_fork_waits_for_another_threads_import(tmp_path):
    out, _ = _run(tmp_path, "import time\ntime.sleep(0.5)\nDONE = True\n",
                  SCRIPT.format(where=str(tmp_path)))
    assert "child 0" in out, out


def test_a_fork_at_a_modules_own_import_does_not_wait_for_it(tmp_path):
    """The thread that forks while importing a module (a pool made at import time) must not
    wait for its own import to end."""
    body = textwrap.dedent("""
        import os
        import asp_core.spawn
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        DONE = True
    """)
    script = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport slow_import_mod\n" \
             "print('imported', slow_import_mod.DONE)\n"
    out, seconds = _run(tmp_path, body, script)
    from asp_core.spawn import FORK_WAIT_S

    assert "imported True" in out and seconds < FORK_WAIT_S
