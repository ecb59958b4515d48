"""Ctrl-C during a long compiled call (:mod:`asp_core.interrupt`)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from asp_core import interrupt


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix",
                    reason="needs POSIX signals")
def test_a_small_call_after_ctrl_c_waits_for_the_interrupted_one():
    """The interrupted call runs on to its end on the worker; a next call too small to be
    handed off ran at once beside it, on the same arrays ("calls never overlap" was false)."""
    done: list[str] = []

    def slow() -> None:
        time.sleep(1.0)
        done.append("slow")

    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt.call(slow)
    finally:
        timer.cancel()
    assert interrupt.run(lambda: list(done), work=1) == ["slow"]
    assert interrupt.wait_idle(5)
