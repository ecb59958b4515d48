"""A grid argument that is not a distributed grid on one rank only raises a clear error on
every rank instead of hanging the job: ``DistributedStencilGrid(like=...)`` (the odd rank
raised its TypeError alone while the others waited in the creation's agreement forever),
``from_global`` of a grid that does not convert (the same), and the kernel calls, whose
agreement already took such a rank in.

The errors are caught, as a script that handles them would: the abort-on-uncaught hook ends a
job whose error is not caught, but a caught one on one rank left the others hanging.
"""

from __future__ import annotations

from pytest_asp import requires_mpi
from pytest_asp.mpi import assert_every_rank_prints

LIKE = """
import sys

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute, exchange

comm = world()
odd = comm.rank == comm.size - 1   # the one rank that passes something else
SHAPE = (10, 9)


class Copy(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x]


def expect(case, kind, texts, fn):
    try:
        fn()
    except Exception as exc:
        missing = [t for t in texts if t not in str(exc)]
        if type(exc) is not kind or missing:
            raise AssertionError(f"{case}: unclear error on rank {comm.rank} (want "
                                 f"{kind.__name__} naming {missing}): {exc!r}")
        print(f"RAISED-OK {case} rank {comm.rank}", flush=True)
        return
    raise AssertionError(f"{case}: no error on rank {comm.rank}")


with fatal_errors(comm):
    a = DistributedStencilGrid(SHAPE, comm)
    last = f"rank {comm.size - 1}"
    for case, other in (("array", np.zeros(SHAPE)), ("stencil-grid", StencilGrid(SHAPE))):
        name = type(other).__name__
        # the odd rank's own message needs no rank; the others must learn which one it was
        expect(case, TypeError, ["like= must be a DistributedStencilGrid", name]
               + ([] if odd else [last]),
               lambda: DistributedStencilGrid(like=other if odd else a))
    # like= on some ranks only: each form waited in its own collective
    expect("like-none", ValueError, ["mismatched like=", last],
           lambda: DistributedStencilGrid(SHAPE, comm, like=None if odd else a))
    expect("from-global", ValueError, ["does not convert to an array", last],
           lambda: DistributedStencilGrid.from_global(
               [[1.0, 2.0], [3.0]] if odd else np.zeros(SHAPE), comm))
    b = DistributedStencilGrid(like=a)
    expect("sweep-plain", TypeError, ["is a StencilGrid", last],
           lambda: distribute(Copy()).kernel(
               *((StencilGrid(SHAPE), StencilGrid(SHAPE)) if odd else (a, b))))
    # and the grids still work on every rank afterwards (the grid numbers still agree)
    b = DistributedStencilGrid(like=a)
    full = np.arange(float(np.prod(SHAPE))).reshape(SHAPE)
    b.scatter(full if comm.rank == 0 else None)
    exchange(b)
    if not np.array_equal(b.allgather(), full):
        raise AssertionError("the grid made after the errors differs")
    print(f"ALL-OK rank {comm.rank}", flush=True)
"""

CASES = ("array", "stencil-grid", "like-none", "from-global", "sweep-plain")


@requires_mpi
def test_mpi_like_not_a_distributed_grid_on_one_rank_raises_on_every_rank(tmp_path):
    run = assert_every_rank_prints(LIKE, "ALL-OK", 2, tmp_path, timeout=60)
    for case in CASES:
        for r in range(2):
            assert f"RAISED-OK {case} rank {r}" in run.stdout, run.describe()
