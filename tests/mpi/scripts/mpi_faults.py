"""Run under ``mpiexec -n P`` with one argument naming a fault; no case may hang.

* ``rank-raises``: rank 1 raises inside ``fatal_errors`` while the others wait in a halo
  exchange; ``comm.Abort`` must end the whole job with a non-zero code.
* ``small-grid``: a grid whose interior is smaller than the process grid.
* ``mismatch``: every rank passes a different grid shape / feature count / vector length.
* ``em-failure``: the local EM step fails on rank 1 only; every rank must raise (rank 1 its
  own error) instead of waiting in the Allreduce.
* ``cg-failure``: the local basis of CA-CG fails on rank 1 only; every rank must raise.
* ``hang``: rank 1 sleeps forever (``run_mpi``'s timeout must kill the job).
The validation cases print ``FAULT-OK <case> rank <r>: <message>`` on every rank and exit 0.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from asp_core.mpi import fatal_errors, world


def expect_value_error(comm, case, fn):
    try:
        fn()
    except ValueError as exc:
        # one write per line: mpiexec interleaves the ranks' output at write boundaries
        sys.stdout.write(f"FAULT-OK {case} rank {comm.rank}: {exc}\n")
        sys.stdout.flush()
        return
    raise AssertionError(f"{case}: no ValueError on rank {comm.rank}")


def main():
    case = sys.argv[1]
    comm = world()
    if case == "rank-raises":
        from asp_stencil.distributed import DistributedStencilGrid, exchange

        with fatal_errors(comm):
            g = DistributedStencilGrid((8, 8), comm)
            if comm.rank == 1:
                raise RuntimeError("boom on rank 1")
            exchange(g)  # rank 0 waits here for rank 1's halo, which never comes
            comm.Barrier()
        print("UNREACHABLE", flush=True)
    elif case == "small-grid":
        from asp_stencil.distributed import DistributedStencilGrid

        with fatal_errors(comm):
            expect_value_error(comm, "small-grid",
                               lambda: DistributedStencilGrid((comm.size, 3), comm))
    elif case == "mismatch":
        import scipy.sparse as sp

        from asp_gmm.distributed import DistributedGaussianMixture
        from asp_mpk.distributed import cg
        from asp_stencil.distributed import DistributedStencilGrid

        with fatal_errors(comm):
            expect_value_error(comm, "mismatch-stencil",
                               lambda: DistributedStencilGrid((10 + comm.rank, 10), comm))
            X = np.random.default_rng(comm.rank).standard_normal((50, 3 + (comm.rank == 1)))
            expect_value_error(comm, "mismatch-gmm",
                               lambda: DistributedGaussianMixture(2, comm=comm).fit(X))
            Xnan = np.ones((20, 2))
            if comm.rank == comm.size - 1:
                Xnan[3, 1] = np.nan
            expect_value_error(comm, "nan-gmm",
                               lambda: DistributedGaussianMixture(2, comm=comm).fit(Xnan))
            A = sp.identity(12, format="csr") * 2.0
            from asp_mpk.distributed import partition_rows

            lo, hi = partition_rows(12, comm.size)[comm.rank:comm.rank + 2]
            b = np.ones(hi - lo + (1 if comm.rank == 0 else 0))
            expect_value_error(comm, "mismatch-mpk", lambda: cg(A, b, comm=comm))
    elif case == "em-failure":
        from asp_gmm import distributed

        if comm.rank == 1:
            built = distributed.DistributedEM._fn

            def broken(self, name):
                built(self, name)   # collective: every rank builds the variant
                def fail(*args):
                    raise RuntimeError("kernel crashed on rank 1")
                return fail
            distributed.DistributedEM._fn = broken
        X = np.random.default_rng(comm.rank).standard_normal((100, 2))
        with fatal_errors(comm):
            try:
                distributed.DistributedGaussianMixture(
                    2, comm=comm, max_iter=3, covariance_type="diag", weights_init=[0.5, 0.5],
                    means_init=[[-1.0, 0.0], [1.0, 0.0]], precisions_init=np.ones((2, 2))
                ).fit(X)
            except RuntimeError as exc:
                sys.stdout.write(f"FAULT-OK em-failure rank {comm.rank}: {exc}\n")
                sys.stdout.flush()
            else:
                raise AssertionError(f"no error on rank {comm.rank}")
    elif case == "cg-failure":
        import scipy.sparse as sp

        from asp_mpk import distributed

        if comm.rank == 1:  # the local kernel (after the exchange) fails on rank 1 only
            from asp_mpk.powers import MatrixPowers

            def broken(self, *args, **kwargs):
                raise RuntimeError("local basis failed on rank 1")
            MatrixPowers._reference = broken   # the SciPy platform's only variant
        A = (sp.identity(40, format="csr") * 4.0 + sp.eye(40, k=1) + sp.eye(40, k=-1)).tocsr()
        lo, hi = distributed.partition_rows(40, comm.size)[comm.rank:comm.rank + 2]
        with fatal_errors(comm):
            try:
                distributed.cg(A, np.ones(hi - lo), comm=comm, s=3,
                               options={"platform_selection": "scipy"})
            except RuntimeError as exc:
                sys.stdout.write(f"FAULT-OK cg-failure rank {comm.rank}: {exc}\n")
                sys.stdout.flush()
            else:
                raise AssertionError(f"no error on rank {comm.rank}")
    elif case == "hang":
        if comm.rank == 1:
            time.sleep(3600)
        comm.Barrier()
    else:
        raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
