"""Acceptance: arguments ``ASP_MODE=python`` runs are run by the compiled path too (or fall back
with a warning), with the same results; arguments Python rejects are rejected alike."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_asp import requires_compiler
from asp_core import SpecializationWarning
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.differential import env
from asp_stencil.testing import assert_bitwise, assert_specialised, clone_grids


class Coefficients(StencilKernel):
    """Reads the neighbours of ``a`` from a loop over ``out``'s interior."""

    def kernel(self, a, b, out):
        for x in out.interior_points():
            out[x] = b[x]
            for y in a.neighbors(x, 1):
                out[x] += a[y] * 0.25


def _grid(shape, ghost_depth, seed):
    g = StencilGrid(shape, ghost_depth=ghost_depth)
    g.data[...] = np.random.default_rng(seed).standard_normal(shape)
    return g


def _python_and_compiled(kernel_cls, grids, steps=None):
    """``(grids after ASP_MODE=python, grids after the compiled call, the compiled kernel)``."""
    ref, test = clone_grids(grids), clone_grids(grids)
    with env(ASP_MODE="python"):
        _call(kernel_cls(), ref, steps)
    k = kernel_cls()
    _call(k, test, steps)
    return ref, test, k


def _call(kernel, grids, steps):
    if steps is None:
        kernel.kernel(*grids)
    else:
        kernel.iterate(*grids, steps=steps)


@requires_compiler
@pytest.mark.parametrize("steps", [None, 3])
def test_a_shallow_grid_read_at_neighbours_of_a_deeper_loop_grid(steps):
    """A grid of ghost depth 0 read at offset 1 from a loop over a depth-1 grid stays inside
    its array (grids have equal shapes): Python runs it, and so must compiled code (the check
    refused it with ``ValueError``, "beyond the ghost depth 0 of grid 'a'")."""
    grids = [_grid((6, 7), 0, 1), _grid((6, 7), 1, 2), _grid((6, 7), 1, 3)]
    ref, test, k = _python_and_compiled(Coefficients, grids, steps)
    assert_specialised(k)
    for i, (r, t) in enumerate(zip(ref, test)):
        assert_bitwise(r.data, t.data, what=f"grid {i + 1}")


@requires_compiler
def test_the_loop_grids_ghost_depth_still_bounds_neighbour_reads():
    """Reads past the looped grid's border would leave the arrays: still a ``ValueError``."""
    grids = [_grid((6, 7), 1, 1), _grid((6, 7), 1, 2), _grid((6, 7), 0, 3)]
    with pytest.raises(ValueError, match="beyond the ghost depth 0 of grid 'out'"):
        Coefficients().kernel(*grids)


class Laplacian(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += u[y]


@requires_compiler
@pytest.mark.parametrize("offset", [(1.5, 0), (1, 0, 0), "10"])
@pytest.mark.parametrize("steps", [None, 2])
def test_a_neighbour_id_changed_in_place_that_the_kernel_never_reads(offset, steps):
    """An id the kernel does not read, made invalid in place (the setter never saw it): Python
    never looks at it, so compiled code runs too (the whole definition was checked: a
    ``ValueError`` naming ``neighbor_definition[2][0]``)."""
    def grids():
        out = [_grid((6, 7), 1, 1), _grid((6, 7), 1, 2)]
        for g in out:
            g.neighbor_definition.append([offset])
        return out

    ref, test = grids(), grids()
    with env(ASP_MODE="python"):
        _call(Laplacian(), ref, steps)
    k = Laplacian()
    _call(k, test, steps)
    assert_specialised(k)
    for i, (r, t) in enumerate(zip(ref, test)):
        assert_bitwise(r.data, t.data, what=f"grid {i + 1}")


class FarInterior(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, 2):
                out[x] += u[y]


class FarBorder(StencilKernel):
    def kernel(self, u, out):
        for x in out.border_points():
            out[x] = 1.0
            for y in u.neighbors(x, 2):
                out[x] += u[y]


@requires_compiler
@pytest.mark.parametrize("kernel_cls, shape, depth, extra", [
    (FarInterior, (2, 7), 1, [[(2, 0), (0, -2)]]),  # no interior: offsets past the depth
    (FarInterior, (2, 7), 1, []),                    # no interior: id 2 undefined
    (FarInterior, (1, 5), 1, [[(1.5, 0)]]),          # id 2 changed in place to a bad offset
    (FarBorder, (6, 7), 0, []),                      # no border: id 2 undefined
])
def test_neighbour_checks_of_a_loop_without_points_fall_back(kernel_cls, shape, depth, extra):
    """A point loop with no points never reads its neighbours in Python, which runs the
    kernel: an undefined id, or offsets past the ghost depth, there was a ``ValueError``; it
    now runs in Python with a warning naming the problem."""
    def grids():
        out = [_grid(shape, depth, 1), _grid(shape, depth, 2)]
        for g in out:
            g.neighbor_definition.extend(list(row) for row in extra)
        return out

    ref, test = grids(), grids()
    with env(ASP_MODE="python"):
        kernel_cls().kernel(*ref)
    with pytest.warns(SpecializationWarning, match="which has no points"):
        kernel_cls().kernel(*test)
    for i, (r, t) in enumerate(zip(ref, test)):
        assert_bitwise(r.data, t.data, what=f"grid {i + 1}")


@requires_compiler
def test_an_undefined_neighbour_id_read_by_a_loop_with_points_is_still_refused():
    grids = [_grid((6, 7), 1, 1), _grid((6, 7), 1, 2)]
    with pytest.raises(ValueError, match="neighbour id 2 is not defined"):
        FarInterior().kernel(*grids)


class LastNeighbours(StencilKernel):
    nid = -1

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, self.nid):
                out[x] += u[y]


class PastTheStart(LastNeighbours):
    nid = -3  # Python's IndexError too


@requires_compiler
@pytest.mark.parametrize("steps", [None, 2])
def test_a_negative_neighbour_id_counts_from_the_end_as_in_python(steps):
    """``neighbors(x, self.nid)`` with ``nid = -1``: Python indexes the neighbour definition
    from its end; compiled code raised ``ValueError`` ("neighbour id -1 is not defined")."""
    grids = [_grid((6, 7), 1, 1), _grid((6, 7), 1, 2)]
    ref, test, k = _python_and_compiled(LastNeighbours, grids, steps)
    assert_specialised(k)
    for i, (r, t) in enumerate(zip(ref, test)):
        assert_bitwise(r.data, t.data, what=f"grid {i + 1}")
    with pytest.raises(ValueError, match="neighbour id -3 is not defined"):
        PastTheStart().kernel(*clone_grids(grids))
