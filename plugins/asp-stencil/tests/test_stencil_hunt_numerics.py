"""Numeric corners where compiled code computed something other than the kernel's Python:
constants that are equal as Python numbers but not as values of a kernel (``0.0`` and ``-0.0``,
``100`` and ``100.0``), Python floats compared with Python ints beyond 2**53, and the NumPy
platform's ``x ** 0.5``. Each kernel must equal its pure-Python run bit for bit, compiled or
(with the reason) in Python.
"""

from __future__ import annotations

import numpy as np
import pytest

from asp_core import SpecializationWarning
from asp_stencil import dast as D
from asp_stencil.testing import (assert_bitwise, assert_specialised, load_kernel, make_grids,
                                 run_both)
from pytest_asp import requires_compiler


def _kernel(expr: str, pre: str = "", numpy: bool = False) -> type:
    options = "    asp_options = {'platform_selection': 'numpy'}\n" if numpy else ""
    pre_line = f"            {pre}\n" if pre else ""
    return load_kernel(f"""
class K(StencilKernel):
{options}    def kernel(self, u, out):
        for x in out.interior_points():
{pre_line}            out[x] = {expr}
""")


def test_constants_compare_by_type_and_bits():
    """DAST nodes are dictionary keys (CSE, the C lowering's per-statement memo); ``Const``
    used Python's ``==``, so ``Const(-0.0) == Const(0.0)`` and ``Const(100) == Const(100.0)``."""
    assert D.Const(-0.0) != D.Const(0.0)
    assert D.Const(100) != D.Const(100.0)
    assert D.Const(1) != D.Const(True)
    assert D.Const(2.5) == D.Const(2.5) and hash(D.Const(2.5)) == hash(D.Const(2.5))
    assert D.const(np.float32(0.5)) != D.Const(0.5)


SIGN_OR_TYPE = [
    # u[x] * -0.0 is -0.0 for positive u; the second product was taken for the first
    ("(u[x] * -0.0) - (u[x] * 0.0)", "f8"),
    ("(u[x] * 0.0) - (u[x] * -0.0)", "f8"),
    # int8 * 100 wraps around (NumPy), int8 * 100.0 is float64
    ("(u[x] * 100.0) + (u[x] * 100)", "i1"),
    ("(u[x] * 100) + (u[x] * 100.0)", "i1"),
]


@requires_compiler
@pytest.mark.parametrize("expr,dtype", SIGN_OR_TYPE)
def test_operations_on_constants_equal_only_as_numbers_are_not_merged(expr, dtype):
    """``u[x] * -0.0`` and ``u[x] * 0.0`` (or ``m8[x] * 100`` and ``m8[x] * 100.0``) in one
    statement: the compiled code computed the first and reused it for the second."""
    k = _kernel(expr)()
    ref, out = run_both(k, make_grids((5, 6), dtypes=(dtype, "f8"), special=True))
    assert_bitwise(ref, out)
    assert_specialised(k)


def test_numpy_platform_keeps_constants_of_other_sign_apart():
    """The same merge on the NumPy platform: ``(u[x] * -0.0) - (u[x] * 0.0)`` gave +0.0."""
    pytest.importorskip("asp_stencil_numpy")
    k = _kernel("(u[x] * -0.0) - (u[x] * 0.0)", numpy=True)()
    ref, out = run_both(k, make_grids((5, 6), special=True))
    assert k.kernel.last_context.decision("platform_selection").choice == "numpy"
    assert_bitwise(ref, out)


T_PYFLOAT = "t = math.sqrt(abs(u[x])) * 0.0 + 9007199254740992.0"
BIG_INT_COMPARES = [
    "1.0 if t < 9007199254740993 else 2.0",
    "1.0 if t == 9007199254740993 else 2.0",
    "1.0 if 0.0 <= t < 9007199254740993 else 2.0",
    "1.0 if t >= (9007199254740993 if u[x] > 0 else 5) else 2.0",
    "3.0 * max(t, 9007199254740993) - 3.0 * t",
]


@requires_compiler
@pytest.mark.parametrize("expr", BIG_INT_COMPARES)
def test_python_float_compared_with_an_int_beyond_2_53_runs_in_python(expr):
    """Python compares a float with an int exactly (``2.0**53 < 2**53 + 1`` is True); compiled
    code rounded the int to a double first (False). Such comparisons now run in Python."""
    k = _kernel(expr, pre=T_PYFLOAT)()
    with pytest.warns(SpecializationWarning, match="Python float with a Python int"):
        ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)


@pytest.mark.parametrize("expr", BIG_INT_COMPARES[:2])
def test_numpy_platform_declines_a_python_float_compared_with_a_big_int(expr):
    """The NumPy platform rounded the int as well."""
    pytest.importorskip("asp_stencil_numpy")
    k = _kernel(expr, pre=T_PYFLOAT, numpy=True)()
    with pytest.warns(SpecializationWarning, match="Python float with a Python int"):
        ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)


@requires_compiler
@pytest.mark.parametrize("expr,pre", [
    ("1.0 if u[x] < 9007199254740993 else 2.0", ""),      # NumPy rounds the int too
    ("1.0 if t < 9007199254740992 else 2.0", T_PYFLOAT),  # exact in double
    ("max(t, 3) * 2.0", "t = math.sqrt(abs(u[x]))"),
])
def test_comparisons_with_ints_a_double_holds_exactly_still_compile(expr, pre):
    """Guard against over-refusing: NumPy scalars compare with a rounded int, and ints up to
    2**53 are exact in double."""
    k = _kernel(expr, pre=pre)()
    ref, out = run_both(k, make_grids((5, 6)))
    assert_bitwise(ref, out)
    assert_specialised(k)


@pytest.mark.parametrize("dtype", ["f8", "f4"])
@pytest.mark.parametrize("expr", ["u[x] ** 0.5", "math.pow(u[x], 0.5)"])
def test_numpy_platform_power_one_half_keeps_pows_special_values(expr, dtype):
    """NumPy computes an array to the scalar power 0.5 as ``sqrt``: ``-0.0 ** 0.5`` gave -0.0
    and ``-inf ** 0.5`` NaN, where Python (libm ``pow``) gives +0.0 and +inf."""
    pytest.importorskip("asp_stencil_numpy")
    if dtype == "f4" and expr.startswith("math"):
        pytest.skip("math.pow of float32 is declined by the platform (Python computes in double)")
    k = _kernel(expr, numpy=True)()
    grids = make_grids((4, 8), dtypes=(dtype, dtype))
    grids[0].data[...] = np.array([np.nan, -np.inf, -0.0, 0.0, np.inf, 4.0, 0.25, -0.0],
                                  dtype=dtype)
    ref, out = run_both(k, grids)
    assert k.kernel.last_context.decision("platform_selection").choice == "numpy"
    assert_bitwise(ref, out)
    assert (out[1:-1, 1] == np.inf).all() and not np.signbit(out[1:-1, 2]).any()


def _grids(kinds: tuple[str, ...], shape: tuple[int, ...] = (6, 7)) -> list:
    from stencil_kernel import StencilGrid

    return [StencilGrid(list(shape), dtype=np.dtype(k)) for k in kinds]


_SIGNED_ZEROS = {
    # gcc folded 0.0 - x to -x where x cannot be -0.0: -0.0 for x == +0.0 (Python: 0.0)
    "int-grid": ("out[x] = 0.0 - m[x]", ("<i4", "<f8")),
    "abs": ("out[x] = 0.0 - abs(u[x])", ("<f8", "<f8")),
    "abs-float32": ("out[x] = 0.0 - abs(u[x])", ("<f4", "<f4")),
    "accumulated": ("s = 0.0\n            for y in u.neighbors(x, 1):\n"
                    "                s = s - abs(u[y])\n            out[x] = s", ("<f8", "<f8")),
    # and -x + 0.0, asp's own guard of -(a Python int 0): the int path gave -0.0
    "negated-python-int": ("t = 0 if u[x] > 1.0 else u[x]\n            out[x] = -abs(t)",
                           ("<f8", "<f8")),
}


@requires_compiler
@pytest.mark.parametrize("case", sorted(_SIGNED_ZEROS))
def test_subtracting_from_zero_keeps_pythons_signed_zero(case):
    body, kinds = _SIGNED_ZEROS[case]
    lines = body.split("\n")
    K = load_kernel(f"""
class K(StencilKernel):
    def kernel(self, {'m' if kinds[0].startswith('<i') else 'u'}, out):
        for x in out.interior_points():
            {chr(10).join(lines)}
""")
    grids = _grids(kinds)   # all zeros
    if case == "negated-python-int":
        grids[0].data[...] = 2.0
    kernel = K()
    expected, actual = run_both(kernel, grids)
    assert_specialised(kernel)
    assert_bitwise(expected, actual)
    assert not np.signbit(expected[1:-1, 1:-1]).any()


@requires_compiler
@pytest.mark.parametrize("body", [
    "out[x] = math.sin(u[x]) if u[x] == 675.648 else 0.0",
    "out[x] = math.exp(m[x] * 0 + -27.4919)",
    "out[x] = math.log(u[x]) if u[x] == 605.351 else 0.0",
    "out[x] = math.cos(u[x]) if u[x] == -457.559 else 0.0",
])
def test_libm_calls_of_arguments_gcc_finds_constant_are_made_at_run_time(body):
    """gcc computed sin/cos/exp/log of an argument it proved constant (through an ``==`` test,
    ``int * 0``) exactly rounded, at compile time; Python calls libm, which differs in the last
    bit for these arguments."""
    name = "m" if "m[x]" in body else "u"
    K = load_kernel(f"""
class K(StencilKernel):
    def kernel(self, {name}, out):
        for x in out.interior_points():
            {body}
""")
    grids = _grids(("<i4" if name == "m" else "<f8", "<f8"))
    if name == "u":
        grids[0].data[...] = float(body.split("== ")[1].split(" ")[0])
    kernel = K()
    expected, actual = run_both(kernel, grids)
    assert_specialised(kernel)
    assert_bitwise(expected, actual)


@requires_compiler
@pytest.mark.parametrize("body", ["out[x] = max(m[x], 5)", "out[x] = m[x] if m[x] > 0 else 7"])
def test_an_int64_that_may_be_a_python_int_goes_to_float32_with_one_rounding(body):
    """An np.int64 stored into a float32 grid went through a double (two roundings) because
    the value could also be a Python int on another path; NumPy rounds an np.int64 once."""
    K = load_kernel(f"""
class K(StencilKernel):
    def kernel(self, m, out):
        for x in out.interior_points():
            {body}
""")
    grids = _grids(("<i8", "<f4"))
    grids[0].data[...] = 2**60 + 2**36 + 1
    kernel = K()
    expected, actual = run_both(kernel, grids)
    assert_specialised(kernel)
    assert_bitwise(expected, actual)
    assert expected[1, 1] == np.float32(np.int64(2**60 + 2**36 + 1))
