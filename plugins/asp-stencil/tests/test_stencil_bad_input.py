"""Bad input: a clear ValueError/TypeError before any compiled code runs."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_stencil import StencilGrid, StencilKernel, distance


class Lap(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += u[y]


class Wide(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 2):
                out[x] += u[y]


def _pair(shape=(6, 6), **kw):
    a, b = StencilGrid(shape, **kw), StencilGrid(shape, **kw)
    a.data[...] = np.arange(a.data.size, dtype=a.data.dtype).reshape(a.shape)
    return a, b


@pytest.fixture(params=["first-call", "after-specialisation"])
def lap(request):
    """A kernel either fresh or already specialised for good 6x6 float64 grids."""
    k = Lap()
    if request.param == "after-specialisation":
        k.kernel(*_pair())
    return k


def _unchanged(out, before):
    assert np.array_equal(out.data, before), "compiled code ran on bad input"


@requires_compiler
def test_different_shapes(lap):
    a, _ = _pair((6, 6))
    out = StencilGrid((6, 7))
    with pytest.raises(ValueError, match="different shapes"):
        lap.kernel(a, out)


@requires_compiler
@pytest.mark.parametrize("dtype", [np.uint64, np.complex128, np.float16, np.bool_, ">f8"])
def test_dtypes_c_does_not_take_run_in_python_and_say_so(lap, dtype):
    """Grids of a dtype the C code does not take are outside the specializer, not bad input:
    the kernel runs in Python (as pure_python does) with a warning naming the grid and its
    dtype (they raised TypeError, and a big-endian float64 grid was told it must be float64)."""
    from asp_core.errors import SpecializationWarning

    a, out = _pair()
    a.data = (a.data % 3).astype(dtype)
    if dtype == np.complex128:
        out.data = out.data.astype(dtype)
    expected = StencilGrid(out.shape)
    expected.data = out.data.copy()
    lap.pure_python(a, expected)
    name = np.dtype(dtype).name
    with pytest.warns(SpecializationWarning, match=f"grid 'u' of dtype {name}"):
        lap.kernel(a, out)
    np.testing.assert_array_equal(out.data, expected.data)


@requires_compiler
def test_a_grid_passed_twice_too_many_is_an_arity_error(lap):
    """``kernel(u, out, out)`` of a two-grid kernel: the count is the problem (it was told its
    output aliases input grid 2)."""
    a, out = _pair()
    with pytest.raises(TypeError, match=r"kernel\(\) takes 2 grid arguments \(u, out\), got 3"):
        lap.kernel(a, out, out)
    with pytest.raises(ValueError, match="aliases input grid 1"):   # two grids, one aliased
        lap.kernel(out, out)


@requires_compiler
def test_data_that_is_not_an_array_is_named():
    a, out = _pair()
    a.data = a.data.tolist()
    with pytest.raises(TypeError, match=r"input grid 1: \.data must be a NumPy array, got list"):
        Lap().kernel(a, out)


@requires_compiler
def test_mixed_dtypes_follow_numpy(lap):
    """Each grid has its own dtype (issue 15): a float32 input with a float64 output computes
    as NumPy does with these scalars, in compiled code."""
    a, out = _pair()
    a.data = a.data.astype(np.float32)
    ref = out.data.copy()
    expected = StencilGrid(out.shape)
    expected.data[...] = ref
    lap.pure_python(a, expected)
    lap.kernel(a, out)
    np.testing.assert_array_equal(out.data, expected.data)


@requires_compiler
def test_offsets_beyond_ghost_depth():
    a, out = _pair()
    for g in (a, out):
        g.neighbor_definition.append([(2, 0), (0, -2)])
    with pytest.raises(ValueError, match="ghost depth 1"):
        Wide().kernel(a, out)
    a0, out0 = _pair(ghost_depth=0)
    with pytest.raises(ValueError, match="ghost depth 0"):
        Lap().kernel(a0, out0)


@requires_compiler
@pytest.mark.parametrize("mode", ["auto", "python"])
def test_undefined_neighbor_id(monkeypatch, mode):
    """An ``IndexError`` as Python's list indexing gives (``except IndexError`` around the
    pure-Python kernel no longer caught the compiled one's ``ValueError``), and a
    ``ValueError`` as before, naming the id in every mode."""
    from asp_stencil.grid import NeighborIdError

    monkeypatch.setenv("ASP_MODE", mode)
    a, out = _pair()
    with pytest.raises(NeighborIdError, match="neighbour id 2 is not defined") as info:
        Wide().kernel(a, out)
    assert isinstance(info.value, IndexError) and isinstance(info.value, ValueError)


class CountBorderNeighbours(StencilKernel):
    def kernel(self, a, b):
        for x in b.border_points():
            n = 0.0
            for y in a.neighbors(x, 1):
                n = n + 1.0
            b[x] = n


class ReadBorderNeighbours(StencilKernel):
    def kernel(self, a, b):
        for x in b.border_points():
            for y in a.neighbors(x, 1):
                b[x] = a[y] + 1.0


class InverseDistance(StencilKernel):
    def kernel(self, a, b):
        for x in b.interior_points():
            s = 0.0
            for y in a.neighbors(x, 2):
                s = s + 1.0 / distance(x, y)
            b[x] = s


@requires_compiler
@pytest.mark.parametrize("mode", ["auto", "strict", "python"])
@pytest.mark.parametrize("cls", [CountBorderNeighbours, ReadBorderNeighbours, InverseDistance])
def test_neighbours_outside_the_array_are_refused_whether_or_not_they_are_read(
        monkeypatch, mode, cls):
    """``StencilGrid.neighbors`` raises for a point outside the array (Python, the fallback);
    compiled code checked only the points a kernel read, so counting the neighbours of a
    border point, or summing ``1 / distance(x, y)``, returned numbers where Python raised."""
    monkeypatch.setenv("ASP_MODE", mode)
    a, out = _pair()
    for g in (a, out):
        g.neighbor_definition.append([(2, 0), (0, -2)])
    before = out.data.copy()
    with pytest.raises(ValueError, match=r"neighbour offset \(-?\d, -?\d\)"):
        cls().kernel(a, out)
    if mode != "python":   # refused before any point is written
        np.testing.assert_array_equal(out.data, before)


class _Decay(StencilKernel):
    def kernel(self, u, out, rate):
        for x in out.interior_points():
            out[x] = u[x] * rate


@pytest.mark.parametrize("mode", ["auto", "python"])
def test_a_number_passed_as_an_argument_says_to_make_it_an_attribute(monkeypatch, mode):
    """``kernel(self, u, out, rate)`` called with ``0.5``: "the output grid (last argument)
    must be a StencilGrid ..., got float" said what was wrong, not what to write instead."""
    monkeypatch.setenv("ASP_MODE", mode)
    with pytest.raises(TypeError, match=r"got float; a kernel's arguments are its grids: give "
                                        r"a number as an attribute of the kernel .*self\.rate"):
        _Decay().kernel(*_pair(), 0.5)


@requires_compiler
def test_non_contiguous_data(lap):
    a, out = _pair()
    a.data = np.asfortranarray(a.data)
    with pytest.raises(ValueError, match="C-contiguous"):
        lap.kernel(a, out)
    b, out2 = _pair()
    big = np.zeros((6, 12))
    out2.data = big[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        lap.kernel(b, out2)


@requires_compiler
def test_read_only_output(lap):
    a, out = _pair()
    out.data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lap.kernel(a, out)


@requires_compiler
@pytest.mark.parametrize("which", [0, 1])
def test_masked_array_data(lap, which):
    """Compiled code would write under the output's mask and leave it masked (Python unmasks
    what it writes), and read the values under an input's mask."""
    grids = _pair()
    before = grids[1].data.copy()
    grids[which].data = np.ma.masked_array(grids[which].data, mask=True)
    with pytest.raises(TypeError, match="MaskedArray"):
        lap.kernel(*grids)
    assert np.array_equal(np.asarray(grids[1].data), before)


@requires_compiler
def test_data_of_wrong_shape(lap):
    a, out = _pair()
    before = out.data.copy()
    a.data = np.zeros((5, 5))
    with pytest.raises(ValueError, match="shape"):
        lap.kernel(a, out)
    _unchanged(out, before)


@requires_compiler
def test_output_aliased_with_input(lap):
    a, out = _pair()
    with pytest.raises(ValueError, match="aliases"):
        lap.kernel(a, a)
    out.data = a.data  # same buffer behind two grid objects
    with pytest.raises(ValueError, match="aliases"):
        lap.kernel(a, out)
    view = StencilGrid((6, 6))
    view.data = a.data.reshape(6, 6)[...]
    with pytest.raises(ValueError, match="aliases"):
        lap.kernel(a, view)


@requires_compiler
def test_not_a_grid(lap):
    a, _ = _pair()
    with pytest.raises(TypeError, match="StencilGrid"):
        lap.kernel(a, np.zeros((6, 6)))
    with pytest.raises(TypeError):
        lap.kernel(a, out=a)


@requires_compiler
def test_wrong_number_of_grids():
    a, out = _pair()
    with pytest.raises(TypeError, match="2 grid arguments"):
        Lap().kernel(a, out, StencilGrid((6, 6)))


def test_grid_constructor_validation():
    with pytest.raises(ValueError):
        StencilGrid([])
    with pytest.raises(ValueError):
        StencilGrid([4, 0])
    with pytest.raises(ValueError):
        StencilGrid([4, 4], ghost_depth=-1)
    with pytest.raises(TypeError):
        StencilGrid(5)
    for shape in ([4.7, 5], "45", [True, 3]):   # int() truncated 4.7 and split "45" into (4, 5)
        with pytest.raises(TypeError, match="sequence of ints"):
            StencilGrid(shape)
    assert StencilGrid([np.int64(4), 5]).shape == (4, 5)


@pytest.mark.parametrize("offset", [(-2, 0), (0, 2)])
@pytest.mark.parametrize("mode", ["python", "auto"])
def test_a_neighbour_beyond_the_ghost_depth_is_the_same_error_in_every_mode(monkeypatch, offset,
                                                                         mode):
    """An offset changed in place to reach past the ghost depth: compiled code refused it,
    while ``ASP_MODE=python`` (and any fallback) read the far side of the array through
    NumPy's negative indices, silently (or raised a bare IndexError past the far edge)."""
    from stencil_kernel import StencilGrid, StencilKernel

    class Reach(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                for y in u.neighbors(x, 1):
                    out[x] = out[x] + u[y]

    monkeypatch.setenv("ASP_MODE", mode)
    u, out = StencilGrid([8, 8]), StencilGrid([8, 8])
    u.data[...] = np.arange(64.0).reshape(8, 8)
    u.neighbor_definition[1] = [offset]
    with pytest.raises(ValueError, match="ghost depth"):
        Reach().kernel(u, out)
    if mode == "auto":   # refused before it runs (Python stops at the first such point)
        assert not out.data.any()
