"""Differential corpus: specialised kernels equal pure Python bit for bit (1-D, 2-D, 3-D)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel, distance
from asp_stencil.grid import default_neighbor_definition
from asp_stencil.testing import assert_bitwise, assert_specialised, make_grids, run_both


class Figure2(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


class Smooth1D(StencilKernel):
    """One offset per neighbour id, as in the paper's 1-D derivative examples."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.5 * u[x]
            for y in u.neighbors(x, 2):
                out[x] += 0.25 * u[y]


class Derivative4(StencilKernel):
    """Fourth-order central difference; ghost depth 2; ids 2..5 one offset each."""

    h = 0.01

    def kernel(self, u, out):
        for x in out.interior_points():
            acc = 0.0
            for y in u.neighbors(x, 2):
                acc = acc - u[y]
            for y in u.neighbors(x, 3):
                acc = acc + 8.0 * u[y]
            for y in u.neighbors(x, 4):
                acc = acc - 8.0 * u[y]
            for y in u.neighbors(x, 5):
                acc = acc + u[y]
            out[x] = acc / (12.0 * self.h)


class Laplacian3D(StencilKernel):
    inv_h2 = 4.0

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                s = s + u[y]
            out[x] = s * self.inv_h2


class Divergence3D(StencilKernel):
    def kernel(self, fx, fy, fz, out):
        for x in out.interior_points():
            out[x] = 0.0
            for y in fx.neighbors(x, 2):
                out[x] += fx[y]
            for y in fx.neighbors(x, 3):
                out[x] -= fx[y]
            for y in fy.neighbors(x, 4):
                out[x] += fy[y]
            for y in fy.neighbors(x, 5):
                out[x] -= fy[y]
            for y in fz.neighbors(x, 6):
                out[x] += fz[y]
            for y in fz.neighbors(x, 7):
                out[x] -= fz[y]
            out[x] = out[x] * 0.5


class MooreWeighted(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            total = 0.0
            wsum = 0.0
            for y in u.neighbors(x, 2):
                w = 1.0 / distance(x, y)
                total = total + w * u[y]
                wsum = wsum + w
            out[x] = total / wsum


class Bilateral(StencilKernel):
    sigma = 0.7

    def kernel(self, u, out):
        for x in out.interior_points():
            num = 0.0
            den = 0.0
            for y in u.neighbors(x, 2):
                d = u[y] - u[x]
                w = math.exp(-(d * d) / (2 * self.sigma ** 2)) / (1.0 + distance(x, y))
                num = num + w * u[y]
                den = den + w
            out[x] = num / den if den > 0 else u[x]


class InteriorAndBorder(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2 - 1
            for y in u.neighbors(x, 1):
                out[x] = max(out[x], u[y])
        for x in out.border_points():
            out[x] = -u[x] if u[x] < 0 else u[x] / 3


class GaussSeidel(StencilKernel):
    """Reads the output at neighbours: must run in Python's point order."""

    def kernel(self, rhs, out):
        for x in out.interior_points():
            s = rhs[x]
            for y in out.neighbors(x, 1):
                s = s + out[y]
            out[x] = s * 0.25


class Operators(StencilKernel):
    k = 3
    flag = True

    def kernel(self, a, b, out):
        for x in out.interior_points():
            t = a[x] // b[x]
            t2 = min(a[x], b[x], 0.5) - max(a[x], -b[x])
            t3 = abs(a[x]) ** 0.5 + a[x] ** 2 + abs(b[x]) ** -1.5 + a[x] ** self.k
            out[x] = t + t2 * t3 if self.flag else t
            out[x] -= math.sqrt(abs(b[x])) + math.log(abs(a[x]) + 1) * math.sin(min(max(a[x], -9.0), 9.0)) \
                - math.cos(min(max(b[x], -9.0), 9.0)) // 0.3
            out[x] *= (a[x] if a[x] > 0 and not b[x] > 0 else (b[x] if a[x] < b[x] < 1 else 2))


class Powers(StencilKernel):
    """glibc's pow(x, 2.0) is not x * x in the last bit; Python calls pow, so must we."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] ** 2 + u[x] ** 0.5 + u[x] ** 3 + u[x] ** -1 + u[x] ** u[x]


class NestedNeighbors(StencilKernel):
    """Neighbours of neighbours (ghost depth 2): a 13-point 2-D stencil."""

    def kernel(self, u, out):
        for x in out.interior_points():
            acc = 0.0
            for y in u.neighbors(x, 1):
                for z in u.neighbors(y, 1):
                    acc = acc + u[z] * 0.0625
            out[x] = acc


class CSEHeavy(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            p = (a[x] + 1.0) * (a[x] + 1.0)
            q = (a[x] + 1.0) * (a[x] + 1.0) + (a[x] + 1.0)
            out[x] = p * q - (a[x] + 1.0) if a[x] > 0 else (a[x] + 1.0) * 3


def _axis_ids(dim: int) -> list[list[tuple[int, ...]]]:
    """Default ids, then one id per (axis, ±1) offset."""
    nd = default_neighbor_definition(dim)
    for axis in range(dim):
        for step in (1, -1):
            off = [0] * dim
            off[axis] = step
            nd.append([tuple(off)])
    return nd


def _moore(dim: int) -> list[list[tuple[int, ...]]]:
    import itertools

    nd = default_neighbor_definition(dim)
    nd.append([o for o in itertools.product((-1, 0, 1), repeat=dim) if any(o)])
    return nd


CASES = [
    ("figure2-2d", Figure2, (5, 5), 1, 1, None),
    ("figure2-2d-large", Figure2, (300, 301), 1, 1, None),
    ("smooth-1d", Smooth1D, (40,), 1, 1, default_neighbor_definition(1) + [[(-1,), (1,)]]),
    ("smooth-1d-large", Smooth1D, (100003,), 1, 1, default_neighbor_definition(1) + [[(-1,), (1,)]]),
    ("derivative4-1d", Derivative4, (64,), 1, 2,
     default_neighbor_definition(1) + [[(2,)], [(1,)], [(-1,)], [(-2,)]]),
    ("laplacian-3d", Laplacian3D, (9, 10, 11), 1, 1, None),
    ("laplacian-3d-large", Laplacian3D, (40, 70, 72), 1, 1, None),
    ("divergence-3d", Divergence3D, (8, 9, 10), 3, 1, _axis_ids(3)),
    ("moore-2d", MooreWeighted, (12, 13), 1, 1, _moore(2)),
    ("moore-3d", MooreWeighted, (6, 7, 8), 1, 1, _moore(3)),
    ("bilateral-2d", Bilateral, (20, 21), 1, 1, _moore(2)),
    ("interior-border-2d", InteriorAndBorder, (7, 9), 1, 1, None),
    ("interior-border-3d-gd2", InteriorAndBorder, (7, 8, 9), 1, 2, None),
    ("interior-border-1d", InteriorAndBorder, (10,), 1, 1, None),
    ("gauss-seidel-2d", GaussSeidel, (11, 12), 1, 1, None),
    ("operators-2d", Operators, (10, 11), 2, 1, None),
    ("operators-3d", Operators, (5, 6, 7), 2, 1, None),
    ("nested-2d", NestedNeighbors, (12, 12), 1, 2, None),
    ("powers-2d", Powers, (40, 41), 1, 1, None),
    ("cse-2d", CSEHeavy, (9, 9), 1, 1, None),
]


@requires_compiler
@pytest.mark.parametrize("special", [False, True], ids=["normal", "special-values"])
@pytest.mark.parametrize("name,cls,shape,n_inputs,ghost,nd", CASES, ids=[c[0] for c in CASES])
def test_corpus_bitwise(name, cls, shape, n_inputs, ghost, nd, special):
    grids = make_grids(shape, n_inputs, ghost_depth=ghost, neighbor_definition=nd, seed=7,
                       special=special)
    k = cls()
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual, what=name)
    assert_specialised(k)


@requires_compiler
def test_figure2_values():
    in_grid = StencilGrid([5, 5])
    in_grid.data[...] = 1.0
    out_grid = StencilGrid([5, 5])
    Figure2().kernel(in_grid, out_grid)
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 4.0
    assert np.array_equal(out_grid.data, expected)


@requires_compiler
def test_respecialises_on_new_shape_and_attribute():
    k = Laplacian3D()
    for shape in [(6, 6, 6), (7, 8, 9)]:
        grids = make_grids(shape, 1, seed=1)
        expected, actual = run_both(k, grids)
        assert_bitwise(expected, actual)
    k.inv_h2 = 9.0
    grids = make_grids((7, 8, 9), 1, seed=2)
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    assert len(k.kernel.specializations) == 3
    assert_specialised(k)


@requires_compiler
def test_respecialises_on_new_neighbor_definition():
    k = Figure2()
    grids = make_grids((9, 9), 1, seed=3)
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    for g in grids:
        g.neighbor_definition[1] = [(1, 1), (-1, -1)]
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    assert len(k.kernel.specializations) == 2


@requires_compiler
def test_iterate_equals_separate_calls_with_swaps():
    k = Laplacian3D()
    k.inv_h2 = 0.1
    a, b = make_grids((10, 11, 12), 1, seed=4)
    a2, b2 = (StencilGrid(a.shape), StencilGrid(b.shape))
    a2.data[...] = a.data
    b2.data[...] = b.data
    result = k.iterate(a, b, steps=5)
    gs = [a2, b2]
    for _ in range(5):
        k.pure_python(*gs)
        gs.reverse()
    assert result is b  # odd number of steps: the last result is in the original output
    assert_bitwise(gs[0].data, result.data)
    assert_bitwise(gs[1].data, a.data)
    assert k.iterate(a, b, steps=0) is a  # no step: the state is still in the first grid
    with pytest.raises(ValueError):
        k.iterate(a, b, steps=-1)
    for steps in (2**63, 2**64 + 2):   # the C loops' count: 2**64 + 2 ran 1934 sweeps
        with pytest.raises(ValueError, match="from 0 to 2\\*\\*63 - 1"):
            k.iterate(a, b, steps=steps)


class _Doubler(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] * 2.0


@pytest.mark.parametrize("options,error,message", [
    ([("temporal", "off")], TypeError, r"_Doubler.asp_options must be a dict, got list"),
    ({"platfrom_selection": "python"}, ValueError,
     r"unknown key\(s\) 'platfrom_selection'; the known ones are: frontend, .*temporal"),
    # falsy non-dicts passed as "no options"; max_variants 0 ran Python, -1 lost a variant
    ([], TypeError, r"_Doubler.asp_options must be a dict, got list"),
    (0, TypeError, r"_Doubler.asp_options must be a dict, got int"),
    ({"max_variants": 0}, ValueError, r"\['max_variants'\] must be an int of at least 1"),
    ({"max_variants": -1}, ValueError, r"must be an int of at least 1, got -1"),
    ({"max_variants": 2.5}, ValueError, r"must be an int of at least 1, got 2.5"),
    # refused only by a later iterate before
    ({"temporal": "never"}, ValueError, r"asp_options\['temporal'\] must be 'auto', 'on' or "
                                        r"'off', got 'never'"),
])
def test_asp_options_are_checked(options, error, message):
    """A list of pairs passed the first call and ended ``iterate`` in an AttributeError from
    inside asp-stencil; a misspelt key was ignored."""
    k = _Doubler()
    k.asp_options = options
    a, b = StencilGrid([8, 8]), StencilGrid([8, 8])
    with pytest.raises(error, match=message):
        k.iterate(a, b, steps=2)
    with pytest.raises(error, match=message):
        _Doubler.kernel(k, a, b)


def test_an_empty_temporal_variable_means_its_default(monkeypatch):
    """``ASP_STENCIL_TEMPORAL=`` was an error, where every other empty ``ASP_*`` is unset."""
    from asp_stencil.temporal.iterate import temporal_mode

    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", " ")
    assert temporal_mode(None) == "auto"
    monkeypatch.setenv("ASP_STENCIL_TEMPORAL", "Off")
    assert temporal_mode(None) == "off"


class ScaledLaplacian(Laplacian3D):
    """Inherits ``kernel``: its attributes must still be part of the specialisation key."""

    inv_h2 = 2.0


@requires_compiler
def test_inherited_kernel_attribute_in_key():
    k = ScaledLaplacian()
    grids = make_grids((6, 7, 8), 1, seed=9)
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    k.inv_h2 = 3.0
    expected, actual = run_both(k, grids)
    assert_bitwise(expected, actual)
    assert len(k.kernel.specializations) == 2


@requires_compiler
def test_pow_two_is_libm_pow_not_a_product():
    u, out = StencilGrid([3, 3]), StencilGrid([3, 3])
    u.data[1, 1] = 1.2387167087539326  # glibc pow(x, 2.0) != x * x for this x
    Powers2().kernel(u, out)
    assert out.data[1, 1] == u.data[1, 1] ** 2 == math.pow(u.data[1, 1], 2.0)


class Powers2(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] ** 2
