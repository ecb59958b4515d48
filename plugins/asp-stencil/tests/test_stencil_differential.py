"""Differential tests: a compiled kernel call equals the plugin's own Python (``ASP_MODE=python``)
bit for bit, every schedule variant included, on generated kernels of the documented DSL
(:mod:`asp_stencil.differential`): 1-3 dimensions, ragged shapes (1, 2, 3, 7, 17, 33 points a
side), ghost depths 0-3, float32/float64/integer grids, several inputs and outputs, Python
and NumPy constants, Dirichlet/Neumann/periodic borders, in-place Gauss-Seidel kernels. Also:
aliasing and non-contiguous grids fail alike in every mode, kernels outside the DSL fall back
with a warning naming file, line and construct, and ``ASP_MODE=strict`` raises instead.

Every generated case is deterministic (``derandomize=True``); ``-m slow`` runs many more.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asp_core import SpecializationWarning, Unspecializable
from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.differential import (KernelCase, case_grids, check_refusal, compare_call, env,
                                      kernel_cases)
from asp_stencil.testing import assert_bitwise, assert_specialised, clone_grids, load_kernel

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
_FAST = settings(max_examples=45, deadline=None, derandomize=True, database=None,
                 suppress_health_check=_SUPPRESS)
_SLOW = settings(max_examples=1500, deadline=None, database=None,
                 suppress_health_check=_SUPPRESS)


@requires_compiler
@_FAST
@given(kernel_cases(max_points=600), st.booleans())
def test_generated_kernels_equal_python_mode(case, special):
    compare_call(case, seed=len(case.source), special=special)


@pytest.mark.slow
@requires_compiler
@pytest.mark.timeout(3600)
@_SLOW
@given(kernel_cases(), st.booleans())
def test_generated_kernels_equal_python_mode_1500(case, special):
    compare_call(case, seed=len(case.source), special=special)


# -- ragged shapes, every border kind, one kernel ------------------------------------------------

HEAT = """class K(StencilKernel):
    alpha = {alpha}
    def kernel(self, bc, u, out):
        for x in out.interior_points():
            s = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            for y in u.neighbors(x, 2):
                s = s + 0.25 * u[y]
            out[x] = u[x] + self.alpha * s
{border}"""
_B = "        for x in out.border_points():\n"
BORDERS = {
    "none": "",
    "dirichlet": _B + "            out[x] = 1.5\n",
    "neumann": _B + "            out[x] = out[out.nearest_interior(x)]\n",
    "bc": _B + "            if bc[x] > 0:\n                out[x] = 0.0\n            else:\n"
               "                out[x] = u[u.nearest_interior(x)]\n",
}


def _ragged(dim: int, ghost: int) -> list[tuple[int, ...]]:
    """Four shapes of sizes 1, 2, 3, 7, 17, 33 on each axis, two of them with interior
    points (a fixed pick per dimension and ghost depth)."""
    shapes = list(itertools.product((1, 2, 3, 7, 17, 33), repeat=dim))
    inner = [s for s in shapes if min(s) > 2 * ghost]
    rng = np.random.default_rng(10 * dim + ghost)
    return [shapes[i] for i in rng.choice(len(shapes), 2, replace=False)] + [
        inner[i] for i in rng.choice(len(inner), 2, replace=False)]


@requires_compiler
@pytest.mark.parametrize("border", sorted(BORDERS))
def test_ragged_shapes_and_borders_equal_python(border):
    """A heat step with a radius-``ghost`` neighbourhood on every ghost depth 1-3, float64 and
    float32, periodic or not: compiled wherever the grid has interior points."""
    outcomes = Counter()
    for dim, ghost in itertools.product((1, 2, 3), (1, 2, 3)):
        custom = [tuple(ghost if i == d else 0 for i in range(dim)) for d in range(dim)]
        for n, shape in enumerate(_ragged(dim, ghost)):
            dtype = ("f8", "f4")[n % 2]
            source = HEAT.format(alpha="np.float32(0.1)" if dtype == "f4" else "0.1",
                                 border=BORDERS[border])
            case = KernelCase(source, shape, ghost, (dtype,) * 3, custom, n % 3 == 0, "heat")
            outcome = compare_call(case, seed=sum(shape), variants=math.prod(shape) < 300)
            outcomes[outcome] += 1
            if outcome != "compiled":
                # only a Neumann copy of a grid without interior points: Python reads some
                # point, or raises IndexError (a negative index beyond the axis)
                assert min(shape) <= 2 * ghost and "nearest_interior" in source, (outcome, case)
                assert outcome == "python-raises" or "no interior points" in outcome, outcome
    assert outcomes["compiled"] >= 12, outcomes


# -- constants of every Python and NumPy scalar type ---------------------------------------------

CONSTANT_VALUES = ["3", "-2", "0.1", "-0.0", "1e300", "np.float32(0.1)", "np.float32(-3e38)",
                   "np.float64(1.5)", "np.int8(-3)", "np.int16(300)", "np.int32(7)",
                   "np.int64(-7)", "np.uint8(200)", "np.uint16(7)", "np.uint32(9)"]


@requires_compiler
@pytest.mark.parametrize("dtypes", [("f8", "f8", "f8"), ("f4", "i1", "f4"), ("f4", "u2", "f8"),
                                    ("f8", "i4", "f4")])
def test_constants_of_python_and_numpy_types(dtypes):
    """Each constant scales, shifts and is subtracted from the running value (its kind mixing
    with float and integer grids as NumPy's scalars do), and sets a border value."""
    names = [f"c{i}" for i in range(len(CONSTANT_VALUES))]
    lines = ["class K(StencilKernel):"] + [f"    {n} = {v}" for n, v in zip(names, CONSTANT_VALUES)]
    lines += ["    def kernel(self, f, m, out):", "        for x in out.interior_points():",
              "            s = f[x]"]
    lines += [f"            s = s * self.{n} + m[x] - self.{n}" for n in names]
    lines += ["            out[x] = s", "        for x in out.border_points():",
              "            t = f[x] * 0.5"]
    lines += [f"            t = t - self.{n}" for n in names[::3]]
    lines += ["            out[x] = t"]
    case = KernelCase("\n".join(lines) + "\n", (7, 5), 1, dtypes, [(0, 1)], False, "constants")
    for seed, special in ((3, True), (4, False)):
        assert compare_call(case, seed=seed, special=special) == "compiled"


@requires_compiler
def test_unsigned_numpy_constant_subtracted_compiles():
    """``a[x] - self.c`` with ``c = np.uint8(3)``: the linear-detection pass folded ``-1 * c``
    in uint8 (NumPy raises ``OverflowError``), which failed the pass, and the kernel ran in
    Python with a warning blaming the pass."""
    source = """class K(StencilKernel):
    c = np.uint8(3)
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] - self.c
"""
    for code in ("u1", "u2", "u4"):
        case = KernelCase(source, (9,), 1, (code, code), [(1,)], False, "int")
        assert compare_call(case) == "compiled"


# -- what GCC got wrong --------------------------------------------------------------------------

@requires_compiler
def test_float32_value_used_in_double_arithmetic_keeps_its_rounding():
    """A float32 store read back (``out[x] *= ...``) in a float64 product: GCC 12's SLP
    vectorizer dropped the rounding to float32 in rows of a few points (and in the ``u2``
    schedule), one ulp off; the kernel was found by
    :func:`test_generated_kernels_equal_python_mode`."""
    source = """class K(StencilKernel):
    c = np.float64(1.5)
    def kernel(self, a, o, out):
        for x in out.interior_points():
            out[x] = o[x] + self.c
            out[x] *= (self.c * 2 + (a[x] + a[x]))
        for x in out.interior_points():
            t = o[x] * o[x]
            out[x] = out[x] + t * self.c
"""
    for shape in [(17, 1, 2), (3, 7), (9, 8), (5, 4), (33,)]:
        case = KernelCase(source, shape, 0, ("u2", "f4", "f4"), [(0,) * len(shape)], False, "f32")
        for seed in range(4):
            assert compare_call(case, seed=seed) == "compiled"


@requires_compiler
@pytest.mark.parametrize("dtype", ["f8", "i4"])
def test_gauss_seidel_reading_the_previous_row_diagonally(dtype):
    """``out[x] = 3 * out[x + (-1, -1)]`` in Python's point order: GCC 12 unrolled the rows of
    15 points and vectorized the loop over rows, reading the old value of the previous row."""
    source = """class K(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            t = 3
            for y in out.neighbors(x, 2):
                t = t * min(out[y], out[y])
            out[x] = t
"""
    for shape, offsets in [((7, 17), [(-1, -1)]), ((9, 9), [(-1, 1)]), ((5, 6, 7), [(-1, 0, -1)]),
                           ((12, 3), [(0, -1), (-1, 0)])]:
        case = KernelCase(source, shape, 1, (dtype, dtype), offsets, False, "inplace")
        assert compare_call(case, seed=1) == "compiled"


@requires_compiler
def test_int64_conditional_update_in_rows_of_one_point():
    """The ``u2`` schedule on rows of one point: GCC 12 vectorized the loop over planes with
    strided accesses and computed wrong int64 products."""
    source = """class K(StencilKernel):
    c = np.int64(3)
    def kernel(self, a0, a1, out):
        for x in out.interior_points():
            out[x] *= ((out[x] if out[x] != 3 else a1[x]) + (self.c // 1))
        for x in out.interior_points():
            out[x] *= a0[x]
"""
    for shape in [(33, 7, 1), (8, 8, 1), (16, 7, 1)]:
        case = KernelCase(source, shape, 0, ("i8",) * 3, [(0, 0, 0)], False, "int")
        for seed in range(3):
            assert compare_call(case, seed=seed) == "compiled"


@requires_compiler
@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtypes", [("f4", "f4", "f4"), ("f8", "f8", "f8"), ("f8", "f4", "f4"),
                                    ("i2", "f8", "f4")])
@pytest.mark.parametrize("const", ["float64", "float32"])
def test_streaming_schedules_of_mixed_precision_kernels(dtypes, const):
    """Outputs past 1 MiB get the streaming schedules (intrinsic rows where every grid has one
    float dtype, buffered rows otherwise, masked or streamed edges): every variant equals
    NumPy's arithmetic on whole arrays, which is Python's per point (NEP 50 promotion, one
    IEEE operation each)."""
    source = f"""class K(StencilKernel):
    c = np.{const}(0.3)
    def kernel(self, w, u, out):
        for x in out.interior_points():
            s = u[x] * 0.5
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.c + w[x]
"""
    cls = load_kernel(source, namespace={"np": np})
    shape = (257, 1031) if dtypes[-1] == "f4" else (131, 1031)   # odd rows: unaligned edges
    case = KernelCase(source, shape, 1, dtypes, [(0, 1)], False, "big")
    grids = case_grids(case, seed=2)
    w, u, out = (g.data for g in grids)
    s = u[1:-1, 1:-1] * 0.5
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        s = s + u[1 + dx:u.shape[0] - 1 + dx, 1 + dy:u.shape[1] - 1 + dy]
    want = out.copy()
    want[1:-1, 1:-1] = s * getattr(np, const)(0.3) + w[1:-1, 1:-1]
    variants = cls().kernel.build_variants(*grids)
    assert any(name.startswith("nt") for name in variants), list(variants)
    # intrinsic rows take a NumPy constant that computes in the rows' dtype (np.float64 in
    # float64 rows, np.float32 in either), not one that widens them (np.float64, float32 rows)
    vec = any(name.startswith("nt-vec") for name in variants)
    one = len(set(dtypes)) == 1 and dtypes[0] != "i2"
    assert vec == (one and (const == "float32" or dtypes[0] == "f8")), list(variants)
    for name, fn in variants.items():
        test = clone_grids(grids)
        fn(*test)
        assert_bitwise(want, test[-1].data, what=f"{dtypes} variant {name}")


@requires_compiler
@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_a_point_loop_that_stores_nothing_leaves_a_large_output_alone(dtype):
    """An interior loop computing only a local, beside a border loop that stores: the buffered
    streaming schedules (``nt``, ``nt-ne``: outputs past 1 MiB whose rows intrinsics cannot
    take, here for the int16 input) streamed their row buffer, which nothing had written, over
    the interior."""
    source = """class K(StencilKernel):
    def kernel(self, a, out):
        for x in out.border_points():
            out[x] = a[x] * 2.0
        for x in out.interior_points():
            t = a[x] + 0.5
"""
    case = KernelCase(source, (520, 521), 1, ("i2", dtype), [(0, 1)], False, "big")
    assert compare_call(case, seed=6) == "compiled"


# -- in place, aliasing, views -------------------------------------------------------------------

class Smooth(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            s = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = u[x] + 0.1 * s


class TwoInputs(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            s = a[x] * 2.0
            for y in b.neighbors(x, 1):
                s = s - b[y]
            out[x] = s


class WritesTwo(StencilKernel):
    def kernel(self, a, o, out):
        for x in out.interior_points():
            o[x] = a[x] * 2.0
            out[x] = a[x] + 1.0


class InPlace(StencilKernel):
    """One grid, read at neighbours and written: Gauss-Seidel in Python's point order."""

    def kernel(self, g):
        for x in g.interior_points():
            s = 0.0
            for y in g.neighbors(x, 1):
                s = s + g[y]
            g[x] = 0.25 * s


def _grid(data) -> StencilGrid:
    g = StencilGrid(list(data.shape), dtype=data.dtype)
    g.data = data
    return g


@requires_compiler
@pytest.mark.parametrize("shape", [(7,), (3, 17), (9, 9), (5, 6, 7), (33, 2)])
def test_in_place_kernel_equals_python(shape):
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        g = StencilGrid(list(shape), dtype=dtype)
        g.data[...] = rng.standard_normal(shape)
        ref, test = clone_grids([g]), clone_grids([g])
        with env(ASP_MODE="python"):
            InPlace().kernel(*ref)
        k = InPlace()
        k.kernel(*test)
        assert_specialised(k)
        assert_bitwise(ref[0].data, test[0].data, what=f"{shape} {np.dtype(dtype).name}")


@requires_compiler
@pytest.mark.parametrize("mode", ["auto", "strict", "python"])
def test_an_output_sharing_memory_with_an_input_fails_alike_in_every_mode(mode):
    """Fresh kernels too: ``ASP_MODE=python`` ran a kernel's first calls in Python on aliased
    grids (nothing checked them) and raised once the kernel had been called in another mode."""
    base = np.random.default_rng(1).standard_normal(140)
    same = _grid(base[:100].reshape(10, 10).copy())
    buf = base.copy()
    cases = [("the same grid", (same, same)),
             ("overlapping views", (_grid(buf[:100].reshape(10, 10)),
                                    _grid(buf[20:120].reshape(10, 10))))]
    for label, grids in cases:
        before = [g.data.copy() for g in grids]
        with env(ASP_MODE=mode):
            for call in (lambda: Smooth().kernel(*grids),
                         lambda: Smooth().iterate(*grids, steps=2)):
                with pytest.raises(ValueError, match="aliases input grid 1"):
                    call()
        for g, b in zip(grids, before):
            assert np.array_equal(g.data, b), f"{label}: a refused call wrote the grids"


@requires_compiler
@pytest.mark.parametrize("mode", ["auto", "strict", "python"])
def test_grids_that_are_not_c_contiguous_fail_alike_in_every_mode(mode):
    base = np.random.default_rng(2).standard_normal((10, 20))
    views = {"every other column": base[:, ::2], "reversed rows": base[:10, :10][::-1],
             "Fortran order": np.asfortranarray(base[:, :10]),
             "interleaved": base.reshape(-1)[1::2].reshape(10, 10)}
    for label, view in views.items():
        for which in (0, 1):
            grids = [StencilGrid([10, 10]), StencilGrid([10, 10])]
            grids[which] = _grid(view)
            what = "input grid 1" if which == 0 else "the output grid"
            with env(ASP_MODE=mode):
                with pytest.raises(ValueError, match=f"{what}.*not C-contiguous"):
                    Smooth().kernel(*grids)


@requires_compiler
def test_inputs_sharing_memory_and_disjoint_views_of_one_buffer():
    """Inputs may alias each other, and grids may be disjoint C-contiguous views of one buffer
    (an output next to its input): compiled equals Python."""
    rng = np.random.default_rng(3)
    buf = rng.standard_normal(400)
    layouts = {
        "one grid twice": lambda b: (_grid(b[:100].reshape(10, 10)),) * 2
        + (_grid(b[200:300].reshape(10, 10)),),
        "overlapping inputs": lambda b: (_grid(b[:100].reshape(10, 10)),
                                         _grid(b[10:110].reshape(10, 10)),
                                         _grid(b[200:300].reshape(10, 10))),
        "output right after an input": lambda b: (_grid(b[:100].reshape(10, 10)),
                                                  _grid(b[100:200].reshape(10, 10)),
                                                  _grid(b[200:300].reshape(10, 10))),
        "a leading-axis slice": lambda b: (_grid(b.reshape(40, 10)[5:15]),
                                           _grid(b.reshape(40, 10)[15:25]),
                                           _grid(b.reshape(40, 10)[30:40])),
    }
    for label, layout in layouts.items():
        ref_buf, test_buf = buf.copy(), buf.copy()
        with env(ASP_MODE="python"):
            TwoInputs().kernel(*layout(ref_buf))
        k = TwoInputs()
        k.kernel(*layout(test_buf))
        assert_specialised(k)
        assert_bitwise(ref_buf, test_buf, what=label)


@pytest.mark.parametrize("mode", ["auto", "python"])
def test_a_second_output_sharing_memory_with_an_input_is_refused_before_c_runs(mode):
    """Refused in every mode: ``ASP_MODE=python`` ran the kernel (the check was the compiled
    code's own), though the docs promise the same error there."""
    a = _grid(np.random.default_rng(4).standard_normal((8, 8)))
    before = a.data.copy()
    with env(ASP_MODE=mode), \
            pytest.raises(ValueError, match="grid 2, which the kernel writes, shares memory"):
        WritesTwo().kernel(a, a, StencilGrid([8, 8]))
    assert np.array_equal(a.data, before)


@pytest.mark.parametrize("mode", ["auto", "python"])
def test_a_second_output_that_is_read_only_is_refused_in_every_mode(mode):
    a = _grid(np.random.default_rng(4).standard_normal((8, 8)))
    b = _grid(np.zeros((8, 8)))
    b.data.flags.writeable = False
    with env(ASP_MODE=mode), \
            pytest.raises(ValueError, match="grid 2 is written by the kernel but its .data is"):
        WritesTwo().kernel(a, b, StencilGrid([8, 8]))


# -- outside the DSL: one warning naming file, line and construct; strict raises -----------------

OUTSIDE = [
    ("while", "n = 0\n{pad}while n < 2:\n{pad}    n += 1\n{pad}{out}[x] = {u}[x] * n", "while"),
    ("user function", "{out}[x] = helper({u}[x])", "helper"),
    ("bitwise and", "{out}[x] = {u}[x] * (self.k & 1)", "&"),
    ("lambda", "{out}[x] = (lambda v: v)({u}[x])", "lambda"),
    ("grid attribute", "{out}[x] = {u}[x] + {u}.ghost_depth", "ghost_depth"),
    ("comparison as a value", "{out}[x] = {u}[x] > 0", "comparison"),
]


@requires_compiler
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=_SUPPRESS)
@given(kernel_cases(max_points=200, families=("float",)), st.sampled_from(OUTSIDE))
def test_a_construct_outside_the_dsl_falls_back_naming_it(case, outside):
    """A generated kernel with one statement outside the DSL added to its first interior
    loop: one warning naming the file, that statement's line and the construct; the results
    are Python's; ``ASP_MODE=strict`` raises ``Unspecializable`` at the same place."""
    label, stmt, needle = outside
    lines = case.source.splitlines()
    header = next(i for i, line in enumerate(lines) if "def kernel" in line)
    params = lines[header].split("(", 1)[1].rstrip("):").split(", ")
    grid, out = params[1], params[-1]
    pad = " " * 12
    insert = [f"        for x in {out}.interior_points():",
              pad + stmt.format(pad=pad, u=grid, out=out)]
    source = "\n".join(lines[:header] + ["    k = 3"] + lines[header:header + 1] + insert
                       + lines[header + 1:]) + "\n"
    line = header + 4 + (1 if label == "while" else 0)  # 1-based line of the construct
    namespace = {"np": np, "helper": lambda v: v * 2}
    cls = load_kernel(source, namespace=namespace)
    filename = cls.kernel.func.__code__.co_filename
    grids = case_grids(KernelCase(source, case.shape, case.ghost, case.dtypes, case.custom,
                                  case.periodic, case.family), seed=5)
    ref, test = clone_grids(grids), clone_grids(grids)
    try:
        with env(ASP_MODE="python"), np.errstate(all="ignore"):
            cls().kernel(*ref)
    except (ArithmeticError, ValueError, TypeError, IndexError):
        return  # Python raises on these grids: nothing to compare
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        cls().kernel(*test)
    for a, b in zip(ref, test):
        assert_bitwise(a.data, b.data, what=f"{label}\n{source}")
    messages = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    assert len(messages) == 1, messages
    assert f"at {filename}:" in messages[0], messages[0]
    found = int(messages[0].split(f"at {filename}:")[1].split(":")[0])
    if found != line:  # the generated part may hold a documented refusal of its own first
        check_refusal(messages, source, filename)
        return
    assert needle in messages[0], (needle, messages[0])
    with env(ASP_MODE="strict"), pytest.raises(Unspecializable) as info, \
            np.errstate(all="ignore"):
        cls().kernel(*clone_grids(grids))
    assert (info.value.filename, info.value.lineno) == (filename, line), info.value
