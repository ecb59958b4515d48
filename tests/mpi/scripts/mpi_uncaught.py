"""Run under ``mpiexec -n 2``: rank 1 raises with NO ``fatal_errors`` guard while rank 0 waits
in a collective. Asp's MPI runners install an excepthook that aborts every rank, so the job
ends within seconds instead of hanging (issue 14).

Cases: ``stencil`` (a DistributedStencilGrid was built), ``mpk`` (a distributed matrix;
``mpk-self-first``: one on ``COMM_SELF`` before it),
``gmm`` (a DistributedGaussianMixture fit), ``world`` (only ``asp_core.mpi.world()``).
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    case = sys.argv[1]
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if case == "stencil":
        from asp_stencil.distributed import DistributedStencilGrid

        DistributedStencilGrid((8, 8), comm)
    elif case in ("mpk", "mpk-self-first"):
        import scipy.sparse as sp

        from asp_mpk.distributed import DistributedMatrix

        if case == "mpk-self-first":   # a per-rank object first: the world run is still guarded
            DistributedMatrix(sp.eye(8, format="csr"), MPI.COMM_SELF)
        DistributedMatrix(sp.eye(8, format="csr"), comm)
    elif case == "gmm":
        from asp_gmm.distributed import DistributedGaussianMixture

        rng = np.random.default_rng(comm.rank)
        DistributedGaussianMixture(2, max_iter=2, comm=comm).fit(rng.normal(size=(50, 2)))
    else:
        from asp_core.mpi import world

        world()
    if comm.rank == 1:
        if sys.argv[2:] == ["interrupt"]:   # a Ctrl-C reaching this rank alone
            print("unguarded failure on rank 1", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        raise RuntimeError("unguarded failure on rank 1")
    comm.Barrier()  # rank 0 waits here for rank 1 forever without the hook
    print("UNREACHABLE", flush=True)


if __name__ == "__main__":
    main()
