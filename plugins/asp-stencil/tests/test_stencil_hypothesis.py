"""Random kernels of the whole DSL: the specialised code equals pure Python bit for bit."""

from __future__ import annotations

import pytest
import warnings

import numpy as np
from hypothesis import HealthCheck, given, reject, settings

from asp_core import SpecializationWarning
from pytest_asp import requires_compiler
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.testing import assert_bitwise, assert_specialised, clone_grids, kernel_sources, load_kernel, make_grids, run_both


def _check(case, special: bool) -> None:
    source, dim, n_inputs, ghost, custom = case
    cls = load_kernel(source)
    shape = [3 + 2 * ghost + (i % 2) for i in range(dim)]
    nd = default_neighbor_definition(dim) + [custom]
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd, seed=len(source),
                       special=special)
    k = cls()
    try:  # Python raises where C returns inf/NaN (0.0 ** -1, complex powers): nothing to compare
        with np.errstate(all="ignore"):
            k.pure_python(*clone_grids(grids))
    except (ArithmeticError, ValueError, TypeError):
        reject()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecializationWarning)
        expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual, what=f"kernel\n{source}")
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    if fallbacks:
        # the only acceptable fallback: a constant expression Python cannot fold to a real
        # float (e.g. an unused local (-0.75) ** 0.5, complex in Python, or a huge int)
        assert len(fallbacks) == 1 and "constant expression" in fallbacks[0], fallbacks
    else:
        assert_specialised(k)


_fast = settings(max_examples=50, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_slow = settings(max_examples=1000, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@requires_compiler
@_fast
@given(kernel_sources())
def test_random_kernels_match_python(case):
    _check(case, special=False)


@requires_compiler
@_fast
@given(kernel_sources(max_depth=2))
def test_random_kernels_match_python_on_special_values(case):
    _check(case, special=True)


@pytest.mark.slow
@requires_compiler
@_slow
@given(kernel_sources())
def test_random_kernels_match_python_1000(case):
    _check(case, special=bool(len(case[0]) % 2))
