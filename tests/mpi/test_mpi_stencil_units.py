"""Pure parts of asp_stencil.distributed (no mpiexec): decomposition, exchange plans, shells,
and the kernel checks that decide what travels."""

from __future__ import annotations

import ast
import functools
import itertools

import numpy as np
import pytest

from asp_stencil import StencilKernel
from asp_stencil.distributed import (Decomposition, _exchange_plan, _reads_output, _shell_boxes,
                                     check_kernel)


def _points(box):
    return set(itertools.product(*(range(lo, hi) for lo, hi in box)))


@pytest.mark.parametrize("shape,dims,g,halo", [((11, 13), (2, 1), 1, 1), ((11, 13), (3, 1), 1, 3),
                                               ((9, 8, 7), (1, 3, 1), 1, 2),
                                               ((16, 7), (3, 1), 2, 4), ((8,), (3,), 1, 3)])
def test_mpi_decomposition_tiles_the_grid(shape, dims, g, halo):
    dec = Decomposition.build(shape, g, halo, dims)
    seen = np.zeros(shape, dtype=int)
    for box in dec.owned:
        seen[tuple(slice(lo, hi) for lo, hi in box)] += 1
    assert np.all(seen == 1)  # every point, border included, has exactly one owner
    interior = _points(tuple((g, n - g) for n in shape))
    computed = set()
    for r in range(len(dec.owned)):
        cb = dec.compute_box(r)
        assert _points(cb) <= interior  # never writes the grid's border
        own_inner = _points(dec.owned[r]) & interior
        assert own_inner <= _points(cb)  # computes all its own interior points
        computed |= own_inner
        # the halo-free box reads only owned data
        hf = dec.halo_free_box(r)
        for p in _points(hf):
            for off in itertools.product(range(-g, g + 1), repeat=len(shape)):
                q = tuple(a + b for a, b in zip(p, off))
                assert q in _points(dec.owned[r])
    assert computed == interior


@pytest.mark.parametrize("shape,dims,halo", [((11, 13), (3, 2), 2), ((6, 30), (1, 4), 5)])
def test_mpi_exchange_plans_match_and_fill_the_halo(shape, dims, halo):
    dec = Decomposition.build(shape, 1, halo, dims)
    plans = [_exchange_plan(dec, r) for r in range(len(dec.owned))]
    for r, plan in enumerate(plans):
        for q, box in plan.recv:  # what r receives from q is exactly what q sends to r
            assert (r, box) in [(peer, b) for peer, b in plans[q].send]
        got = _points(dec.owned[r]).union(*(_points(b) for _, b in plan.recv))
        assert got == _points(dec.stored[r])  # halo fully covered, corners included


def test_mpi_shell_boxes_partition_the_difference():
    outer = ((0, 10), (2, 9), (1, 5))
    inner = ((3, 7), (4, 9), (2, 3))
    boxes = _shell_boxes(outer, inner)
    pts = [_points(b) for b in boxes]
    assert sum(len(p) for p in pts) == len(set().union(*pts))  # disjoint
    assert set().union(*pts) == _points(outer) - _points(inner)


@pytest.mark.parametrize("shape,dims,g,halo", [((7,), (3,), 2, 2), ((5,), (3,), 1, 1),
                                               ((6, 5), (3, 1), 1, 2), ((8, 9), (2, 2), 2, 4),
                                               ((13, 6), (2, 1), 3, 3)])
def test_mpi_overlap_split_of_thin_blocks_covers_each_point_once(shape, dims, g, halo):
    """Blocks no wider than 2 * ghost_depth have no halo-free point: the halo-free box is
    empty INSIDE the compute box, and the shell is the compute box, once (an inverted box made
    the shell run points twice, or points of another rank's block)."""
    dec = Decomposition.build(shape, g, halo, dims)
    for r in range(len(dec.owned)):
        cb, hf = dec.compute_box(r), dec.halo_free_box(r)
        assert _points(hf) <= _points(cb)
        assert all(lo <= hi for lo, hi in hf)
        shell = [_points(b) for b in _shell_boxes(cb, hf)]
        assert sum(len(p) for p in shell) + len(_points(hf)) == len(_points(cb))
        assert set().union(_points(hf), *shell) == _points(cb)


@pytest.mark.parametrize("body,reads", [
    ("for x in out.interior_points():\n  for y in a.neighbors(x, 1):\n"
     "   out[x] = out[x] + a[y]", True),                      # Figure 2
    ("for x in out.interior_points():\n  out[x] = 2 * a[x]\n  for y in a.neighbors(x, 1):\n"
     "   out[x] += a[y]", False),                              # written before it is read
    ("for x in out.interior_points():\n  out[x] += a[x]", True),
    ("for x in out.interior_points():\n  out[x] = a[x]\n  for y in a.neighbors(x, 1):\n"
     "   out[x] += out[y]", True),                             # reads a neighbour's output
    ("for x in out.interior_points():\n  out[x] = out[x] * a[x]", True),
    # written at some points only: the others keep their old values (with a deep halo, stale
    # ones fed the steps between exchanges)
    ("for x in out.interior_points():\n  if a[x] > 0.0:\n   out[x] = 0.3 * a[x]", True),
])
def test_mpi_output_read_analysis(body, reads):
    fn = ast.parse("def kernel(self, a, out):\n " + body.replace("\n", "\n ")).body[0]
    assert _reads_output(fn, "out") is reads


class _BorderKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.border_points():
            out[x] = a[x]


def test_mpi_border_point_kernels_are_refused():
    with pytest.raises(ValueError, match="border_points"):
        check_kernel(_BorderKernel())


class _DocAtColumnZero(StencilKernel):
    def kernel(self, a, out):
        """A docstring whose second line starts at column 0:
it defeats textwrap.dedent (the one-process frontend reads it)."""
        for x in out.border_points():
            out[x] = a[x]


class _Lambda(StencilKernel):
    kernel = lambda self, a, out: None  # noqa: E731


def _logged(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)
    return wrapper


class _DecoratedBorder(StencilKernel):
    @_logged
    def kernel(self, a, out):
        for x in out.border_points():
            out[x] = a[x]


def test_mpi_kernel_checks_read_a_decorated_kernels_function():
    """The checks read the source through kernel_source, which refuses a decorator's wrapper:
    a decorated border_points or Gauss-Seidel kernel then ran on blocks, giving results
    that differ from one process, where reading the wrapped function refuses it."""
    with pytest.raises(ValueError, match="border_points"):
        check_kernel(_DecoratedBorder())


def test_mpi_kernel_checks_read_the_source_as_the_frontend_does():
    """check_kernel parsed the source itself: a docstring at column 0 raised IndentationError
    and a lambda kernel a bare StopIteration, where one process specialises the first and
    falls back with a warning for the second."""
    with pytest.raises(ValueError, match="border_points"):   # read, so checked
        check_kernel(_DocAtColumnZero())
    assert check_kernel(_Lambda()) is True   # no source: assumed to read its output


class _GaussSeidel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x]
            for y in out.neighbors(x, 1):
                out[x] += 0.1 * out[y]


class _InPlace(StencilKernel):
    def kernel(self, u):
        for x in u.interior_points():
            for y in u.neighbors(x, 1):
                u[x] = 0.5 * (u[x] + u[y])


@pytest.mark.parametrize("kernel,grid", [(_GaussSeidel, "out"), (_InPlace, "u")])
def test_mpi_gauss_seidel_kernels_are_refused(kernel, grid):
    """A kernel reading a grid it writes at another point depends on the order of the points:
    the distributed run gave other results than one process, without an error. Decided on the
    kernel's domain IR for the grids of the call: a neighbour loop over the point itself
    (``neighbors(x, 0)`` of the default definition) reads no other point."""
    from asp_stencil import StencilGrid
    from asp_stencil.signature import stencil_signature

    grids = [StencilGrid([6, 5]) for _ in range(2 if kernel is _GaussSeidel else 1)]
    k = kernel()
    assert check_kernel(k) is True   # the source alone only makes it a suspect
    with pytest.raises(ValueError, match=f"reads grid '{grid}', which it writes, at another "
                                         "point than x .*Gauss-Seidel"):
        check_kernel(k, grids, stencil_signature(tuple(grids), {}, k))


class _CentreOnly(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in out.neighbors(x, 0):
                out[x] = out[y] + a[x]


def test_mpi_a_neighbour_loop_over_the_point_itself_is_no_gauss_seidel():
    from asp_stencil import StencilGrid
    from asp_stencil.signature import stencil_signature

    grids = [StencilGrid([6, 5]) for _ in range(2)]
    k = _CentreOnly()
    assert check_kernel(k, grids, stencil_signature(tuple(grids), {}, k)) is True


class _TwoLoops(StencilKernel):
    def kernel(self, a, t, out):
        for x in out.interior_points():
            t[x] = 2.0 * a[x]
        for x in out.interior_points():
            out[x] = 0.0
            for y in t.neighbors(x, 1):
                out[x] += t[y]


class _TwoLoopsAtThePoint(StencilKernel):
    def kernel(self, a, t, out):
        for x in out.interior_points():
            t[x] = 2.0 * a[x]
        for x in out.interior_points():
            out[x] = t[x]
            for y in a.neighbors(x, 1):
                out[x] += a[y]


def test_mpi_a_grid_an_earlier_loop_wrote_read_at_neighbours_is_refused():
    """Halos travel once a sweep, before it: a later point loop reading, at neighbours, a grid
    an earlier loop wrote read stale halo values (results differed from one process, without
    a word). Read at the point itself, the grid needs no halo."""
    from asp_stencil import StencilGrid
    from asp_stencil.signature import stencil_signature

    grids = [StencilGrid([6, 5]) for _ in range(3)]
    k = _TwoLoops()
    with pytest.raises(ValueError, match=r"reads grid 't' at another point than x \(line \d+\) "
                                         r"after an earlier point loop wrote it"):
        check_kernel(k, grids, stencil_signature(tuple(grids), {}, k))
    k = _TwoLoopsAtThePoint()
    assert check_kernel(k, grids, stencil_signature(tuple(grids), {}, k)) is False


class _Ramp(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] * x[0]


class _Width(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] / out.shape[0]


class _Scatter(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[y] = a[x]


@pytest.mark.parametrize("kernel,what", [(_Ramp, r"uses the position of point x \(x\[0\]\)"),
                                         (_Width, r"reads out\.shape"),
                                         (_Scatter, "writes grid 'out' at another point than x")])
def test_mpi_kernels_that_see_a_rank_s_block_are_refused(kernel, what):
    """Kernels outside the DSL run in Python on each rank's block, whose positions, shape and
    edges are local: ``out[x] = a[x] * x[0]`` gave ``[0 1 2 3 4 1 2 3 4 0]`` on two ranks
    where one process gives ``[0 1 ... 8 0]``."""
    with pytest.raises(ValueError, match=what + r" \(line \d+\): each rank runs it on its own "
                                                r"block"):
        check_kernel(kernel())
