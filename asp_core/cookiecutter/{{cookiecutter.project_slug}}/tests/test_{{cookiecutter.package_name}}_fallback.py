"""Kernels outside the DSL still run, in pure Python, with one warning naming file and line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from asp_core import SpecializationWarning, Unspecializable

from {{ cookiecutter.package_name }} import elementwise, python_map


def helper(v):
    return v + 1.0


def calls_a_user_function(a):
    return helper(a) * 2.0  # the unsupported construct


def two_statements(a):
    b = a * 2.0
    return b


def divides_by_a_zero_literal(a):
    return a + 1.0 / (2.0 - 2.0)


def test_literals_that_raise_run_in_python():
    """``1.0 / (2.0 - 2.0)`` raises ZeroDivisionError in Python; folded, it was left for C,
    which divides on to inf."""
    kernel = elementwise(divides_by_a_zero_literal)
    with pytest.warns(SpecializationWarning, match="raises ZeroDivisionError"), \
            pytest.raises(ZeroDivisionError):
        kernel(np.ones(3))


def test_unsupported_construct_falls_back_with_one_warning():
    kernel = elementwise(calls_a_user_function)
    a = np.linspace(0.0, 1.0, 7)
    with pytest.warns(SpecializationWarning) as record:
        first = kernel(a)
    assert len(record) == 1
    message = str(record[0].message)
    assert "call to helper" in message
    assert "test_{{ cookiecutter.package_name }}_fallback.py:" in message
    np.testing.assert_array_equal(first, python_map(calls_a_user_function)(a))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(kernel(a), first)  # no second warning


def test_strict_mode_raises_instead(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Unspecializable, match="a body other than one return"):
        elementwise(two_statements)(np.ones(2))


def test_python_mode_never_specialises(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "python")
    kernel = elementwise(two_statements)
    np.testing.assert_array_equal(kernel(np.ones(2)), np.full(2, 2.0))
    assert kernel.keys() == []


SHADOWED = """
def max(a, b):               # this module's own max, not the builtin
    return a + b


def uses_its_own_max(a, b):
    return max(a, b)


def sqrt_of_a_module_not_imported(a):
    return math.sqrt(a)      # no `import math` here: Python raises NameError
"""


def test_calls_are_matched_by_what_the_name_is_not_how_it_is_spelled(tmp_path):
    """A kernel calling a module's own ``max`` computes what Python does (compiled as C's max,
    it did not); ``math.sqrt`` without ``import math`` raises NameError as in Python."""
    path = tmp_path / "kernels_elsewhere.py"
    path.write_text(SHADOWED)
    spec = importlib.util.spec_from_file_location("kernels_elsewhere", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a, b = np.array([1.0, 2.0]), np.array([10.0, 20.0])
    with pytest.warns(SpecializationWarning, match="call to max.*kernels_elsewhere.py:7"):
        np.testing.assert_array_equal(elementwise(module.uses_its_own_max)(a, b), a + b)
    with pytest.warns(SpecializationWarning, match="call to math.sqrt"), \
            pytest.raises(NameError, match="math"):
        elementwise(module.sqrt_of_a_module_not_imported)(a)


def test_a_local_function_named_like_a_builtin_is_not_the_builtin():
    def abs(v):
        return v * 10.0

    def scaled(a):
        return abs(a)

    with pytest.warns(SpecializationWarning, match="call to abs"):
        np.testing.assert_array_equal(elementwise(scaled)(np.array([-1.0])), [-10.0])
