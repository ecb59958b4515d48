"""Kernels outside the DSL still run, in pure Python, with one warning naming file and line."""

from __future__ import annotations

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
