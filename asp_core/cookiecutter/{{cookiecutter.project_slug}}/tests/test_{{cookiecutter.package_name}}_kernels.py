"""Specialised kernels compute what the pure-Python kernel computes, through all five phases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from asp_core.decisions import PLATFORM, VARIANT
from asp_core.phases import PHASES
from pytest_asp import requires_compiler

from {{ cookiecutter.package_name }} import SPECIALIZER, elementwise, python_map


def blend(a, b):
    return 0.25 * a + 0.75 * max(a, b) - abs(b) / (2.0 + 1.0)


def norm3(x, y, z):
    return math.sqrt(x * x + y * y + z * z) + -min(x, y, z)


def _chosen(kernel) -> dict[str, str]:
    """The component of each phase: the pipeline's typed decision per phase (``ctx.events`` is
    only the log ``asp explain`` prints)."""
    ctx = kernel.last_context
    return {p: d.choice for p in PHASES if (d := ctx.decision(p)) is not None}


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))))


@requires_compiler
@pytest.mark.parametrize("func,nargs", [(blend, 2), (norm3, 3)])
@pytest.mark.parametrize("shape", [(1,), (1000,), (37, 11)])
def test_compiled_equals_python_bit_for_bit(func, nargs, shape):
    rng = np.random.default_rng(len(shape))
    arrays = [rng.standard_normal(shape) * 10 for _ in range(nargs)]
    arrays[0].flat[0] = -0.0
    kernel = elementwise(func)
    got = kernel(*arrays)
    assert _same_bits(got, python_map(func)(*arrays))
    assert _same_bits(kernel(*arrays), got)  # the second call goes straight to the bound code
    assert _chosen(kernel) == {"frontend": "python-ast", "domain_optimization": "domain-passes",
                               "platform_selection": "openmp",
                               "platform_optimization": "loop-variants", "backend": "c"}


@requires_compiler
def test_every_variant_gives_the_same_result(monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "always")
    x = np.linspace(-3.0, 3.0, 10_001)
    y = np.cos(x)
    kernel = elementwise(blend)
    # tuning times each variant 3 times, 3 more for those within 10 % of the best: as many
    # calls as that takes, however many variants variants.py proposes
    results, decision = [], None
    while decision is None and len(results) < 200:
        results.append(kernel(x, y))
        decision = kernel.last_context.decision(VARIANT)   # the tuner's typed decision record
    assert decision is not None and decision.source == "tuned now", "not autotuned"
    assert decision.choice in decision.candidates
    for r in results:
        assert _same_bits(r, python_map(blend)(x, y))


@requires_compiler
def test_math_sqrt_is_recognised_however_it_is_imported():
    from math import sqrt as root

    def roots(a):
        return root(a) + math.sqrt(a)

    a = np.linspace(0.0, 9.0, 10)
    kernel = elementwise(roots)
    assert _same_bits(kernel(a), python_map(roots)(a))
    assert _chosen(kernel)["backend"] == "c"


def exact_ints(x):
    return (9007199254740993 - 9007199254740992) * x   # 2**53 + 1: not a double


def divide(a, b):
    return a / b


def root(a):
    return math.sqrt(a - 1.0)


@requires_compiler
def test_integer_literals_fold_exactly_as_python_computes():
    x = np.array([1.0, 2.0, -3.0])
    kernel = elementwise(exact_ints)
    assert _same_bits(kernel(x), python_map(exact_ints)(x))
    assert _chosen(kernel)["backend"] == "c"


@requires_compiler
@pytest.mark.parametrize("func,args,exc", [
    (divide, (np.ones(4), np.array([1.0, 2.0, -0.0, 4.0])), ZeroDivisionError),
    (root, (np.array([2.0, 5.0, 0.5]),), ValueError)])
def test_elements_python_raises_on_raise_compiled_too(func, args, exc):
    """``x / 0.0`` and ``math.sqrt`` of a negative number raise in Python; C computes inf or
    NaN on, so the compiled kernel reports them and raises the same exception."""
    with pytest.raises(exc):
        python_map(func)(*args)
    kernel = elementwise(func)
    with pytest.raises(exc):
        kernel(*args)
    assert _chosen(kernel)["backend"] == "c"
    fine = [np.abs(a) + 1.0 for a in args]   # no element raises: the same bits as Python
    assert _same_bits(kernel(*fine), python_map(func)(*fine))


def test_python_platform_on_request():
    kernel = elementwise(blend, platform_selection="python")
    a, b = np.arange(5.0), np.arange(5.0)[::-1].copy()
    np.testing.assert_array_equal(kernel(a, b), python_map(blend)(a, b))
    assert kernel.last_context.decision(PLATFORM).choice == "python"
    assert _chosen(kernel)["backend"] == "vectorize"


def test_constant_folding_is_a_named_pass_that_can_be_disabled(monkeypatch):
    def scaled(a):
        return a * (2.0 * 3.0 - 1.0)

    kernel = elementwise(scaled)
    kernel(np.ones(3))
    passes = kernel.last_context.passes   # typed reports (asp_core.passes.PassReport)
    assert any(p.name == "constant-folding" and p.changed for p in passes)
    monkeypatch.setenv("ASP_DISABLE_PASSES", "{{ cookiecutter.specializer_name }}:constant-folding")
    again = elementwise(scaled)
    np.testing.assert_array_equal(again(np.ones(3)), np.full(3, 5.0))
    passes = again.last_context.passes
    assert any(p.name == "constant-folding" and p.skipped and not p.changed for p in passes)


@pytest.mark.parametrize("args,error,match", [
    ((), TypeError, "at least one array"),
    (([1.0, 2.0],), TypeError, "expected a numpy array"),
    ((np.arange(3),), TypeError, "dtype int64"),
    ((np.ones((4, 4))[:, ::2],), ValueError, "C-contiguous"),
    ((np.ones(3), np.ones(4)), ValueError, "shape"),
])
def test_bad_input_is_rejected_before_native_code(args, error, match):
    kernel = elementwise(blend)
    with pytest.raises(error, match=match):
        kernel(*args)


def test_registered_with_all_five_phases():
    from asp_core import get_registry

    registry = get_registry()
    assert SPECIALIZER in registry.specializers
    phases = registry.phases(SPECIALIZER)
    assert all(phases[p] for p in PHASES), {p: [c.name for c in cs] for p, cs in phases.items()}
