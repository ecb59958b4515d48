"""Bad input (issue 14): the same clear error in compiled and pure-Python mode, arrays checked
are the arrays passed to C, and CSR matrices with out-of-range indices never reach C."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_asp import requires_compiler

asp_stencil = pytest.importorskip("asp_stencil")
StencilGrid, StencilKernel = asp_stencil.StencilGrid, asp_stencil.StencilKernel


class Lap(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += u[y]


def _pair(shape=(6, 6)):
    a, b = StencilGrid(shape), StencilGrid(shape)
    a.data[...] = np.arange(a.data.size, dtype=float).reshape(shape)
    return a, b


@pytest.mark.parametrize("offset", [(1.7, 0), ("1", 0), (1, 0, 0), "10", (1.0, 0)])
def test_bad_neighbor_offset_is_refused_where_it_is_set(offset):
    """Refused on assignment, so the compiled and the pure-Python paths cannot differ."""
    import re

    a, _ = _pair()
    with pytest.raises(ValueError, match=rf"neighbor_definition\[1\]\[0\] = "
                                         rf"{re.escape(repr(offset))}: an offset must be a "
                                         r"tuple of 2 ints"):
        a.neighbor_definition = [[(0, 0)], [offset, (0, 1)]]
    assert a.neighbor_definition[1] == [(1, 0), (-1, 0), (0, 1), (0, -1)]


def test_numpy_integer_offsets_are_accepted():
    a, _ = _pair()
    a.neighbor_definition = [[(0, 0)], [np.array([1, 0]), (np.int64(-1), 0)]]
    assert a.neighbor_definition[1] == [(1, 0), (-1, 0)]


@requires_compiler
@pytest.mark.parametrize("offset", [(1.7, 0), ("1", 0)])
def test_offset_changed_in_place_is_refused_before_compiled_code(fresh_cache, offset):
    a, out = _pair()
    for g in (a, out):
        g.neighbor_definition[1][0] = offset
    with pytest.raises(ValueError, match=r"an offset must be a tuple of 2 ints"):
        Lap().kernel(a, out)


@pytest.mark.parametrize("depth", [1.5, "1", True, -1])
@pytest.mark.parametrize("when", ["construction", "assignment"])
def test_bad_ghost_depth_same_error_everywhere(depth, when):
    with pytest.raises(ValueError, match=r"ghost_depth must be an int >= 0, got"):
        if when == "construction":
            StencilGrid((6, 6), ghost_depth=depth)
        else:
            StencilGrid((6, 6)).ghost_depth = depth


class ShiftyGrid(StencilGrid):
    """A grid whose ``.data`` is a property returning a smaller array after its first read."""

    def __init__(self, shape):
        super().__init__(shape)
        self.reads = 0

    @property
    def data(self):
        self.reads += 1
        return self._data if self.reads <= 1 else self._small

    @data.setter
    def data(self, value):
        self._data = value
        self._small = np.zeros(2)


@requires_compiler
def test_arrays_checked_are_the_arrays_passed_to_c(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    k = Lap()
    a, out = _pair((64, 64))
    k.kernel(a, out)  # specialised for 64x64
    expected = np.array(out.data)
    shifty = ShiftyGrid((64, 64))
    shifty._data[...] = a.data
    bound = k.kernel.tuned(k.kernel._signature((a, out), {}, k))
    assert bound is not None
    out2 = StencilGrid((64, 64))
    bound(shifty, out2)  # the compiled function reads .data once: the checked 64x64 array
    np.testing.assert_array_equal(out2.data, expected)
    assert shifty.reads == 1


# -- CSR structure --------------------------------------------------------------------------
asp_mpk = pytest.importorskip("asp_mpk")
sp = pytest.importorskip("scipy.sparse")


def _bad_csr(kind):
    A = sp.random(50, 50, density=0.1, format="csr", random_state=1) + sp.eye(50, format="csr")
    A = sp.csr_matrix(A)
    if kind == "column-too-large":
        A.indices[3] = 10_000
    elif kind == "negative-column":
        A.indices[3] = -5
    elif kind == "indptr-decreasing":
        A.indptr[10] = A.indptr[12] + 1
    elif kind == "indptr-past-end":
        A.indptr[-1] = len(A.indices) + 10
    return A


@pytest.mark.parametrize("kind", ["column-too-large", "negative-column", "indptr-decreasing",
                                  "indptr-past-end"])
def test_csr_with_broken_structure_is_a_value_error(kind):
    from asp_mpk.validate import as_csr

    with pytest.raises(ValueError, match=r"A has an invalid CSR structure"):
        as_csr(_bad_csr(kind))


@requires_compiler
def test_matrix_powers_refuses_out_of_range_column_before_c(fresh_cache):
    A = _bad_csr("column-too-large")
    x = np.ones(50)
    with pytest.raises(ValueError, match=r"A has an invalid CSR structure: column index 10000 "
                                         r"in row \d+ .*outside 0\.\.49"):
        asp_mpk.matrix_powers(A, x, 3)
