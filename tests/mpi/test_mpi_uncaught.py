"""An uncaught exception on one rank, with no ``fatal_errors`` guard, aborts every rank
(issue 14): Asp's MPI runners install an excepthook that calls ``comm.Abort``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_mpi

SCRIPT = Path(__file__).parent / "scripts" / "mpi_uncaught.py"


@requires_mpi
@pytest.mark.parametrize("case", ["world", "stencil", "mpk", "mpk-self-first", "gmm"])
def test_unguarded_failing_rank_aborts_all_ranks(case):
    run = run_mpi(SCRIPT, 2, timeout=90, args=[case], env={"ASP_AUTOTUNE": "off"})
    assert not run.timed_out, run.describe()
    assert run.returncode != 0
    assert "unguarded failure on rank 1" in run.stderr, run.describe()
    assert "asp[mpi] rank 1/2: uncaught RuntimeError, aborting all ranks" in run.stderr
    assert "UNREACHABLE" not in run.stdout


@requires_mpi
def test_an_interrupt_of_one_rank_aborts_all_ranks():
    """A KeyboardInterrupt on one rank (``kill -INT`` of one process) was let through: that
    rank waited in MPI_Finalize and the others in the next collective, for good."""
    run = run_mpi(SCRIPT, 2, timeout=90, args=["world", "interrupt"])
    assert not run.timed_out, run.describe()
    assert run.returncode != 0
    assert "rank 1/2: uncaught KeyboardInterrupt, aborting all ranks" in run.stderr
    assert "UNREACHABLE" not in run.stdout


@requires_mpi
@pytest.mark.slow
def test_abort_can_be_turned_off():
    run = run_mpi(SCRIPT, 2, timeout=15, args=["world"], env={"ASP_MPI_ABORT_ON_ERROR": "0"})
    assert run.timed_out  # Python's default: rank 0 waits in the barrier forever
    assert "aborting all ranks" not in run.stderr
