"""asp_core.mpi.HaloExchange under mpiexec on 1, 2 and 3 ranks (self, one peer, a ring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_mpi

SCRIPTS = Path(__file__).parent / "scripts"


@requires_mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_mpi_halo_exchange_boxes_and_index_arrays(nprocs):
    run = run_mpi(SCRIPTS / "mpi_halo_check.py", nprocs, timeout=60)
    assert run.ok, run.describe()
    # every rank: 6 box messages of 2 rows x 5 doubles, 1 index message
    assert f"HALO-ALL-OK ranks={nprocs} counts=[(6, 480, 1)]" in run.stdout, run.describe()
