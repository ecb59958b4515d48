"""Inputs that differ across ranks raise the same clear error on every rank instead of hanging
or crashing inside MPI, and ``asp explain`` of a script that raises on one rank ends the job."""

from __future__ import annotations

import textwrap

import pytest

from pytest_asp import requires_compiler, requires_mpi
from pytest_asp.mpi import run_mpi

MISMATCH = """
import sys

import numpy as np
import scipy.sparse as sp

from asp_core.mpi import fatal_errors, world
from asp_mpk.distributed import DistributedMatrix, DistributedMatrixPowers, cg, partition_rows
from asp_stencil.distributed import DistributedStencilGrid

SCIPY = {"platform_selection": "scipy"}
comm = world()
odd = comm.rank == 1   # the one rank that passes something else


def expect(case, text, fn):
    try:
        fn()
    except ValueError as exc:
        if text not in str(exc):
            raise AssertionError(f"{case}: unclear error on rank {comm.rank}: {exc}")
        sys.stdout.write(f"RAISED-OK {case} rank {comm.rank}\\n")
        sys.stdout.flush()
        return
    raise AssertionError(f"{case}: no ValueError on rank {comm.rank}")


def mpk():
    A = (sp.identity(40, format="csr") * 4.0 + sp.eye(40, k=1) + sp.eye(40, k=-1)).tocsr()
    lo, hi = partition_rows(40, comm.size)[comm.rank:comm.rank + 2]
    return A, np.ones(hi - lo), DistributedMatrix(A, comm, depth=4)


with fatal_errors(comm):
    case = sys.argv[1]
    if case == "like-dtype":
        # a grid made with like= and another dtype on one rank: its exchanges sent messages of
        # another size (MPI aborted with an internal unpack/truncation error)
        a = DistributedStencilGrid((10, 9), comm)
        expect(case, "mismatched dtype",
               lambda: DistributedStencilGrid(like=a, dtype=np.float32 if odd else None))
    elif case == "powers-k":
        # k = 0 and k = 1 make the same ghost depth: the k = 1 ranks waited in the kernel's
        # agreement for ranks that had returned
        A, b, M = mpk()
        expect(case, "mismatched k", lambda: DistributedMatrixPowers(
            A, 1 if odd else 0, comm, options=SCIPY).powers(b))
    elif case == "powers-bad-k":
        # a bad k on one rank only raised there, the others waited in the matrix's set-up
        A, b, M = mpk()
        expect(case, "mismatched k",
               lambda: DistributedMatrixPowers(A, -1 if odd else 2, comm, options=SCIPY))
    elif case == "on-matrix-k":
        A, b, M = mpk()
        expect(case, "mismatched k",
               lambda: DistributedMatrixPowers.on_matrix(M, 3 if odd else 2, SCIPY).powers(b))
    elif case == "cg-s":
        # a matrix deep enough for both s: the Gram reductions had other sizes (MPI aborted)
        A, b, M = mpk()
        expect(case, "mismatched s", lambda: cg(M, b, comm=comm, s=3 if odd else 2,
                                                options=SCIPY))
    elif case == "cg-bad-s":
        A, b, M = mpk()
        expect(case, "mismatched s", lambda: cg(A, b, comm=comm, s=0 if odd else 2))
    elif case == "cg-x0":
        # x0 on some ranks only: they checked it collectively, the others went on (a hang)
        A, b, M = mpk()
        expect(case, "x0 (given or None)",
               lambda: cg(A, b, np.zeros(len(b)) if odd else None, comm=comm, s=2,
                          options=SCIPY))
    comm.Barrier()
    if case != "like-dtype":   # and the objects still work on every rank after all that
        A, b, M = mpk()
        x, info, _ = cg(M, b, comm=comm, s=2, options=SCIPY)
        assert info == 0
    print(f"RANK-DONE rank {comm.rank}", flush=True)
"""

CASES = ("like-dtype", "powers-k", "powers-bad-k", "on-matrix-k", "cg-s", "cg-bad-s", "cg-x0")


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
@pytest.mark.parametrize("case", CASES)
def test_mpi_inputs_differing_on_one_rank_raise_on_every_rank(case, nprocs, tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH)
    run = run_mpi(script, nprocs, timeout=60, args=[case],
                  env={"ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "off"})
    assert run.ok, run.describe()
    for r in range(nprocs):
        assert f"RAISED-OK {case} rank {r}" in run.stdout, run.describe()
    assert run.stdout.count("RANK-DONE") == nprocs, run.describe()


EXPLAIN_RAISES = textwrap.dedent("""
    from asp_stencil.bench import Heat
    from asp_stencil.distributed import DistributedStencilGrid, distribute
    from asp_core.mpi import world

    comm = world()
    a = DistributedStencilGrid((10, 10), comm)
    b = DistributedStencilGrid(like=a)
    k = distribute(Heat())
    k.kernel(a, b)
    if comm.rank == 1:
        raise RuntimeError("boom on rank 1")
    k.kernel(a, b)   # rank 0 waits here for rank 1's halo
    print("UNREACHABLE", flush=True)
""")


@requires_mpi
@requires_compiler
def test_mpi_explain_of_a_script_raising_on_one_rank_ends_every_rank(tmp_path):
    """``python SCRIPT`` aborts every rank (abort_on_uncaught); ``asp explain SCRIPT`` caught
    the exception to show the kernels and then waited in the gather of the reports while the
    other rank waited in the script's halo exchange: a hang."""
    script = tmp_path / "raises.py"
    script.write_text(EXPLAIN_RAISES)
    run = run_mpi("asp_core.cli", 2, timeout=120, module=True, args=["explain", str(script)],
                  env={"ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "off"})
    assert not run.timed_out, run.describe()
    assert run.returncode != 0, run.describe()
    assert "boom on rank 1" in run.stderr, run.describe()
    assert "asp[mpi] rank 1/2: uncaught RuntimeError, aborting all ranks" in run.stderr
    assert "##### rank 1 of 2" in run.stderr   # the raising rank's reports, before the abort
    assert "UNREACHABLE" not in run.stdout
