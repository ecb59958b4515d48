"""Differential fuzzing of the DSL's breadth (issue 15): random kernels with float32/float64 and
integer grids (read and mixed with floats, or computed in integer arithmetic), if/elif/else, comparisons and boolean operators, math functions and powers,
Dirichlet/Neumann borders, periodic grids and several outputs, compiled by the OpenMP backend,
equal pure Python bit for bit on every grid.

A kernel asp declines (an operation whose precision NumPy picks per value, say) must run in
Python with one warning and still be right; such *refusals* are counted and must stay under 5 %
(kernels where Python itself raises — ``0.0 ** -1`` — or computes a complex constant are not
counted: there is no real-valued result to compare). The default run tries a moderate number of kernels; ``-m slow`` runs 1000.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from asp_core import SpecializationWarning
from pytest_asp import requires_compiler
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.testing import (assert_bitwise, assert_specialised, breadth_kernel_sources,
                                 clone_grids, load_kernel, make_grids)

_DTYPES = {"f8": np.float64, "f4": np.float32, "i1": np.int8, "i2": np.int16, "i4": np.int32,
           "i8": np.int64, "u1": np.uint8, "u2": np.uint16, "u4": np.uint32}


def check_case(case) -> tuple[str, str]:
    """Run one random kernel both ways: (``'compiled'``, ``'refused'`` or ``'python-raises'``,
    the refusal's warning)."""
    source, dim, dtypes, ghost, custom, periodic = case
    cls = load_kernel(source)
    shape = [3 + 2 * ghost + (i % 2) for i in range(dim)]
    nd = default_neighbor_definition(dim) + [custom]
    grids = make_grids(shape, len(dtypes) - 1, ghost_depth=ghost, neighbor_definition=nd,
                       seed=len(source), dtypes=[_DTYPES[d] for d in dtypes], periodic=periodic)
    k = cls()
    ref = clone_grids(grids)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error", getattr(np, "exceptions", np).ComplexWarning)
            k.pure_python(*ref)
    except (ArithmeticError, ValueError, TypeError, getattr(np, "exceptions", np).ComplexWarning):
        return "python-raises", ""
    test = clone_grids(grids)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always", SpecializationWarning)
        k.kernel(*test)
    for i, (a, b) in enumerate(zip(ref, test)):
        assert_bitwise(a.data, b.data, what=f"grid {i} of kernel {dtypes} periodic={periodic}\n"
                                            f"{source}")
    refusals = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    if refusals:
        assert len(refusals) == 1, refusals
        if "constant expression" in refusals[0]:
            # Python folds to a complex number or raises on a constant (e.g. an unused local
            # (-0.75) ** 0.5): the kernel has no real-valued semantics to compile
            return "python-non-real", refusals[0]
        return "refused", refusals[0]
    assert_specialised(k)
    return "compiled", ""


def _run(n: int, seed_derandomize: bool) -> Counter:
    stats: Counter = Counter()
    reasons: Counter = Counter()

    @settings(max_examples=n, deadline=None, derandomize=seed_derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(breadth_kernel_sources())
    def one(case):
        outcome, msg = check_case(case)
        stats[outcome] += 1
        if outcome == "refused":
            reasons[msg.split("unsupported construct `")[-1].split("`")[0][:60]] += 1

    one()
    stats["_reasons"] = reasons  # type: ignore[assignment]
    return stats


def _assert_few_refusals(stats: Counter) -> None:
    tried = stats["compiled"] + stats["refused"]
    assert tried > 0, stats
    rate = stats["refused"] / tried
    print(f"\nbreadth fuzzing: {dict((k, v) for k, v in stats.items() if k != '_reasons')}, "
          f"refusal rate {rate:.1%}; reasons {dict(stats['_reasons'])}")
    assert rate < 0.05, (rate, stats)


@requires_compiler
@pytest.mark.timeout(900)
def test_breadth_kernels_match_python():
    _assert_few_refusals(_run(40, True))


@pytest.mark.slow
@requires_compiler
@pytest.mark.timeout(7200)
def test_breadth_kernels_match_python_1000():
    _assert_few_refusals(_run(1000, False))
