"""Run under ``mpiexec -n P``: distributed stencils equal the single-process kernel, bitwise.

Every rank builds the same random global grids (same seed), runs the kernel on them alone as
the reference, then runs the same kernel class on the decomposed grids (plain sweep, the
overlapped variant, iterate with an exchange every step and every few steps with a deeper halo)
and compares the gathered result bit for bit. Rank 0 prints one ``STENCIL-OK`` line per case.
"""

from __future__ import annotations

import sys

import numpy as np

from asp_core.mpi import CommStats, fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute, exchange


class Figure2Kernel(StencilKernel):
    """The paper's Figure 2: reads its output."""

    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] = out_grid[x] + in_grid[y]


class FarKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = 0.5 * a[x]
            for y in a.neighbors(x, 2):
                out[x] += 0.1 * a[y]


class JacobiKernel(StencilKernel):
    """Heat-equation step; does not read its output."""

    def __init__(self, alpha, dim):
        self.alpha = alpha
        self.centre = 1.0 - 2.0 * dim * alpha

    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            out_grid[x] = in_grid[x] * self.centre
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += self.alpha * in_grid[y]


class MooreKernel(StencilKernel):
    """Nine-point average (corners need the diagonal neighbours' data) with a coefficient grid."""

    def kernel(self, coef, in_grid, out_grid):
        for x in out_grid.interior_points():
            acc = 0.0
            for y in in_grid.neighbors(x, 2):
                acc = acc + in_grid[y]
            out_grid[x] = coef[x] * acc / 9.0


class WideKernel(StencilKernel):
    """Reach 2 along the first axis (ghost_depth 2)."""

    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 2):
                out_grid[x] = out_grid[x] + 0.25 * in_grid[y] - 0.125 * in_grid[x]


def grids(shape, n, seed, ghost_depth=1, neighbor=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = StencilGrid(shape, ghost_depth=ghost_depth)
        g.data[...] = rng.standard_normal(shape)
        if neighbor is not None:
            g.neighbor_definition = neighbor(g)
        out.append(g)
    return out


def moore(g):
    offs = [tuple(o) for o in np.ndindex(*(3,) * g.dim)]
    return g.neighbor_definition[:2] + [[tuple(int(v) - 1 for v in o) for o in offs]]


def wide(g):
    zero = (0,) * g.dim
    return g.neighbor_definition[:2] + [[(2,) + zero[1:], (-2,) + zero[1:], (1,) + zero[1:]]]


def same(a, b, what, comm):
    if comm.rank == 0:
        if a.shape != b.shape or not np.array_equal(a.view(np.uint64), b.view(np.uint64)):
            bad = np.argwhere(a != b)
            raise AssertionError(f"{what}: distributed result differs from the single-process "
                                 f"one at {len(bad)} points, first {bad[:3].tolist()}")


def case(comm, name, kernel, shape, n_inputs, *, ghost_depth=1, neighbor=None, steps=5,
         halo_factor=3, dims=None, overlaps=(False, True)):
    ref = grids(shape, n_inputs + 1, 17, ghost_depth, neighbor)
    start = [g.data.copy() for g in ref]
    # single process: one sweep, then iterate
    kernel.kernel(*ref)
    one = ref[-1].data.copy()
    for g, d in zip(ref, start):
        g.data[...] = d
    last = kernel.iterate(*ref, steps=steps)
    many = last.data.copy()

    for overlap in overlaps:  # every sub-block shape compiles: keep the overlap cases few
        for halo_mult, every in ((1, 1), (halo_factor, None)):
            dk = distribute(kernel, overlap=overlap)
            dg = [DistributedStencilGrid.from_global(
                      _fresh(shape, d, ghost_depth, neighbor), comm,
                      halo_depth=halo_mult * ghost_depth, dims=dims) for d in start]
            dk.kernel(*dg)
            same(dg[-1].gather(), one, f"{name} sweep overlap={overlap} halo={halo_mult}", comm)
            for g, d in zip(dg, start):
                g.load_global(d)
            res = dk.iterate(*dg, steps=steps, exchange_every=every)
            got = res.gather()
            same(got, many, f"{name} iterate({steps}) overlap={overlap} halo={halo_mult}",
                 comm)
            if comm.rank == 0:
                print(f"STENCIL-OK {name} overlap={overlap} halo={halo_mult * ghost_depth} "
                      f"exchanges={dk.stats.exchanges} messages={dk.stats.messages}", flush=True)


def _fresh(shape, data, ghost_depth, neighbor):
    g = StencilGrid(shape, ghost_depth=ghost_depth)
    g.data[...] = data
    if neighbor is not None:
        g.neighbor_definition = neighbor(g)
    return g


def helpers(comm):
    """scatter/gather round trip and exchange on an uneven 2-D split."""
    shape = (9, 14)
    a = DistributedStencilGrid(shape, comm, halo_depth=2)
    full = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    a.scatter(full if comm.rank == 0 else None)
    a.local.data[...] = -1.0
    a.owned[...] = full[a.owned_slices]
    stats = CommStats()
    exchange(a, stats=stats)
    want = full[tuple(slice(lo, hi) for lo, hi in a.stored_box)]
    if not np.array_equal(a.local.data, want):
        raise AssertionError(f"rank {comm.rank}: halo after exchange differs")
    back = a.allgather()
    if not np.array_equal(back, full):
        raise AssertionError("allgather round trip differs")
    g = a.to_stencil_grid(root=0)
    if comm.rank == 0:
        if not (isinstance(g, StencilGrid) and np.array_equal(g.data, full)
                and g.ghost_depth == a.ghost_depth):
            raise AssertionError("to_stencil_grid differs from the global grid")
    elif g is not None:
        raise AssertionError("to_stencil_grid returned a grid off the root")
    # halo partners: never this rank, each pair both ways, everyone's on a split grid
    partners = comm.allgather(a.neighbor_ranks())
    for p, qs in enumerate(partners):
        if p in qs or any(p not in partners[q] for q in qs):
            raise AssertionError(f"halo partners are not symmetric: {partners}")
    if comm.size > 1 and not all(partners):
        raise AssertionError(f"a rank without halo partners: {partners}")
    # bad input: mixed dtypes, aliased output, a kernel over border points
    c = DistributedStencilGrid(like=a, dtype=np.float32)
    assert DistributedStencilGrid(like=c).dtype == np.float32
    for grids, err in (((a, c), TypeError), ((a, a), ValueError)):
        try:
            distribute(Figure2Kernel()).kernel(*grids)
        except err:
            pass
        else:
            raise AssertionError(f"no {err.__name__} for bad grids")
    # a neighbourhood reaching past the ghost depth raises on every rank, as in one process
    # (it ran the Python fallback, which wrapped the index: results changed with the ranks)
    far = [list(ids) for ids in a.local.neighbor_definition[:2]] + [[(-2, 0)]]
    d = DistributedStencilGrid(like=a)
    a.neighbor_definition, d.neighbor_definition = far, far
    try:
        distribute(FarKernel()).kernel(a, d)
    except ValueError as exc:
        if "beyond the ghost depth" not in str(exc):
            raise
    else:
        raise AssertionError("no ValueError for a neighbourhood beyond the ghost depth")
    # steps that differ between ranks (one would wait in an exchange the others never start)
    for steps in (2 + comm.rank, -1 if comm.rank else 2):
        try:
            distribute(Figure2Kernel()).iterate(a, DistributedStencilGrid(like=a), steps=steps)
        except ValueError as exc:
            if comm.size > 1 and "mismatched steps" not in str(exc):
                raise
        else:
            if comm.size > 1:
                raise AssertionError(f"no ValueError for steps {steps} differing between ranks")
    # a root that is not a rank (MPI takes -1 as "no process": nothing was sent)
    for root in (-1, comm.size):
        try:
            a.scatter(full if comm.rank == 0 else None, root=root)
        except ValueError as exc:
            if "root must be a rank" not in str(exc):
                raise
        else:
            raise AssertionError(f"no ValueError for scatter(root={root})")
    if comm.rank == 0:
        print(f"STENCIL-OK helpers messages={stats.messages}", flush=True)


def main():
    comm = world()
    with fatal_errors(comm):
        helpers(comm)
        case(comm, "figure2-2d", Figure2Kernel(), (11, 13), 1)
        case(comm, "jacobi-3d", JacobiKernel(0.1, 3), (9, 8, 7), 1, steps=7, overlaps=(False,))
        case(comm, "moore-2d", MooreKernel(), (12, 10), 2, neighbor=moore, steps=4)
        case(comm, "wide-2d", WideKernel(), (16, 7), 1, ghost_depth=2, neighbor=wide, steps=4,
             halo_factor=2)
        if comm.size > 1:  # one interior point per rank: blocks much thinner than the halo
            case(comm, "jacobi-1d-thin", JacobiKernel(0.2, 1), (2 + comm.size,), 1, steps=6,
                 halo_factor=3, overlaps=(False,))
    if comm.rank == 0:
        print("STENCIL-ALL-OK", flush=True)


if __name__ == "__main__":
    sys.exit(main())
