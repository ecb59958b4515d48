"""Broken compiler settings (issue 14): ASP_CC naming something that is not a working compiler
is a clear CompilerNotFound (and the fallback warning says so), never "a bug"."""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import CompilerNotFound, Dispatcher
from asp_core.toolchain import find_toolchain


def _axpy(a, b):
    return a + 3.0 * b


@pytest.mark.parametrize("cc, why", [("/bin/true", "wrote no shared object"),
                                     ("/bin/false", "failed to compile"),
                                     ("no-such-compiler-xyz", "not an executable compiler")])
def test_asp_cc_that_is_not_a_compiler_is_a_clear_error(monkeypatch, fresh_cache, cc, why):
    monkeypatch.setenv("ASP_CC", cc)
    with pytest.raises(CompilerNotFound, match=f"ASP_CC.*{why}"):
        find_toolchain("c")


def test_platform_rejection_names_the_broken_compiler(elementwise, monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_CC", "/bin/true")
    d = Dispatcher("elementwise", _axpy)
    a, b = np.ones(4), np.arange(4.0)
    np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
    ps = d.last_context.decision("platform_selection")
    assert ps is not None and ps.choice == "python"
    assert "ASP_CC='/bin/true' is not a working c compiler" in dict(ps.params["rejected"])["openmp"]


def test_strict_mode_error_is_compiler_not_found(elementwise, monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_CC", "/bin/true")
    monkeypatch.setenv("ASP_MODE", "strict")
    from asp_core.build import compile_library

    with pytest.raises(CompilerNotFound, match="wrote no shared object"):
        compile_library("int f(void) { return 1; }\n", name="f")


def test_a_kernel_that_fell_back_says_python_in_its_platform_decision(elementwise, monkeypatch,
                                                                     fresh_cache):
    # the C platform accepted the kernel and then failed to compile it: the kernel runs in
    # Python, and its context said "openmp" (code reading the decision believed C ran)
    monkeypatch.setenv("ASP_CFLAGS", "-fno-such-asp-flag")
    d = Dispatcher("elementwise", _axpy)
    a, b = np.ones(4), np.arange(4.0)
    with pytest.warns(Warning, match="runs in pure Python"):
        np.testing.assert_array_equal(d(a, b), a + 3.0 * b)
    ps = d.last_context.decision("platform_selection")
    assert ps is not None and ps.choice == "python" and ps.source == "fallback"
    assert ps.params["failed"] == "openmp" and "failed to compile" in ps.reason
