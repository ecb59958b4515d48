"""The NumPy platform's lowering: what it declines, the code it writes, and that the results
equal the pure-Python kernel (bit for bit where NumPy calls the same operation as Python)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.testing import assert_bitwise, clone_grids, kernel_sources, load_kernel, make_grids
from asp_stencil_numpy.support import unsupported_reason
from hypothesis import HealthCheck, given, reject, settings

NUMPY = {"platform_selection": "numpy"}


def _platform(kernel) -> str:
    chosen = kernel.kernel.last_context.decision("platform_selection")
    assert chosen is not None
    return chosen.choice


def _run(cls, grids, options=NUMPY):
    """(pure-Python output, output through the dispatcher with ``options``) on copies."""
    cls.asp_options = dict(options)
    k = cls()
    ref, test = clone_grids(grids), clone_grids(grids)
    with np.errstate(all="ignore"):
        k.pure_python(*ref)
    k.kernel(*test)
    return k, ref[-1].data, test[-1].data


class Laplacian3D(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                out[x] = out[x] + u[y]


class BorderAndInterior(StencilKernel):
    scale = 0.5

    def kernel(self, a, b, out):
        c = self.scale * 3
        for x in out.border_points():
            out[x] = a[x] * c - b[x]
        for x in out.interior_points():
            t = max(a[x], b[x], 0.25) // 0.75 + a[x] % -0.75 + b[x] % a[x]
            out[x] = abs(t) if a[x] < b[x] <= 2.0 else min(t, -b[x])


class GaussSeidel(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in out.neighbors(x, 1):
                out[x] = out[x] + 0.25 * out[y] + u[y]


class Math(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = math.sqrt(abs(u[x])) + math.exp(min(u[x], 5.0)) * u[x] ** 2


@pytest.mark.parametrize("cls,shape,n", [(Laplacian3D, (9, 8, 7), 1),
                                         (BorderAndInterior, (6, 9), 2),
                                         (BorderAndInterior, (2, 3), 2),
                                         (Laplacian3D, (3, 3, 3), 1)])
def test_numpy_platform_is_bitwise_equal_to_python(cls, shape, n, monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    for special in (False, True):
        grids = make_grids(shape, n, special=special, seed=3)
        k, expected, actual = _run(cls, grids)
        assert _platform(k) == "numpy"
        assert_bitwise(expected, actual)


def test_math_functions_match_python_to_rounding(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    k, expected, actual = _run(Math, make_grids((12, 11), 1, seed=5))
    assert _platform(k) == "numpy"
    np.testing.assert_allclose(actual, expected, rtol=1e-14, atol=0)


def test_gauss_seidel_is_declined_with_the_reason(monkeypatch):
    grids = make_grids((6, 6), 1)
    monkeypatch.setenv("ASP_MODE", "strict")
    from asp_core.pipeline import NoPlatform

    with pytest.raises(NoPlatform, match="Gauss-Seidel"):
        _run(GaussSeidel, grids)


def test_float32_grids_with_math_are_declined():
    from asp_stencil import dast as D

    g = D.GridParam("u", 0, (4, 4), "<f4", 1, (((0, 0),),), False)
    o = D.GridParam("out", 1, (4, 4), "<f4", 1, (((0, 0),),), True)
    read = D.Read("u", D.PointExpr(None, (0, 0)))
    body = (D.Store("out", D.PointExpr(None, (0, 0)), D.Call("sqrt", (read,))),)
    prog = D.StencilProgram("k", (g, o), (D.PointLoop("x", "out", "interior", body),))
    assert "double precision" in unsupported_reason(prog)
    plain = D.StencilProgram("k", (g, o), (D.PointLoop("x", "out", "interior", (
        D.Store("out", D.PointExpr(None, (0, 0)), D.BinOp("*", read, D.Const(0.5))),)),))
    assert unsupported_reason(plain) is None
    carried = D.StencilProgram("k", (g, o), (D.PointLoop("x", "out", "interior", (
        D.Assign("s", D.BinOp("+", D.Var("s"), read)),
        D.Store("out", D.PointExpr(None, (0, 0)), D.Var("s")))),))
    assert "carried" in unsupported_reason(carried)


def test_generated_code_is_slicing_and_slabs_give_the_same_bits(monkeypatch):
    from asp_stencil_numpy.lowering import lower_numpy
    from asp_stencil_numpy.platform import NumpyPlatform

    monkeypatch.setenv("ASP_MODE", "strict")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    seen = []
    original = NumpyPlatform.lower

    def spy(self, dast, ctx):
        seen.append(dast)
        return original(self, dast, ctx)

    monkeypatch.setattr(NumpyPlatform, "lower", spy)
    grids = make_grids((9, 8, 7), 1, seed=11)
    k, expected, whole = _run(Laplacian3D, grids)
    text = next(e for kind, e in k.kernel.last_context.events if kind == "program")["text"]
    assert "g_out[1:8, 1:7, 1:6] =" in text and "for " not in text
    assert_bitwise(expected, whole)

    src = lower_numpy(seen[-1], block=2)
    assert re.search(r"for _b in range\(1, 8, 2\)", src.text)
    assert "g_u[_b + 1:_e + 1, 1:7, 1:6]" in src.text
    blocked = clone_grids(grids)
    src.load()(*[g.data for g in blocked])
    assert_bitwise(whole, blocked[-1].data)


class Product(StencilKernel):
    def kernel(self, c, u, out):
        for x in out.interior_points():
            out[x] = c[x] * u[x]


class Neighbours(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = 0.0
            for y in u.neighbors(x, 1):
                acc = acc + u[y]
            out[x] = acc


def test_periodic_grids_are_filled_as_on_every_platform(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    for shape in ((9,), (6, 7), (5, 4, 6)):
        grids = make_grids(shape, 1, periodic=True, seed=5)
        k, expected, actual = _run(Laplacian3D if len(shape) == 3 else Neighbours, grids)
        assert _platform(k) == "numpy"
        assert_bitwise(expected, actual)


def test_grids_of_their_own_dtypes_and_matrix_data(monkeypatch):
    """Each grid keeps its own dtype (not the output's); np.matrix data is multiplied
    elementwise, as in the kernel's Python (the arrays checked are plain ndarrays)."""
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((5, 6), 2, dtypes=(np.float32, np.float64, np.float64), seed=2)
    k, expected, actual = _run(Product, grids)
    assert _platform(k) == "numpy"
    assert_bitwise(expected, actual)
    grids = make_grids((5, 6), 2, seed=2)
    ref = clone_grids(grids)
    Product().pure_python(*ref)
    for g in grids[:2]:
        g.data = np.asmatrix(g.data)
    Product.asp_options = dict(NUMPY)
    Product().kernel(*grids)
    assert_bitwise(ref[-1].data, grids[-1].data)


def test_bad_grids_are_rejected_before_numpy_runs(monkeypatch):
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((6, 6), 1)
    k, _, _ = _run(Laplacian3D, grids)
    bound = next(iter(k.kernel.specializations.values()))
    assert vars(bound) == {}  # a plain callable: no side-channel attributes for callers to read
    with pytest.raises(ValueError, match="aliases"):
        bound(grids[0], grids[0])
    with pytest.raises(ValueError, match="compiled for shape \\(6, 6\\)"):
        bound(*make_grids((6, 7), 1))
    small = StencilGrid((6, 6), dtype=np.float32)
    # grids may differ in dtype, but not from what this specialisation was built for
    with pytest.raises(ValueError, match="dtypes \\['<f8', '<f8'\\], called with .*'<f4'"):
        bound(grids[0], small)


_settings = settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_INEXACT = re.compile(r"\*\*|math\.(exp|log|sin|cos)")


@_settings
@given(kernel_sources(max_depth=2))
def test_random_kernels_match_python(case):
    """asp-stencil's random-kernel strategy: every kernel the platform accepts gives Python's
    results (bitwise without ``**``/exp/log/sin/cos, else to rounding)."""
    source, dim, n_inputs, ghost, custom = case
    cls = load_kernel(source)
    shape = [3 + 2 * ghost + (i % 2) for i in range(dim)]
    nd = default_neighbor_definition(dim) + [custom]
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd,
                       seed=len(source))
    try:
        with np.errstate(all="ignore"):
            cls().pure_python(*clone_grids(grids))
    except (ArithmeticError, ValueError):
        reject()
    cls.asp_options = {}
    import os

    from asp_core.pipeline import NoPlatform

    os.environ["ASP_MODE"] = "strict"
    try:
        k, expected, actual = _run(cls, grids)
    except NoPlatform as exc:
        assert "numpy" in str(exc)
        reject()
    finally:
        del os.environ["ASP_MODE"]
    assert _platform(k) == "numpy"
    if _INEXACT.search(source):
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-300, equal_nan=True,
                                   err_msg=source)
    else:
        assert_bitwise(expected, actual, what=f"kernel\n{source}")


def _dast(kernel, grids):
    return kernel.kernel.variants(*grids).variant("whole").program.meta["dast"]


def _run_blocked(dast, grids, block):
    """The output of the slab-by-slab code of ``dast`` (``block`` planes per slab) on copies."""
    from asp_stencil_numpy.lowering import lower_numpy

    data = [g.data for g in clone_grids(grids)]
    with np.errstate(all="ignore"):
        lower_numpy(dast, block=block).load()(*data)
    return data[-1]


class Neumann(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + 1.0
        for x in out.border_points():
            out[x] = out[out.nearest_interior(x)]


class NeumannOfTwoGrids(StencilKernel):
    def kernel(self, u, out):
        for x in out.border_points():
            s = u[u.nearest_interior(x)]
            out[x] = u[x] * s
            out[x] = out[x] + out[out.nearest_interior(x)] * s


@pytest.mark.parametrize("cls", [Neumann, NeumannOfTwoGrids])
@pytest.mark.parametrize("shape", [(9,), (6, 7), (5, 6, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ghosts", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_nearest_interior_reads_match_python(cls, shape, dtype, ghosts, monkeypatch):
    """``g[g.nearest_interior(x)]`` in a border loop reads the interior point nearest to each
    border point (of ``g``'s own ghost depth), whole and slab by slab: on every face, edge and
    corner, not the border point itself."""
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids(shape, 1, dtypes=(dtype, dtype), seed=sum(shape))
    for g, depth in zip(grids, ghosts):
        g.ghost_depth = depth
    k, expected, actual = _run(cls, grids)
    assert _platform(k) == "numpy"
    assert_bitwise(expected, actual)
    assert_bitwise(expected, _run_blocked(_dast(k, grids), grids, block=1))


def test_nearest_interior_of_a_stored_grid_of_smaller_ghost_depth_is_declined():
    """With a ghost depth below the loop's, the nearest interior point of ``out`` can be another
    border point of the loop: which value it holds depends on Python's point order."""
    from asp_stencil import dast as D

    def prog(loop_ghost, out_ghost):
        u = D.GridParam("u", 0, (6, 6), "<f8", loop_ghost, (((0, 0),),), False)
        o = D.GridParam("out", 1, (6, 6), "<f8", out_ghost, (((0, 0),),), True)
        near = D.Read("out", D.PointExpr(None, (0, 0), clamp=out_ghost))
        body = (D.Store("out", D.PointExpr(None, (0, 0)), near),)
        return D.StencilProgram("k", (u, o), (D.PointLoop("x", "u", "border", body),))

    assert "Python's point order" in unsupported_reason(prog(2, 1))
    assert unsupported_reason(prog(1, 2)) is None
    assert unsupported_reason(prog(1, 1)) is None


class ScaledBy(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * self.alpha + u[x] / self.beta


@pytest.mark.parametrize("alpha,beta", [(np.float32(0.1), np.float32(3)),
                                        (np.float64(0.1), np.int64(3)),
                                        (np.float32(0.1), np.int8(-3)),
                                        (0.1, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_scalar_attributes_keep_numpy_promotion(alpha, beta, dtype, monkeypatch):
    """A NumPy scalar attribute stays a NumPy scalar in the generated code (not weak like a
    Python number under NEP 50: float32 data times ``float64(0.1)`` computes in float64),
    with its exact value."""
    monkeypatch.setenv("ASP_MODE", "strict")
    cls = type("Scaled", (ScaledBy,), {"alpha": alpha, "beta": beta})
    grids = make_grids((6, 7), 1, dtypes=(dtype, dtype), seed=4)
    k, expected, actual = _run(cls, grids)
    assert _platform(k) == "numpy"
    assert_bitwise(expected, actual)
    if isinstance(alpha, np.generic):
        text = k.kernel.variants(*grids).variant("whole").program.ir.text
        assert f"_np.{type(alpha).__name__}({alpha.item()!r})" in text


class HeldLocal(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            t = out[x]
            s = t
            w = t * 2.0
            out[x] = u[x] + w
            out[x] = s + out[x] + s


@pytest.mark.parametrize("disabled", [["output-forwarding"], ["output-forwarding", "cse"], []])
def test_locals_hold_values_not_views_of_the_grid(disabled, monkeypatch):
    """``t = out[x]`` lowers to a slice, a view into the grid, and ``s = t`` to the same view:
    a store to the grid before ``s`` is read must not change it. Only such a local is copied
    (with ``output-forwarding`` disabled; with it, the one store comes last: no copy)."""
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((6, 7), 1, seed=8)
    k, expected, actual = _run(HeldLocal, grids, {**NUMPY, "disable_passes": disabled})
    assert_bitwise(expected, actual)
    text = k.kernel.variants(*grids).variant("whole").program.ir.text
    assert [line.strip() for line in text.splitlines() if ".copy()" in line] == (
        ["v_s = v_t.copy()"] if disabled else [])


class Forwarded(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 3.0
            out[x] = out[x] / 7.0 + u[x]


class ForwardedConstant(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 9007199254740993   # 2**53 + 1: 2**53 once stored in a float grid
            out[x] = out[x] - 9007199254740992 + u[x]


@pytest.mark.parametrize("cls", [Forwarded, ForwardedConstant])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float32), (np.float32, np.float64),
                                    (np.float64, np.float64)])
def test_forwarded_output_values_have_the_grid_dtype(cls, dtypes, monkeypatch):
    """``out[x] = e`` then ``out[x]`` gives back ``e`` converted to ``out``'s dtype; once
    ``output-forwarding`` keeps it in a local, the local is converted likewise."""
    monkeypatch.setenv("ASP_MODE", "strict")
    grids = make_grids((5, 6, 7), 1, dtypes=dtypes, seed=6)
    k, expected, actual = _run(cls, grids)
    assert _platform(k) == "numpy"
    assert_bitwise(expected, actual)
    assert_bitwise(expected, _run_blocked(_dast(k, grids), grids, block=2))


@pytest.mark.parametrize("nan", [math.nan, -math.nan, np.float64(math.nan), np.float32(-math.nan),
                                 np.array(0x7FF0000000000001, np.uint64).view(np.float64).item(),
                                 np.array(0xFFF8000000000ABC, np.uint64).view(np.float64).item()],
                         ids=["nan", "-nan", "float64", "float32-neg", "signalling", "payload"])
def test_a_nan_constant_keeps_pythons_sign(nan):
    """``ast.unparse`` writes a NaN as ``1e309 - 1e309``, the NaN x86 makes (sign bit set):
    ``u[x] * self.a`` with ``a = nan`` gave -nan where Python gives nan. A NaN's payload
    reaches the result as in Python too (it was the default NaN's)."""
    class Times(StencilKernel):
        a = nan

        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = u[x] * self.a

    k, ref, got = _run(Times, make_grids((4, 5)))
    assert _platform(k) == "numpy"
    assert np.isnan(got[1:-1, 1:-1]).all()
    assert_bitwise(ref, got)
    assert (np.signbit(got[1:-1, 1:-1]) == np.signbit(ref[1:-1, 1:-1])).all()
    assert got[1:-1, 1:-1].tobytes() == ref[1:-1, 1:-1].tobytes()


def test_a_float32_signalling_nan_is_stored_as_it_is():
    """``_np.float32(nan)`` of the constant's Python float made a signalling NaN quiet."""
    signalling = np.array(0x7F800001, np.uint32).view(np.float32)[()]

    class Storing(StencilKernel):
        a = signalling

        def kernel(self, u, out):
            for x in out.interior_points():
                out[x] = self.a

    k, ref, got = _run(Storing, make_grids((4, 5), 1, dtypes=("float32", "float32")))
    assert _platform(k) == "numpy"
    assert got[1:-1, 1:-1].tobytes() == ref[1:-1, 1:-1].tobytes()
    assert got[1, 1].tobytes() == signalling.tobytes()
