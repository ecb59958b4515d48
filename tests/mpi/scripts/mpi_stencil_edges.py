"""Run under ``mpiexec -n P`` with a case name: edge cases of the distributed stencils found by
a bug hunt. Every rank prints ``EDGE-OK <case> rank <r>`` when its case passed.

* ``thin-overlap``: ``overlap=True`` on blocks no wider than twice the ghost depth (one interior
  point per rank) equals one process bitwise (the interior-first split made an inverted
  halo-free box, and the shell ran points twice, or outside the block).
* ``many-grids``: creating thousands of grids does not run out of MPI communicators (each grid
  made a Cartesian communicator that was never freed: "Too many communicators" after ~2000).
* ``periodic``: ``from_global`` of a periodic ``StencilGrid`` raises ``ValueError`` on every rank
  (it ran as a non-periodic grid: results silently differed from one process).
* ``exchange-mixed``: ``exchange`` of grids of different decompositions raises ``ValueError`` on
  every rank (wrong halo values, or an MPI error on the message sizes).
* ``bad-dims``: a ``dims`` that is not a sequence of ints on one rank raises ``ValueError`` on
  every rank (it raised on that rank alone and the others hung), and float dims are refused
  (``int()`` truncated them).
* ``scatter``: ``scatter`` takes a ``StencilGrid`` on the root, as ``load_global`` does, and an
  array that does not convert raises on every rank (it raised on the root alone; the others
  waited for their blocks forever).
* ``overlapping-groups`` (3 ranks): one kernel swept over grids of two communicators that
  share a rank, with decompositions of the same shapes (that rank reused one group's variant
  agreement for the other and skipped the other's collective creation: a hang).
"""

from __future__ import annotations

import sys

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute, exchange


class Jac(StencilKernel):
    def __init__(self, alpha):
        self.alpha = alpha

    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] * 0.4
            for y in a.neighbors(x, 1):
                out[x] += self.alpha * a[y]


class Fig2(StencilKernel):
    """Reads its output: a point computed twice is counted twice."""

    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] = out[x] + 0.25 * a[y]


def raises(comm, case, texts, fn, kind=ValueError):
    try:
        fn()
    except kind as exc:
        missing = [t for t in texts if t not in str(exc)]
        if missing:
            raise AssertionError(f"{case}: unclear error on rank {comm.rank} (no {missing}): "
                                 f"{exc}") from exc
        return
    raise AssertionError(f"{case}: no {kind.__name__} on rank {comm.rank}")


def thin_overlap(comm):
    for kernel, g, halo_mult, steps in ((Fig2, 1, 1, 3), (Fig2, 1, 2, 5), (Jac, 2, 1, 3),
                                        (Jac, 2, 2, 4)):
        shape = (2 * g + comm.size, 5)   # one interior point per rank along the split axis
        rng = np.random.default_rng(5)
        start = [rng.standard_normal(shape) for _ in range(2)]
        ref = [StencilGrid(shape, ghost_depth=g) for _ in range(2)]
        for r, d in zip(ref, start):
            r.data[...] = d
        k = kernel(0.1) if kernel is Jac else kernel()
        k.kernel(*ref)
        one = ref[-1].data.copy()
        for r, d in zip(ref, start):
            r.data[...] = d
        many = k.iterate(*ref, steps=steps).data.copy()
        dist = [DistributedStencilGrid.from_global(d, comm, ghost_depth=g,
                                                   halo_depth=halo_mult * g, dims=(comm.size, 1))
                for d in start]
        dk = distribute(kernel(0.1) if kernel is Jac else kernel(), overlap=True)
        got = dk.kernel(*dist).allgather()
        if not np.array_equal(got, one):
            raise AssertionError(f"{kernel.__name__} g={g}: overlapped sweep differs from one "
                                 f"process at {np.argwhere(got != one).tolist()[:4]}")
        for d, s in zip(dist, start):
            d.load_global(s)
        got = dk.iterate(*dist, steps=steps).allgather()
        if not np.array_equal(got, many):
            raise AssertionError(f"{kernel.__name__} g={g} halo={halo_mult * g}: overlapped "
                                 f"iterate({steps}) differs from one process")


def many_grids(comm):
    for i in range(2200):
        g = DistributedStencilGrid((6, 5), comm, halo_depth=1 + i % 2)
        del g
    a = DistributedStencilGrid((9, 8), comm)   # and they still work
    full = np.arange(72.0).reshape(9, 8)
    a.scatter(full if comm.rank == 0 else None)
    if not np.array_equal(a.allgather(), full):
        raise AssertionError("scatter/allgather round trip differs")


def periodic(comm):
    g = StencilGrid((8, 7), periodic=True)
    raises(comm, "periodic", ["periodic", "ranks 0"],
           lambda: DistributedStencilGrid.from_global(g, comm))


def exchange_mixed(comm):
    a = DistributedStencilGrid((10, 9), comm, halo_depth=1)
    c = DistributedStencilGrid((10, 9), comm, halo_depth=2)
    for grids in ((a, c), (c, a)):
        raises(comm, "exchange-mixed", ["different decomposition", "like="],
               lambda: exchange(*grids))
    exchange(a, DistributedStencilGrid(like=a))   # one decomposition: fine


def bad_dims(comm):
    last = comm.size - 1
    raises(comm, "bad-dims", [f"rank {last}", "dims must be a sequence of ints"],
           lambda: DistributedStencilGrid((10, 9), comm,
                                          dims=("a", 1) if comm.rank == last else None))
    raises(comm, "float-dims", ["dims must be a sequence of ints"],
           lambda: DistributedStencilGrid((10, 9), comm, dims=(comm.size + 0.5, 1)))


def scatter(comm):
    a = DistributedStencilGrid((9, 8), comm)
    full = StencilGrid((9, 8))
    full.data[...] = np.arange(72.0).reshape(9, 8)
    a.scatter(full if comm.rank == 0 else None)
    if not np.array_equal(a.allgather(), full.data):
        raise AssertionError("scatter of a StencilGrid differs")
    raises(comm, "scatter", ["rank 0", "scatter"],
           lambda: a.scatter([["x"] * 8] * 9 if comm.rank == 0 else None))


def overlapping_groups(comm):
    from mpi4py import MPI

    group = comm.Get_group()
    subs = [comm.Create(group.Incl([0, 1])), comm.Create(group.Incl([1, 2]))]
    k = distribute(Jac(0.1))
    pairs = []
    for sub in subs:
        if sub != MPI.COMM_NULL:
            a = DistributedStencilGrid((10, 9), sub)
            pairs.append((a, DistributedStencilGrid(like=a)))
    for _ in range(6):   # rank 1 alternates between its two groups
        for a, b in pairs:
            k.kernel(a, b)


CASES = {"thin-overlap": thin_overlap, "many-grids": many_grids, "periodic": periodic,
         "exchange-mixed": exchange_mixed, "bad-dims": bad_dims, "scatter": scatter,
         "overlapping-groups": overlapping_groups}


def main():
    case = sys.argv[1]
    comm = world()
    with fatal_errors(comm):
        CASES[case](comm)
    print(f"EDGE-OK {case} rank {comm.rank}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
