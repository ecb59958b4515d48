"""Differential tests of the NumPy platform against the kernel's own Python (``ASP_MODE=python``).

Every kernel runs with ``platform_selection = "numpy"`` and under ``ASP_MODE=python`` on copies
of the same grids; every grid must agree bit for bit (NaN-aware, same dtype). A kernel the
platform declines must run in Python with one warning that gives the reason, never crash.

Regressions (each failed before its fix):

* locals are inlined into a later statement only if no local they read was rebound in between
  (with the ``cse`` pass disabled, ``s = t * 2; t = ...; out[x] = s + t`` read the new ``t``);
* values whose type Python picks per point (a conditional, ``min``/``max``, a ``math``
  function's Python float) are declined where NumPy's whole arrays would compute in another
  precision (``(0.3 if c else 0.7) * float32(0.1)`` is float32 arithmetic in Python) or hold the
  value inexactly (``0.1 if c else float32(0.1)``);
* with the ``type-check`` pass disabled, integer powers and Python ints beyond int64 are
  declined instead of raising from NumPy;
* loops storing several grids (or a grid other than the last argument) run on the platform
  (they were declined as "stores to out at offset (0, 0)").

Generated kernels (``asp_stencil.differential``'s strategies and a strategy of mixed-type
values) are derandomised and few; the whole file runs in well under a minute.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from asp_core import SpecializationWarning
from asp_stencil import StencilGrid
from asp_stencil.differential import (case_grids, compare_iterate, env, in_python, jacobi_cases,
                                      kernel_cases, PythonRaises)
from asp_stencil.testing import assert_bitwise, clone_grids, load_kernel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NUMPY = {"platform_selection": "numpy"}
_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much])
_INEXACT = re.compile(r"\*\*|math\.(exp|log|sin|cos|pow)")
_REASON = re.compile(r"platform 'numpy' was requested but cannot run here: (.+)"
                     r"|unsupported construct `(.+)` at ")


def _grids(shape, dtypes, ghost=1, seed=0, special=False):
    rng = np.random.default_rng(seed)
    grids = []
    for dt in dtypes:
        g = StencilGrid(shape, dtype=np.dtype(dt), ghost_depth=ghost)
        g.data[...] = rng.standard_normal(shape) * 3
        if special:
            flat = g.data.reshape(-1)
            for v in (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0):
                flat[rng.integers(0, flat.size, size=max(1, flat.size // 8))] = v
        grids.append(g)
    return grids


def _run(cls, grids, options=None):
    """Run ``cls`` on copies of ``grids`` under ``ASP_MODE=python`` and on the NumPy platform
    (``options`` added); every grid bit for bit. Returns ``(platform, reason)``: the platform
    the call ran on and, where it fell back, the reason its one warning gave.
    ``PythonRaises`` where the Python kernel raises."""
    ref = clone_grids(grids)
    in_python(lambda: cls().kernel(*ref))
    cls.asp_options = {**NUMPY, **(options or {})}
    k = cls()
    test = clone_grids(grids)
    with warnings.catch_warnings(record=True) as caught, env(ASP_MODE=None), \
            np.errstate(all="ignore"):
        warnings.simplefilter("always")
        k.kernel(*test)
    exact = not _INEXACT.search(getattr(cls, "source", ""))
    for i, (a, b) in enumerate(zip(ref, test)):
        if exact:
            assert_bitwise(a.data, b.data, what=f"grid {i}")
        else:
            assert a.data.dtype == b.data.dtype
            np.testing.assert_allclose(b.data, a.data, rtol=1e-5, atol=1e-300, equal_nan=True,
                                       err_msg=f"grid {i}")
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    if not fallbacks:
        chosen = k.kernel.last_context.decision("platform_selection")
        return chosen.choice, None
    assert len(fallbacks) == 1, fallbacks
    m = _REASON.search(fallbacks[0])
    assert m, f"a fallback without a reason: {fallbacks[0]}"
    return "python", m.group(1) or m.group(2)


def _kernel(body: str, params: str = "a, out", consts: str = "") -> type:
    src = f"class K(StencilKernel):\n{consts}    def kernel(self, {params}):\n{body}"
    cls = load_kernel(src, namespace={"np": np})
    cls.source = src
    return cls


# -- locals rebound between a definition and its use (cse disabled) -----------------------------

REBOUND = """        for x in out.interior_points():
            t = a[x] + 1.0
            s = t * 2.0
            w = t + 3.0
            t = b[x] + 1.0
            out[x] = s + t + w + t
"""


@pytest.mark.parametrize("disabled", [[], ["cse"], ["cse", "dead-locals"]])
def test_a_local_inlined_past_a_rebinding_of_what_it_reads_keeps_its_value(disabled):
    cls = _kernel(REBOUND, "a, b, out")
    platform, reason = _run(cls, _grids((6, 5), "f8 f8 f8".split()),
                            {"disable_passes": disabled})
    assert platform == "numpy", reason
    text = cls().kernel.variants(*_grids((6, 5), ["f8"] * 3)).variant("whole").program.ir.text
    if "cse" in disabled:  # t is rebound: s = t * 2.0 stays a statement before that
        assert text.index("v_s = v_t * 2.0") < text.index("v_t = g_b"), text


# -- values whose type Python picks per point -----------------------------------------------------

CONSTS = ("    c_f32 = np.float32(0.1)\n    c_i8 = np.int8(-3)\n    c_u8 = np.uint8(200)\n")
MIXED_DECLINED = {
    "min with a float32 constant, then * 0.1": "out[x] = min(a[x], self.c_f32) * 0.1",
    "Python int of a branch / float32": "t = 1 if a[x] > 0 else 3\n            out[x] = t / self.c_f32",
    "Python int of a branch * int8": "t = 100 if a[x] > 0 else 3\n            out[x] = t * self.c_i8",
    "Python int of a branch + uint8": "t = 100 if a[x] > 0 else 3\n            out[x] = t + self.c_u8",
    "math.sqrt's Python float * float32": "out[x] = math.sqrt(abs(a[x])) * self.c_f32",
    "Python float 0.1 or float32 0.1": "out[x] = 0.1 if a[x] > 0 else self.c_f32",
    "Python float of a branch * float32": "t = 0.3 if a[x] > 0 else 0.7\n            out[x] = t * self.c_f32",
    "min's Python int * float32": "t = min(a[x], 3)\n            out[x] = t * self.c_f32",
}


@pytest.mark.parametrize("name", sorted(MIXED_DECLINED))
def test_values_whose_type_python_picks_per_point_are_declined(name):
    """Each of these gave other bits than Python on the platform (float64 where Python computed
    in float32, int64 where it wrapped in int8, 0.1 rounded to float32): now declined, with
    the operation and the two types in the reason, and computed in Python."""
    cls = _kernel(f"        for x in out.interior_points():\n            {MIXED_DECLINED[name]}\n",
                  consts=CONSTS)
    platform, reason = _run(cls, _grids((6, 7), ["f8", "f8"], special=True, seed=3))
    assert platform == "python"
    assert "whole-array version" in reason, reason


MIXED_KEPT = {
    "max of a read and a Python float": "out[x] = max(a[x], 0.5) * 2.0 + min(a[x], 3) / 7",
    "branch of a read and 0.0": "t = a[x] if a[x] > 0 else 0.0\n            out[x] = t * 0.1 - t",
    "Python ints of a branch, float ops": "t = 7 if a[x] > 0 else 3\n            out[x] = t % 2.5 + t / 3",
    "float32 constant or a read": "out[x] = (self.c_f32 if a[x] > 0 else a[x]) + a[x]",
    "math.sqrt * float64": "out[x] = math.sqrt(abs(a[x])) * a[x] + 0.5",
    "float32 constant times a read": "out[x] = a[x] * self.c_f32 + self.c_u8",
}


@pytest.mark.parametrize("name", sorted(MIXED_KEPT))
def test_values_of_one_precision_whichever_type_still_run_on_numpy(name):
    cls = _kernel(f"        for x in out.interior_points():\n            {MIXED_KEPT[name]}\n",
                  consts=CONSTS)
    platform, reason = _run(cls, _grids((6, 7), ["f8", "f8"], special=True, seed=4))
    assert platform == "numpy", reason


# -- what the type-check pass refuses, with that pass disabled ------------------------------------

@pytest.mark.parametrize("body,why", [
    ("t = 2 if a[x] > 0 else 4\n            out[x] = t ** -1", "integer power"),
    ("out[x] = 2**70 if a[x] > 0 else 3", "out of bounds for int64"),
    ("out[x] = max(2**64, 3 if a[x] > 0 else 5) + a[x]", "out of bounds for int64"),
])
@pytest.mark.parametrize("disabled", [[], ["type-check"]])
def test_what_numpy_would_raise_for_is_declined_even_without_type_check(body, why, disabled):
    cls = _kernel(f"        for x in out.interior_points():\n            {body}\n")
    platform, reason = _run(cls, _grids((5, 6), ["f8", "f8"]), {"disable_passes": disabled})
    assert platform == "python" and why in reason, reason


# -- several stored grids -------------------------------------------------------------------------

@pytest.mark.parametrize("params,body", [
    ("out, a", "            out[x] = a[x] * 2.0\n"),
    ("a, o0, out", "            o0[x] = a[x] * 2.0\n            out[x] = o0[x] + a[x]\n"),
    ("a, out", "            a[x] = out[x] * 2.0\n            out[x] = a[x] - 1.0\n"),
])
@pytest.mark.parametrize("ghost", [0, 1, 2])
def test_loops_storing_several_grids_run_on_numpy(params, body, ghost):
    src = (f"        for x in {params.split(', ')[-1]}.interior_points():\n{body}"
           f"        for x in {params.split(', ')[-1]}.border_points():\n"
           f"{body.replace('* 2.0', '* -0.5')}")
    cls = _kernel(src, params)
    grids = _grids((5, 6, 4), ["f8", "f4", "f8"][:params.count(",") + 1], ghost=ghost)
    platform, reason = _run(cls, grids)
    assert platform == "numpy", reason


def test_a_gauss_seidel_loop_on_a_second_stored_grid_is_declined():
    cls = _kernel("        for x in out.interior_points():\n"
                  "            for y in o0.neighbors(x, 1):\n"
                  "                o0[x] = o0[x] + 0.25 * o0[y] + a[y]\n"
                  "            out[x] = o0[x]\n", "a, o0, out")
    platform, reason = _run(cls, _grids((6, 6), ["f8"] * 3))
    assert platform == "python" and "Gauss-Seidel" in reason


# -- IEEE special values through min/max/abs/comparisons/conditionals ---------------------------

SPECIAL = """        for x in out.interior_points():
            if a[x]:
                t = min(a[x], b[x], -0.0) - max(b[x], a[x], 0.0)
            elif not b[x] or a[x] < b[x] <= out[x] != a[x]:
                t = abs(a[x]) // b[x] + a[x] % b[x]
            else:
                t = (a[x] if a[x] == a[x] else -0.0) / b[x]
            out[x] = max(t, out[x]) if t != t or b[x] > 0 else min(out[x], t)
"""


@pytest.mark.parametrize("dtype", ["f8", "f4"])
@pytest.mark.parametrize("seed", range(3))
def test_nan_inf_and_signed_zeros_in_min_max_abs_and_comparisons(dtype, seed):
    cls = _kernel(SPECIAL, "a, b, out")
    platform, reason = _run(cls, _grids((9, 8), ["f8", "f8", dtype], special=True, seed=seed))
    # float32 output: Python compares float32 with float64 values (declined, with a reason)
    assert platform == ("numpy" if dtype == "f8" else "python"), reason


# -- generated kernels ----------------------------------------------------------------------------

def _generated(case, special):
    cls = load_kernel(case.source, namespace={"np": np})
    cls.source = case.source
    try:
        return _run(cls, case_grids(case, seed=len(case.source), special=special))
    except PythonRaises:
        return "python-raises", None


@settings(max_examples=100, **_SETTINGS)
@given(kernel_cases(max_points=300, families=("float", "float", "inplace")), st.booleans())
def test_generated_kernels_on_numpy_equal_python(case, special):
    """asp-stencil's generator (float and in-place kernels; the platform declines integer
    grids): every grid bit for bit, or a fallback with a reason."""
    _generated(case, special)


_KIND_LEAVES = ("a[x]", "b[x]", "2", "-3", "0.3", "1.5", "0", "-0.0", "self.c_f32",
                "self.c_f64", "self.c_i8", "self.c_u8", "self.c_i32", "self.c_int",
                "self.c_float")
_KIND_CONSTS = ("    c_f32 = np.float32(0.1)\n    c_f64 = np.float64(0.3)\n"
                "    c_i8 = np.int8(-3)\n    c_u8 = np.uint8(200)\n    c_i32 = np.int32(7)\n"
                "    c_int = 3\n    c_float = 0.7\n")


@st.composite
def _mixed_expr(draw, depth, locs):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(_KIND_LEAVES + tuple(locs)))

    def sub():
        return draw(_mixed_expr(depth - 1, locs))

    kind = draw(st.sampled_from(["bin", "bin", "cond", "minmax", "abs", "sqrt", "neg"]))
    if kind == "bin":
        return f"({sub()} {draw(st.sampled_from(['+', '-', '*', '/', '//', '%']))} {sub()})"
    if kind == "cond":
        return f"({sub()} if {sub()} {draw(st.sampled_from(['<', '>=', '==']))} {sub()} else {sub()})"
    if kind == "minmax":
        return f"{draw(st.sampled_from(['min', 'max']))}({sub()}, {sub()})"
    if kind == "abs":
        return f"abs({sub()})"
    if kind == "sqrt":
        return f"math.sqrt(abs({sub()}))"
    return f"(-{sub()})"


@st.composite
def _mixed_kernels(draw):
    """A local chosen among values of different types (a conditional, min/max, a math
    function's Python float), then arithmetic of it with more such values."""
    pick = [draw(st.sampled_from(_KIND_LEAVES)) for _ in range(3)]
    t0 = draw(st.sampled_from(["({} if a[x] > {} else {})", "min({}, {}, {})",
                               "max({}, {}, {})", "math.sqrt(abs({})) + {} * {}"])).format(*pick)
    op = draw(st.sampled_from(["+", "-", "*", "/"]))
    body = (f"        for x in out.interior_points():\n            t0 = {t0}\n"
            f"            t1 = {draw(_mixed_expr(2, ['t0']))}\n"
            f"            out[x] = {draw(_mixed_expr(2, ['t0', 't1']))} {op} "
            f"{draw(st.sampled_from(['t0', 't1', 'self.c_f32', 'self.c_i8', 'self.c_u8']))}\n")
    return body, draw(st.sampled_from(["f8", "f8", "f4"]))


@settings(max_examples=60, **_SETTINGS)
@given(_mixed_kernels(), st.booleans())
def test_generated_mixed_type_values_on_numpy_equal_python(kernel, special):
    body, dtype = kernel
    cls = _kernel(body, "a, b, out", consts=_KIND_CONSTS)
    try:
        _run(cls, _grids((6, 7), ["f8", dtype, "f8"], special=special, seed=len(body)))
    except PythonRaises:
        pass


@settings(max_examples=8, **_SETTINGS)
@given(jacobi_cases(max_points=200))
def test_generated_iterations_on_numpy_equal_python(case):
    """``iterate`` on the platform (plain sweeps) or its Python fallback: every grid and the
    grid returned, twice."""
    try:
        compare_iterate(case, (1, 4), ASP_PLATFORM_SELECTION="numpy")
    except AssertionError as exc:  # a numpy refusal is worded differently from type-check's
        if "names no construct" not in str(exc):
            raise
        assert "platform 'numpy' was requested but cannot run here" in str(exc)


def test_iterate_on_numpy_equals_python_and_a_declined_kernel_falls_back():
    ok = _kernel("        for x in out.interior_points():\n"
                 "            s = 0.5 * u[x]\n"
                 "            for y in u.neighbors(x, 1):\n"
                 "                s = s + 0.125 * u[y]\n"
                 "            out[x] = max(s, -1.0)\n", "u, out")
    gauss = _kernel("        for x in out.interior_points():\n"
                    "            for y in out.neighbors(x, 1):\n"
                    "                out[x] = out[x] * 0.5 + 0.125 * out[y] + u[x]\n", "u, out")
    for cls, expected in ((ok, "numpy"), (gauss, None)):
        grids = _grids((7, 6), ["f8", "f8"], seed=9)
        ref = clone_grids(grids)
        want = ref.index(in_python(lambda: cls().iterate(*ref, steps=5)))
        cls.asp_options = dict(NUMPY)
        k = cls()
        test = clone_grids(grids)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = test.index(k.iterate(*test, steps=5))
        assert got == want
        for a, b in zip(ref, test):
            assert_bitwise(a.data, b.data)
        fallbacks = [w for w in caught if issubclass(w.category, SpecializationWarning)]
        if expected:
            assert not fallbacks
            assert k.kernel.last_context.decision("platform_selection").choice == expected
        else:
            assert len(fallbacks) == 1 and "Gauss-Seidel" in str(fallbacks[0].message)
