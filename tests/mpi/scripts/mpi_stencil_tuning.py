"""Run under ``mpiexec -n P`` (ASP_AUTOTUNE=always): a distributed stencil is tuned collectively.

Every rank times the variants of its own block, the ranks agree on each time (the slowest
rank's), and all of them run the same variant. Rank 0 prints ``TUNING-OK`` with the winner.
"""

from __future__ import annotations

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil import distributed as dist
from asp_stencil.distributed import DistributedStencilGrid, distribute, tuned_variant


class Heat(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            out_grid[x] = in_grid[x] * 0.4
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += 0.1 * in_grid[y]


@fatal_errors()
def main() -> None:
    comm = world()
    shape = (70, 66, 64)  # ~300k points: the stencil proposes several schedules
    data = np.random.default_rng(5).standard_normal(shape)
    kernel = Heat()
    ref_in, ref_out = StencilGrid(shape), StencilGrid(shape)
    ref_in.data[...] = data
    Heat().pure_python(ref_in, ref_out)

    src = DistributedStencilGrid.from_global(ref_in, comm)
    out = DistributedStencilGrid(like=src)
    dk = distribute(kernel)
    calls = 0
    while tuned_variant(kernel, src, out) is None and calls < 60:
        dk.kernel(src, out)
        calls += 1
    winner = tuned_variant(kernel, src, out)
    assert winner is not None, f"rank {comm.rank}: still tuning after {calls} calls"
    # what distribute returned names the same decision (it answered None for good)
    assert tuned_variant(dk, src, out) == winner
    agreed = vars(kernel)[dist._AGREED][1][dist._site(kernel, [src, out],
                                                     [src.local, out.local])]
    tuner = agreed.tuner
    assert tuner is not None and len(tuner.variants) >= 2, "nothing was tuned"
    # the same decision and the same (agreed) times on every rank, in the same number of calls
    mine = (winner, calls, sorted((v, tuple(t)) for v, t in tuner.times.items()))
    everyone = comm.allgather(mine)
    assert all(e == everyone[0] for e in everyone), everyone
    dk.kernel(src, out)  # the bound winner
    got = out.gather()
    if comm.rank == 0:
        inner = (slice(1, -1),) * 3
        assert np.allclose(got[inner], ref_out.data[inner], rtol=1e-12, atol=1e-12)
        print(f"TUNING-OK winner={winner} variants={len(tuner.variants)} calls={calls}",
              flush=True)


main()
