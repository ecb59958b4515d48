"""Asp's messages: the ``asp`` logger, ASP_LOG_LEVEL, Asp's own stderr output only while the
application has configured no logging, and progress reported once per step off a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from pytest_asp import requires_compiler


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "ASP_LOG_LEVEL"} | env
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full,
                          capture_output=True, text=True, timeout=120)


PROGRESS = """
    from asp_core.log import Progress, get_logger
    p = Progress("tuning k", 2, log=get_logger("autotune"))
    p.advance("a: 1.00 ms")
    p.advance("b: 2.00 ms")
    p.close("tuned k: a")
    get_logger("build").debug("a debug line")
"""


def test_messages_go_to_stderr_as_asp_lines_by_default():
    proc = _python(PROGRESS)
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == ["asp: tuning k (2 steps)", "asp:   [1/2] a: 1.00 ms",
                                        "asp:   [2/2] b: 2.00 ms", "asp: tuned k: a"]


def test_asp_log_level_filters_and_a_bad_value_is_reported():
    assert _python(PROGRESS, ASP_LOG_LEVEL="warning").stderr == ""
    assert "asp: a debug line" in _python(PROGRESS, ASP_LOG_LEVEL="DEBUG").stderr
    bad = _python(PROGRESS, ASP_LOG_LEVEL="loud").stderr
    assert "ASP_LOG_LEVEL=LOUD is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in bad
    assert "asp: tuned k: a" in bad  # INFO used instead


def test_an_application_that_configures_logging_gets_the_records_once():
    proc = _python("import logging\nlogging.basicConfig(format='APP %(name)s %(message)s', "
                   "level=logging.INFO)\n" + textwrap.dedent(PROGRESS))
    lines = proc.stderr.splitlines()
    assert "APP asp.autotune tuned k: a" in lines
    assert not [line for line in lines if line.startswith("asp:")]  # not printed twice


@requires_compiler
def test_debug_level_shows_every_compile_and_only_compiles(tmp_path):
    """``ASP_LOG_LEVEL=DEBUG`` (and ``asp -v``) promise every compile: none was logged since
    compiles moved to the background pool."""
    code = """
        from asp_core.build import compile_library
        for _ in range(2):
            compile_library("double f(double x) { return 2 * x; }", name="twice", openmp=False)
    """
    err = _python(code, ASP_LOG_LEVEL="DEBUG", ASP_CACHE_DIR=str(tmp_path / "c")).stderr
    assert sum("compiled twice (c) in" in line for line in err.splitlines()) == 1, err
