"""The kernels users write beyond Figure 2 (issue 15), compiled in ASP_MODE=strict.

Each kernel of ``CASES`` runs through the OpenMP backend and, as generated CUDA, through nvcc and
the CPU emulation of :mod:`asp_stencil.cuda.emulate`; every grid must equal the pure-Python run
bit for bit (float32 grids computing in float32 as NumPy does, integer grids, if/elif/else,
math functions and powers, Dirichlet and Neumann borders, periodic grids, several outputs).
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from asp_core import SpecializationWarning, Unspecializable
from asp_core import cast as C
from pytest_asp import requires_compiler, requires_nvcc
from asp_core.toolchain import find_toolchain
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.cuda.emulate import emulated_library, run_emulated
from asp_stencil.cuda.lowering import default_variants, lower_cuda, unsupported_reason
from asp_stencil.grid import fill_periodic_ghosts
from asp_stencil.openmp import lower_openmp
from asp_stencil.testing import (assert_bitwise, assert_specialised, clone_grids, make_grids,
                                 run_both)

F4, F8, I32, I8 = np.float32, np.float64, np.int32, np.int8


class Laplacian(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + 0.1 * s


class Masked(StencilKernel):
    """An integer mask read, compared and mixed with floats."""

    def kernel(self, u, m, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0 if m[x] > 0 else u[x] + m[x] * 0.5
        for x in out.border_points():
            out[x] = m[x] / 4


class IntegerCopy(StencilKernel):
    def kernel(self, m, out):
        for x in out.interior_points():
            out[x] = m[x] if m[x] > 3 else max(m[x], -2)


class IntegerArithmetic(StencilKernel):
    """Integer grids computed as NumPy computes them: wrap-around on overflow, floor division
    and a modulo with the divisor's sign, 0 for a zero divisor, ``abs``/``-`` of the minimum."""

    def kernel(self, m, n, out):
        for x in out.interior_points():
            t = m[x] * 7 - n[x] // 3 + m[x] % -4
            if t > 5:
                t = -t + abs(n[x]) * m[x]
            out[x] = max(t, m[x] // n[x]) % 11 + min(m[x], n[x]) * 100 - (-m[x]) * 3 + m[x] % n[x]


class FloatModulo(StencilKernel):
    """``%`` of floats: NumPy's remainder (the divisor's sign; a zero divisor gives NaN)."""

    def kernel(self, u, v, out):
        for x in out.interior_points():
            out[x] = u[x] % 0.75 + u[x] % -2.0 + v[x] % u[x] + (u[x] - u[x]) % v[x]


class IntegerLaplacian(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x] * 6
            for y in u.neighbors(x, 1):
                s = s - u[y]
            out[x] = s // 2 if s > 7 else -(s % 5)
        for x in out.border_points():
            out[x] = u[x] * 3


class Branches(StencilKernel):
    """if/elif/else, and/or/not, chained comparisons, temporaries assigned in branches."""

    limit = 0.5

    def kernel(self, u, c, out):
        for x in out.interior_points():
            t = u[x]
            if u[x] > self.limit:
                t = u[x] * 2.0
                w = c[x]
            elif u[x] < -1 and not c[x] > 0 or -0.25 < c[x] <= 0.25:
                w = c[x] * u[x]
                if w > 0.1:
                    t = -t
                else:
                    out[x] = 7.0
            else:
                w = u[x] if c[x] != 0 else 1.0
            out[x] = t + w * u[x] + (out[x] if w > 0 else c[x])


class NeighbourBranches(StencilKernel):
    """``if`` inside a neighbour loop; a float32 sum that starts as the Python float 0.0."""

    def kernel(self, u, out):
        for x in out.interior_points():
            s = 0.0
            n = 0
            for y in u.neighbors(x, 1):
                if u[y] > u[x]:
                    s = s + u[y]
                    n = n + 1
                elif u[y] == u[x]:
                    pass
            out[x] = s / n if n > 0 else u[x]


class Functions(StencilKernel):
    p = 3

    def kernel(self, u, out):
        for x in out.interior_points():
            a = abs(u[x])
            s = (math.sqrt(a) + math.exp(min(u[x], 5.0)) - math.log(a + 1.0)
                 + math.sin(u[x]) * math.cos(u[x]) + math.pow(a, 1.5))
            out[x] = (s + u[x] ** 2 + a ** 0.5 + u[x] ** self.p + u[x] ** -1
                      + max(u[x], -1.0, a * 0.5) + min(a, 2))


class Attributes(StencilKernel):
    """NumPy scalars as attributes keep their dtype (float32 coefficient, int64 count)."""

    alpha = np.float32(0.1)
    n = np.int64(3)

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.alpha + self.n * u[x]


class DirichletNeumann(StencilKernel):
    """Interior heat step, then the border in the same kernel: fixed values where ``bc`` is 1
    (Dirichlet), copies of the adjacent interior value elsewhere (Neumann)."""

    value = 1.0

    def kernel(self, bc, u, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + 0.2 * s
        for x in out.border_points():
            if bc[x] == 1:
                out[x] = self.value
            else:
                out[x] = out[out.nearest_interior(x)]


class TwoOutputs(StencilKernel):
    """A variable coefficient read at the point, and two grids written."""

    def kernel(self, kappa, u, flux, out):
        for x in out.interior_points():
            s = -4.0 * u[x]
            m = u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
                m = max(m, u[y])
            flux[x] = kappa[x] * s
            out[x] = u[x] + 0.1 * flux[x] - 0.01 * m


# name, kernel, shape, grid dtypes, periodic
CASES = [
    ("laplacian-f4", Laplacian, (9, 11), (F4, F4), False),
    ("laplacian-f4-3d", Laplacian, (6, 7, 9), (F4, F4), False),
    ("laplacian-f4-in-f8-out", Laplacian, (9, 11), (F4, F8), False),
    ("laplacian-f8-in-f4-out", Laplacian, (9, 11), (F8, F4), False),
    ("laplacian-periodic", Laplacian, (9, 11), (F8, F8), True),
    ("laplacian-periodic-f4-1d", Laplacian, (13,), (F4, F4), True),
    ("masked-f4-i32", Masked, (8, 9), (F4, I32, F4), False),
    ("masked-f8-i8", Masked, (8, 9), (F8, I8, F8), False),
    ("integer-copy", IntegerCopy, (7, 8), (I8, I32), False),
    ("float-modulo-f8", FloatModulo, (7, 8), (F8, F8, F8), False),
    ("float-modulo-f4", FloatModulo, (7, 8), (F4, F4, F4), False),
    ("integer-arithmetic-i32", IntegerArithmetic, (6, 7, 9), (I32, I32, I32), False),
    ("integer-arithmetic-i8-wraps", IntegerArithmetic, (8, 9), (I8, I8, I8), False),
    ("integer-arithmetic-i16", IntegerArithmetic, (8, 9), (np.int16, np.int16, np.int16), False),
    ("integer-laplacian-i32-in-i64-out", IntegerLaplacian, (8, 9), (I32, np.int64), False),
    ("integer-laplacian-u8", IntegerLaplacian, (6, 7, 8), (np.uint8, np.uint8), False),
    ("integer-laplacian-i64-periodic", IntegerLaplacian, (9, 10), (np.int64, np.int64), True),
    ("branches-f8", Branches, (9, 10), (F8, F8, F8), False),
    ("branches-f4", Branches, (9, 10), (F4, F4, F4), False),
    ("neighbour-branches-f4", NeighbourBranches, (6, 7, 8), (F4, F4), False),
    ("neighbour-branches-f8", NeighbourBranches, (9, 10), (F8, F8), False),
    ("functions-f8", Functions, (9, 10), (F8, F8), False),
    ("functions-f4", Functions, (9, 10), (F4, F4), False),
    ("attributes-f4", Attributes, (6, 7), (F4, F4), False),
    ("attributes-f8", Attributes, (6, 7), (F8, F8), False),
    ("dirichlet-neumann-2d", DirichletNeumann, (8, 9), (I8, F8, F8), False),
    ("dirichlet-neumann-3d-f4", DirichletNeumann, (5, 6, 7), (I8, F4, F4), False),
    ("two-outputs", TwoOutputs, (9, 10), (F8, F8, F8, F8), False),
    ("two-outputs-f4", TwoOutputs, (9, 10), (F4, F4, F4, F4), False),
]
IDS = [c[0] for c in CASES]


def _grids(cls, shape, dtypes, periodic, seed=3):
    grids = make_grids(shape, len(dtypes) - 1, seed=seed, dtypes=dtypes, periodic=periodic)
    if cls is DirichletNeumann:  # a 0/1 boundary-kind mask
        grids[0].data[...] = np.random.default_rng(seed).integers(0, 2, size=shape)
    return grids


@requires_compiler
@pytest.mark.parametrize("name,cls,shape,dtypes,periodic", CASES, ids=IDS)
def test_openmp_equals_python_in_strict_mode(name, cls, shape, dtypes, periodic, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    k = cls()
    expected, actual = run_both(k, _grids(cls, shape, dtypes, periodic))
    assert actual.dtype == np.dtype(dtypes[-1])
    assert_bitwise(expected, actual, what=name)
    assert_specialised(k)


@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,cls,shape,dtypes,periodic", CASES, ids=IDS)
def test_cuda_emulated_equals_python(name, cls, shape, dtypes, periodic):
    grids = _grids(cls, shape, dtypes, periodic)
    prog = cls().kernel.analyse(*grids)[1]
    assert unsupported_reason(prog) is None
    variants = default_variants(prog)
    lib = emulated_library(lower_cuda(prog, variants))
    ref = clone_grids(grids)
    with np.errstate(all="ignore"):
        cls().pure_python(*ref)
    for v in variants:
        test = clone_grids(grids)
        fill_periodic_ghosts(test)  # what the bound CUDA callable does before uploading
        assert run_emulated(lib, prog, v, test) == 0
        for i, (a, b) in enumerate(zip(ref, test)):
            assert_bitwise(a.data, b.data, what=f"{name} [{v.label}] grid {i}")


@requires_nvcc
@pytest.mark.parametrize("name,cls,shape,dtypes,periodic", CASES[::3], ids=IDS[::3])
def test_cuda_compiles_with_nvcc(name, cls, shape, dtypes, periodic):
    prog = cls().kernel.analyse(*_grids(cls, shape, dtypes, periodic))[1]
    find_toolchain("cuda").check(C.print_cuda(lower_cuda(prog)))


def test_float32_code_computes_in_float():
    prog = Laplacian().kernel.analyse(*make_grids((8, 9), 1, dtypes=(F4, F4)))[1]
    src = C.print_c(lower_openmp(prog))
    assert "const float *restrict g_u" in src and "float *restrict g_out" in src
    # literals rounded to float32, in float32's shortest repr (0.1f: the float nearest 0.1),
    # no double temporaries
    assert "(0.1f * " in src and "double v_" not in src


@requires_compiler
def test_float32_result_is_numpy_float32_arithmetic(monkeypatch):
    """Not float64 arithmetic rounded at the end: the same as NumPy on float32 arrays."""
    monkeypatch.setenv("ASP_MODE", "strict")

    class Mix(StencilKernel):
        def kernel(self, u, v, out):
            for x in out.interior_points():
                out[x] = u[x] * 0.1 + v[x] * 0.3 - u[x] / 3

    u, v, out = make_grids((40, 50), 2, dtypes=(F4, F4, F4), seed=1)
    Mix().kernel(u, v, out)
    expected = u.data * np.float32(0.1) + v.data * np.float32(0.3) - u.data / np.float32(3)
    assert_bitwise(expected[1:-1, 1:-1], out.data[1:-1, 1:-1])
    in_double = (u.data.astype(F8) * 0.1 + v.data * 0.3 - u.data.astype(F8) / 3).astype(F4)
    assert not np.array_equal(in_double[1:-1, 1:-1], out.data[1:-1, 1:-1])


class BranchPrecision(StencilKernel):
    """NumPy picks the precision per value: ``t + 0.2`` is Python-float (double) arithmetic
    where ``t`` is the literal, float32 arithmetic where it is ``u[x]``; ``max(u[x], 0.1) * 3.0``
    alike. The generated code carries each value's kind at run time and does the same."""

    def kernel(self, u, out):
        for x in out.interior_points():
            t = 0.1 if u[x] > 0 else u[x]
            r = max(u[x], 0.1) * 3.0
            if t < 0.1:
                r = min(t, r, 0.7) ** 0.5
            out[x] = t + 0.2 + r


class IntegerPower(StencilKernel):
    def kernel(self, m, out):
        for x in out.interior_points():
            out[x] = m[x] ** 2  # <- NumPy raises for negative integer exponents


@requires_compiler
@pytest.mark.parametrize("dtypes", [(F4, F4), (F4, F8), (F8, F4)], ids=["f4", "f4-f8", "f8-f4"])
def test_precision_chosen_per_value_like_numpy(dtypes, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((12, 13), 1, dtypes=dtypes, seed=6)
    grids[0].data[::2] = np.abs(grids[0].data[::2]) * 0.01  # both sides of 0.1, and of 0
    k = BranchPrecision()
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    assert_specialised(k)


class ComplexPower(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = 0.5 if u[x] > 0 else -1.25
            out[x] = abs(t ** 0.5) + u[x]  # <- (-1.25) ** 0.5 is complex in Python


@requires_compiler
@pytest.mark.parametrize("cls,dtype,reason", [
    (IntegerPower, I32, "integer power"),  # NumPy raises for negative integer exponents
    (ComplexPower, F8, "complex number"),  # Python's complex result, abs() of it real; C: NaN
], ids=["integer-power", "complex-power"])
def test_refused_with_one_warning_and_run_in_python(cls, dtype, reason, monkeypatch):
    grids = make_grids((6, 7), 1, dtypes=(dtype, dtype), seed=2)
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Unspecializable, match=reason):
        cls().kernel(*clone_grids(grids))
    monkeypatch.setenv("ASP_MODE", "auto")
    k = cls()
    with pytest.warns(SpecializationWarning, match=reason):
        expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)


class IntToFloatPower(StencilKernel):
    def kernel(self, m, out):
        for x in out.interior_points():
            out[x] = m[x] ** 1.5 + (m[x] * 1.0) ** 2.5


@requires_compiler
def test_an_integer_to_a_float_power_is_numpys_pow(monkeypatch):
    """NumPy computes an integer scalar to a Python float power with its np.power loop, on
    AVX-512 CPUs its own vectorised pow: 19 of 0..255 ** 1.5 differed from the compiled libm
    pow in the last bit.  Where the probe finds that, the kernel runs in Python; a float64
    base, (m[x] * 1.0) ** y, is libm's pow in both."""
    from asp_stencil.scalar_types import pow_is_libm

    grids = make_grids((18, 19), 1, dtypes=(I32, F8), seed=2)
    grids[0].data[...] = np.arange(grids[0].data.size, dtype=np.int32).reshape(18, 19)
    assert pow_is_libm("<f8", "float")
    monkeypatch.setenv("ASP_MODE", "auto")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        expected, actual = run_both(IntToFloatPower(), grids)
    refused = [w for w in seen if issubclass(w.category, SpecializationWarning)
               and "vectorised pow" in str(w.message)]
    assert len(refused) == (0 if pow_is_libm("<i4", "float") else 1)
    assert_bitwise(expected, actual)


class ChosenInt(StencilKernel):
    """A Python int chosen by a branch meets an unsigned grid value: NumPy converts it to
    uint32 and raises OverflowError for -3; C would wrap it to 4294967293."""

    def kernel(self, a, b, out):
        for x in out.interior_points():
            t = -3 if a[x] >= 0 else a[x]
            out[x] = t * b[x]


class MinInt(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            out[x] = min(-3, a[x]) * b[x]


class BranchInt(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            if a[x] >= 0:
                t = -3
            else:
                t = a[x]
            out[x] = t * b[x]


class ChosenIntInRange(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            t = 3 if a[x] >= 0 else 5
            if a[x] > 9:
                t = -t + 9
            out[x] = min(t, 7) * b[x] + (2 if a[x] > 9 else 5) * b[x] + t * b[x]


@requires_compiler
@pytest.mark.parametrize("cls", [ChosenInt, MinInt, BranchInt])
def test_python_int_out_of_a_grid_dtypes_range_raises_as_numpy(cls, monkeypatch):
    """The range check of a Python int follows it through conditional expressions, min/max
    and the locals it is assigned to: refused, so the kernel runs in Python and raises."""
    grids = make_grids((5, 6), 2, dtypes=(np.uint8, np.uint32, np.uint32), seed=4)
    monkeypatch.setenv("ASP_MODE", "strict")
    with pytest.raises(Unspecializable, match="out of bounds for uint32"):
        cls().kernel(*clone_grids(grids))
    monkeypatch.setenv("ASP_MODE", "auto")
    with pytest.raises(OverflowError), pytest.warns(SpecializationWarning):
        cls().kernel(*clone_grids(grids))


class CompareBeyondRange(StencilKernel):
    """Python ints outside the grids' ranges, compared: NumPy 2 compares them by value."""

    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = ((1 if a[x] < 2**64 else 0) + (2 if a[x] == 2**64 else 0)
                      + (4 if -2**63 - 1 < a[x] else 0) + (8 if 2**70 <= a[x] else 0)
                      + (16 if a[x] != -2**64 else 0) + (32 if 0 <= a[x] < 2**64 else 0)
                      + (64 if a[x] > 2**64 else 0) + (128 if a[x] > 0 else 0))


class CompareSmallBeyondRange(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = ((1 if a[x] == 300 else 0) + (2 if a[x] < 256 else 0)
                      + (4 if a[x] > -1 else 0) + (8 if -1 >= a[x] else 0)
                      + (16 if a[x] > 0 else 0))


@requires_compiler
@pytest.mark.parametrize("cls, dtypes", [
    (CompareBeyondRange, (np.int64, np.int64)), (CompareBeyondRange, (I32, np.int64)),
    (CompareSmallBeyondRange, (np.uint8, np.int64)), (CompareSmallBeyondRange, (np.int8, I32))])
def test_comparing_with_a_python_int_beyond_the_dtypes_range_compiles(cls, dtypes):
    """``np.int64(3) < 2**64`` is True in NumPy 2 (arithmetic with 2**64 raises
    OverflowError, a comparison does not): these kernels ran in Python, the warning saying
    "NumPy raises OverflowError"."""
    grids = make_grids((5, 6), 1, dtypes=dtypes, seed=3)
    k = cls()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        expected, actual = run_both(k, grids)
    assert_specialised(k)
    assert_bitwise(expected, actual)
    if np.issubdtype(dtypes[0], np.signedinteger):   # the data reach both sides of 0
        assert np.unique(expected[1:-1, 1:-1]).size > 1


class NeighbourCount(StencilKernel):
    """A Python int carried by a loop meets int64 values: its own storage, still compiled."""

    def kernel(self, a, out):
        for x in out.interior_points():
            n = 0
            for y in a.neighbors(x, 1):
                if a[y] > 0:
                    n = n + 1
            out[x] = n * a[x]


@requires_compiler
@pytest.mark.parametrize("cls,dtypes", [(ChosenIntInRange, (np.int16, np.uint32, np.uint32)),
                                        (NeighbourCount, (np.int64, np.int64))])
def test_python_ints_in_range_still_specialise(cls, dtypes, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((5, 6), len(dtypes) - 1, dtypes=dtypes, seed=4)
    k = cls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # NumPy's wrap-around, as C's
        expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    assert_specialised(k)


def test_periodic_fill_wraps_every_axis_and_corner():
    g = StencilGrid((7, 6), ghost_depth=2, periodic=True)
    g.data[...] = np.arange(42).reshape(7, 6)
    interior = g.data[2:5, 2:4].copy()
    g.fill_ghosts()
    idx0 = [2 + (i - 2) % 3 for i in range(7)]
    idx1 = [2 + (j - 2) % 2 for j in range(6)]
    np.testing.assert_array_equal(g.data, interior[np.ix_([i - 2 for i in idx0],
                                                          [j - 2 for j in idx1])])


@requires_compiler
@pytest.mark.parametrize("dtype", [F8, F4])
def test_periodic_iterate_equals_numpy_roll(dtype, monkeypatch):
    """``iterate`` on periodic grids refills the ghosts before every sweep."""
    monkeypatch.setenv("ASP_MODE", "strict")
    u, out = make_grids((10, 12), 1, dtypes=(dtype, dtype), periodic=True, seed=4)
    field = u.data[1:-1, 1:-1].copy()
    k = Laplacian()
    result = k.iterate(u, out, steps=5)
    for _ in range(5):
        s = dtype(-4.0) * field
        for axis in (0, 1):
            for shift in (-1, 1):
                s = s + np.roll(field, shift, axis=axis)
        field = field + dtype(0.1) * s
    np.testing.assert_allclose(result.data[1:-1, 1:-1], field, rtol=1e-5 if dtype is F4 else 1e-12)
    assert_specialised(k)


@requires_compiler
def test_periodic_iterate_equals_python_loop(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((9, 8, 7), 1, periodic=True, seed=2)
    ref = clone_grids(grids)
    k = Laplacian()
    got = k.iterate(*grids, steps=4)
    for _ in range(4):
        k.pure_python(*ref)
        ref[-1], ref[-2] = ref[-2], ref[-1]
    assert_bitwise(ref[-2].data, got.data)


@requires_compiler
def test_written_grids_may_not_share_memory(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    kappa, u, flux, out = make_grids((8, 8), 3)
    TwoOutputs().kernel(kappa, u, flux, out)  # specialise
    flux.data = kappa.data
    with pytest.raises(ValueError, match="shares memory"):
        TwoOutputs().kernel(kappa, u, flux, out)


_CELL = '''
import numpy as np
from asp_stencil import StencilGrid, StencilKernel

class CellKernel(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0 if u[x] > 0 else -u[x]

u, out = StencilGrid((6, 7)), StencilGrid((6, 7))
u.data[...] = np.linspace(-1, 1, 42).reshape(6, 7)
k = CellKernel()
k.kernel(u, out)
'''


@requires_compiler
def test_kernel_in_a_jupyter_cell_specialises(monkeypatch):
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    monkeypatch.setenv("ASP_MODE", "strict")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        result = shell.run_cell(_CELL)
        assert result.success, result.error_in_exec
        k, u, out = (shell.user_ns[n] for n in ("k", "u", "out"))
        assert_specialised(k)
        expected = np.where(u.data > 0, u.data * 2.0, -u.data)
        assert_bitwise(expected[1:-1, 1:-1], out.data[1:-1, 1:-1])
    finally:
        interactiveshell.InteractiveShell.clear_instance()


def test_kernel_from_python_c_warns_what_to_do(tmp_path):
    code = _CELL.replace("k.kernel(u, out)", "import warnings\nk.kernel(u, out)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**_env(), "ASP_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("SpecializationWarning") == 1, proc.stderr
    assert "python -c" in proc.stderr and "put the kernel in a .py file" in proc.stderr


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.pop("ASP_MODE", None)
    return env


def test_if_statement_outside_point_loop_is_refused_with_its_line():
    class TopIf(StencilKernel):
        flag = True

        def kernel(self, u, out):
            if self.flag:
                for x in out.interior_points():
                    out[x] = u[x]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Unspecializable, match="if statement"):
            TopIf().kernel.analyse(*make_grids((5, 5), 1))


class LocalsAcrossLoops(StencilKernel):
    """A top-level local a point loop reassigns and reads there, reassigned at top level before
    a later loop reads it; a loop's own local reassigned at top level after it."""

    def kernel(self, u, out):
        c = 1.0
        for x in out.interior_points():
            c = u[x] * 2.0
            if u[x] > 0.0:
                c = c + 1.0
            out[x] = c
        c = 3.0
        for x in out.border_points():
            t = u[x]
            out[x] = c + t
        t = 0.25
        for x in out.interior_points():
            out[x] += t


@requires_compiler
def test_locals_assigned_again_after_a_loop_compile(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    k = LocalsAcrossLoops()
    expected, actual = run_both(k, make_grids((6, 7), 1))
    assert_bitwise(expected, actual)
    assert_specialised(k)



def _schedules():
    from asp_stencil.schedule import Schedule

    return [Schedule(), Schedule(nt=True, parallel_min_points=1), Schedule(nt=True, vec=True),
            Schedule(nt=True, vec=True, prefetch=3, parallel_min_points=1),
            Schedule(nt=True, block=4, parallel_min_points=1), Schedule(collapse=True),
            Schedule(unroll=2), Schedule(threads=2, parallel_min_points=1)]


@requires_compiler
@pytest.mark.parametrize("dtypes", [(F4, F4), (F4, F8), (F8, F4)], ids=["f4", "f4-f8", "f8-f4"])
def test_every_schedule_of_float32_grids_equals_python(dtypes):
    """Streaming-store rows of a float32 output (``_stream_ps``), blocking, collapsing and the
    rest, built directly (the autotuner reaches only some of them)."""
    import ctypes

    from asp_core.build import compile_library
    from asp_core.hardware import query
    from asp_stencil.openmp import function_name

    isa = tuple(query().isa)
    grids = make_grids((7, 19, 41), 1, dtypes=dtypes, seed=8, special=True)
    prog = Laplacian().kernel.analyse(*grids)[1]
    ref = clone_grids(grids)
    with np.errstate(all="ignore"):
        Laplacian().pure_python(*ref)
    for sched in _schedules():
        src = C.print_c(lower_openmp(prog, sched, isa))
        if sched.nt and dtypes[-1] is F4 and any(f in isa for f in ("avx512f", "avx", "sse2")):
            assert "_stream_ps" in src
        test = clone_grids(grids)
        lib = compile_library(src, name=function_name(prog), specialised_on={"t": sched.label})
        fn = getattr(lib.cdll, function_name(prog))
        fn.argtypes = [ctypes.c_void_p] * 2
        fn(*[g.data.ctypes.data for g in test])
        assert_bitwise(ref[-1].data, test[-1].data, what=f"{dtypes} {sched.label}")
