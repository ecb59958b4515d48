"""Kernels at the edge of the DSL as users write them: names a kernel calls rebound between
calls, kernel attributes whose type brings its own arithmetic, and values that are Python ints
on some paths only. Each kernel must equal its pure-Python run bit for bit, compiled or not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil import StencilKernel
from asp_stencil.testing import (assert_bitwise, assert_specialised, clone_grids, load_kernel,
                                 make_grids, run_both)
from pytest_asp import requires_compiler

CALLS_F = """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = f(u[x])
"""

CLOSURE = """
def make():
    f = math.sin

    class K(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = f(u[x]) + 1.0

    def rebind(g):
        nonlocal f
        f = g

    return K, rebind
"""

CALLS_MAX = """
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = max(u[x], 0.0)
"""


def _same_as_python(k, grids):
    ref, test = clone_grids(grids), clone_grids(grids)
    k.pure_python(*ref)
    k.kernel(*test)
    assert_bitwise(ref[-1].data, test[-1].data)


@requires_compiler
def test_a_called_global_rebound_between_calls_specialises_again():
    """``f = math.sin`` then ``f = math.cos``: the second call ran the code generated for sin
    (the key did not follow what the called names are bound to)."""
    K = load_kernel(CALLS_F, namespace={"f": math.sin})
    k = K()
    grids = make_grids((6, 7))
    _same_as_python(k, grids)
    K.kernel.func.__globals__["f"] = math.cos
    _same_as_python(k, grids)
    assert_specialised(k)
    assert len(k.kernel.keys()) == 2


@requires_compiler
def test_a_called_closure_variable_rebound_between_calls_specialises_again():
    make = load_kernel(CLOSURE, "make")
    K, rebind = make()
    k = K()
    grids = make_grids((5, 6))
    _same_as_python(k, grids)
    rebind(math.exp)
    _same_as_python(k, grids)


@requires_compiler
def test_a_builtin_shadowed_after_the_first_call_is_the_users_function():
    """A module-level ``max`` defined after the kernel was compiled is the user's function:
    the kernel runs in Python (with the warning), not the compiled builtin ``max``."""
    K = load_kernel(CALLS_MAX)
    k = K()
    grids = make_grids((5, 6))
    _same_as_python(k, grids)
    K.kernel.func.__globals__["max"] = lambda a, b: a + b
    with pytest.warns(SpecializationWarning, match="user function 'max'"):
        _same_as_python(k, grids)


class _Scaled(int):
    """An int whose product is its own (as a units or fixed-point type might define)."""

    def __mul__(self, other):
        return 42.0


class _Percent(np.float64):
    """A NumPy float whose product is its own (a units type)."""

    def __mul__(self, other):
        return float(self) * 100.0 * other


class ScaledAttribute(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.a * u[x]


@pytest.mark.parametrize("a, expected", [(_Scaled(2), 42.0), (_Percent(0.5), 50.0)],
                         ids=["int-subclass", "float64-subclass"])
def test_a_number_subclass_attribute_with_its_own_operators_runs_in_python(a, expected):
    """``self.a * u[x]`` calls the subclass's ``__mul__`` in Python; the frontend took the
    attribute for the plain number (the int 2, the float64 0.5) and compiled ``2 * u[x]``."""
    k = ScaledAttribute()
    k.a = a
    grids = make_grids((4, 5))
    grids[0].data[...] = 1.0
    with pytest.warns(SpecializationWarning, match="self.a"):
        ref, out = run_both(k, grids)
    assert_bitwise(ref, out)
    assert float(ref[1, 1]) == expected


def _int_on_some_paths(expr: str, numpy: bool = False) -> type:
    options = "    asp_options = {'platform_selection': 'numpy'}\n" if numpy else ""
    return load_kernel(f"""
class K(StencilKernel):
{options}    def kernel(self, u, out):
        for x in out.interior_points():
            t = 0 if u[x] > 0 else u[x]
            out[x] = {expr}
""")


SIGNED_ZERO = ["t * -1", "t // -3", "t % -3"]


@requires_compiler
@pytest.mark.parametrize("expr", SIGNED_ZERO)
def test_python_int_zero_on_some_paths_keeps_no_sign_in_compiled_code(expr):
    """``t = 0 if c else u[x]``: ``t * -1`` is the int 0 in Python (stored as 0.0), the
    compiled code computed it in double and stored -0.0."""
    k = _int_on_some_paths(expr)()
    ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)
    assert_specialised(k)


@pytest.mark.parametrize("expr", ["-t", *SIGNED_ZERO])
def test_python_int_zero_on_some_paths_is_declined_by_the_numpy_platform(expr):
    """Whole-array NumPy holds ``t`` as float64 on every path: ``-t`` of the int 0 gave -0.0.
    The platform declines (the kernel runs in Python with the reason)."""
    pytest.importorskip("asp_stencil_numpy")
    k = _int_on_some_paths(expr, numpy=True)()
    with pytest.warns(SpecializationWarning, match="Python int on some paths"):
        ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)


@requires_compiler
@pytest.mark.parametrize("expr", [
    "(max(u[x], 9007199254740992) + 1) - 9007199254740992",
    "((u[x] if u[x] > 100 else 9007199254740992) + 1) - 9007199254740992",
    "(3 if u[x] > 100 else u[x]) * 3000000000 * 3000000000 * 3 - 81000000000000000000",
    "(2 ** 60 + 1 if u[x] > 0 else u[x]) % 3",
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_python_int_arithmetic_beyond_what_compiled_code_holds_exactly_runs_in_python(
        expr, dtype):
    """Python computes ints exactly; compiled code held a value that is an int on one path and
    a float on another in a double (exact to 2**53) or int64: ``(2**53 + 1) - 2**53`` gave
    0.0 instead of 1.0. Such kernels now run in Python, saying why."""
    k = load_kernel(f"""
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = {expr}
""")()
    with pytest.warns(SpecializationWarning, match="Python ints"):
        ref, out = run_both(k, make_grids((5, 6), dtypes=[dtype, dtype]))
    assert_bitwise(ref, out)


@requires_compiler
def test_python_int_arithmetic_beyond_int64_is_refused_with_the_type_check_disabled(
        monkeypatch):
    """The C lowering refuses what the type-check pass would have: disabling that pass by name
    must not make the wrong answer compile.  The refusal is the pass's own (the kernel runs in
    Python, naming the construct), not the OpenMP platform reported as a broken plugin."""
    import warnings

    from asp_core import PluginWarning

    monkeypatch.setenv("ASP_DISABLE_PASSES", "type-check")
    k = load_kernel("""
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = (max(u[x], 9007199254740992) + 1) - 9007199254740992
""")()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)
    assert not [w for w in caught if issubclass(w.category, PluginWarning)]
    assert any(issubclass(w.category, SpecializationWarning) and "Python ints" in str(w.message)
               and "runs in pure Python" in str(w.message) for w in caught)


@requires_compiler
def test_small_python_ints_on_some_paths_still_compile():
    """Counters and small constants chosen per point stay compiled (and exact)."""
    k = load_kernel("""
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            n = 0
            t = 2 if u[x] > 0 else u[x]
            for y in u.neighbors(x, 1):
                if u[y] > u[x]:
                    n = n + 1
            out[x] = (t + n) * 3 - 1 + n // 2
""")()
    ref, out = run_both(k, make_grids((6, 7)))
    assert_bitwise(ref, out)
    assert_specialised(k)


class MathPowNumpy(StencilKernel):
    asp_options = {"platform_selection": "numpy"}

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = math.pow(abs(u[x]), 1.5) + math.pow(u[x], 2)


def test_numpy_platform_runs_math_pow():
    """``math.pow`` (in the DSL) made the NumPy platform's lowering raise, so the platform was
    reported broken and the kernel ran in Python."""
    pytest.importorskip("asp_stencil_numpy")
    k = MathPowNumpy()
    grids = make_grids((6, 7))
    ref, out = run_both(k, grids)
    assert k.kernel.last_context.decision("platform_selection").choice == "numpy"
    np.testing.assert_allclose(out, ref, rtol=1e-15, atol=0)


class _PrivateScale(StencilKernel):
    """A kernel reading private attributes (``self.__x`` is ``self._PrivateScale__x`` when it
    runs), one of them a neighbour id."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.__scale = scale
        self.__east = 1

    def rescale(self, scale: float) -> None:
        self.__scale = scale

    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, self.__east):
                out[x] = out[x] + self.__scale * u[y]


@requires_compiler
def test_private_attributes_are_specialised_and_followed():
    """Python mangles ``self.__scale`` in a class body; the frontend looked ``__scale`` up as
    written, found no such attribute and ran the kernel in Python with a warning."""
    k = _PrivateScale(0.25)
    grids = make_grids((6, 7), neighbor_definition=[[(0, 0)], [(1, 0), (0, 1)]])
    ref, out = run_both(k, grids)
    assert_bitwise(ref, out)
    assert_specialised(k)
    k.rescale(0.5)   # a new value of the private attribute: a new specialisation, not the old
    ref2, out2 = run_both(k, grids)
    assert_bitwise(ref2, out2)
    assert not np.array_equal(ref, ref2)
    assert_specialised(k)


#: 2**62 + 2**38 + 1: rounds to float32 differently directly than through a double
_BIG = 4611686293305294849


@requires_compiler
@pytest.mark.parametrize("expr", ["t", "t * u[x]", "t + 1", "-t", "abs(t)",
                                  "1.0 if u[x] * 4611686018427387904 == t else 2.0"])
def test_a_large_python_int_becomes_float32_through_a_double(expr):
    """NumPy converts a Python int to float32 through a double (two roundings); the compiled
    code converted the int64 directly and differed in the last bit above 2**53."""
    k = load_kernel(f"""
class K(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = {_BIG} if u[x] > 0.0 else 3
            out[x] = {expr}
""")()
    grids = make_grids((4, 5), dtypes=[np.float32, np.float32])
    grids[0].data[...] = 1.0
    ref, out = run_both(k, grids)
    assert_bitwise(ref, out)
    assert_specialised(k)


@pytest.mark.parametrize("numpy", [False, True])
@pytest.mark.parametrize("expr", ["abs(t ** 0.5)", "abs((t + t) ** 1.5)", "abs(t ** -0.5)"])
def test_a_negative_python_int_to_a_fractional_power_runs_in_python(expr, numpy):
    """``(-2) ** 0.5`` is a complex number in Python (its abs 1.414...); the compiled code and
    the NumPy platform computed NaN. Refused, as for a Python float, with the reason."""
    if numpy:
        pytest.importorskip("asp_stencil_numpy")
    options = "    asp_options = {'platform_selection': 'numpy'}\n" if numpy else ""
    k = load_kernel(f"""
class K(StencilKernel):
{options}    def kernel(self, u, out):
        for x in out.interior_points():
            t = -2 if u[x] > 0.0 else 3
            out[x] = {expr}
""")()
    grids = make_grids((4, 5))
    grids[0].data[...] = 1.0
    with pytest.warns(SpecializationWarning, match="may be negative with a fractional"):
        ref, out = run_both(k, grids)
    assert_bitwise(ref, out)
    assert np.isfinite(ref[1:-1, 1:-1]).all()


def test_an_int_subclass_redefined_or_patched_after_the_first_call_runs_as_python(monkeypatch):
    """The key held an int attribute's type by name: a class redefined under the same name
    (a re-run notebook cell) or given an operator after the first call ran the code compiled
    for the plain int, where Python calls the new ``__mul__``."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")

    class Times(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = self.n * u[x]

    def value(k):
        grids = make_grids((4, 4))
        grids[0].data[...] = 1.0
        ref, out = run_both(k, grids)
        assert_bitwise(ref, out)
        return float(out[1, 1])

    class Count(int):
        pass

    k = Times()
    k.n = Count(3)
    assert value(k) == 3.0
    Count.__mul__ = lambda self, other: other * 100   # patched on the class
    with pytest.warns(SpecializationWarning, match="self.n"):
        assert value(k) == 100.0

    class Count(int):   # noqa: F811 - the cell run again
        def __mul__(self, other):
            return other * 7

    k.n = Count(3)
    assert value(k) == 7.0
