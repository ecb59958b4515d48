"""The pytest plugin pytest-asp (plugins/pytest-asp): marks skip, with a reason, what the machine
cannot run, and only Asp's own (``asp_``-prefixed, or short names where a project opts in)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def test_marks_skip_when_the_tool_is_missing(tmp_path):
    (tmp_path / "test_needs.py").write_text(textwrap.dedent("""
        from pytest_asp import requires_compiler

        @requires_compiler
        def test_needs_cc():
            raise AssertionError("ran without a compiler")

        def test_plain():
            pass
    """))
    env = dict(os.environ, ASP_CC="/nonexistent/cc", ASP_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-q",
                           "-p", "no:cacheprovider", str(tmp_path / "test_needs.py")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "1 passed, 1 skipped" in proc.stdout, proc.stdout + proc.stderr
    assert "no C compiler (install gcc or set ASP_CC)" in proc.stdout


def _pytest_in(project, ini: str | None, body: str) -> subprocess.CompletedProcess:
    """Run pytest in ``project`` (a directory standing for another project), with no compiler."""
    (project / "test_other.py").write_text(textwrap.dedent(body))
    if ini is not None:
        (project / "pytest.ini").write_text(textwrap.dedent(ini))
    env = dict(os.environ, ASP_CC="/nonexistent/cc", ASP_CACHE_DIR=str(project / "cache"))
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-q", "-p", "no:cacheprovider",
                           str(project / "test_other.py")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=project)


_SHORT_MARKS = """
    import pytest

    @pytest.mark.compiler
    def test_own_compiler_mark():
        pass

    @pytest.mark.mpi
    @pytest.mark.gpu
    def test_own_gpu_mark():
        pass
"""


def test_other_projects_marks_are_left_alone(tmp_path):
    """pytest loads Asp's plugin in every project of the environment: a project's own ``gpu``
    or ``compiler`` mark must not be skipped (or registered) by it."""
    proc = _pytest_in(tmp_path, None, _SHORT_MARKS)
    assert "2 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout + proc.stderr
    markers = subprocess.run([sys.executable, "-m", "pytest", "--markers", "-p",
                              "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120).stdout
    assert "@pytest.mark.asp_gpu" in markers and "@pytest.mark.gpu:" not in markers


def test_short_marks_are_opt_in(tmp_path):
    proc = _pytest_in(tmp_path, "[pytest]\nasp_short_markers = true\n", _SHORT_MARKS)
    assert "no C compiler (install gcc or set ASP_CC)" in proc.stdout, proc.stdout + proc.stderr
    assert "passed" not in proc.stdout or "1 passed" in proc.stdout  # the gpu one: machine-bound


def test_valid_c_for_target_catches_intrinsics_the_target_lacks(tmp_path):
    """Compiling (not only parsing) for the target: AVX-512 intrinsics pass with -mavx512f and
    fail for SSE4.2, which ``gcc -fsyntax-only`` would not notice."""
    import shutil

    from pytest_asp import assert_valid_c_for_target

    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    src = ("#include <immintrin.h>\n"
           "void f(double *p) { _mm512_stream_pd(p, _mm512_set1_pd(1.0)); }\n")
    assert_valid_c_for_target(src, "-mavx512f", tmp_path)
    with pytest.raises(AssertionError, match="target specific option mismatch"):
        assert_valid_c_for_target(src, "-msse4.2", tmp_path)
