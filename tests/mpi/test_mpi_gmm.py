"""Data-parallel EM (asp_gmm.distributed) on 1, 2 and 3 ranks equals one process (rtol 1e-10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_compiler, requires_mpi

SCRIPTS = Path(__file__).parent / "scripts"


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_mpi_gmm_equal_to_one_process(nprocs):
    # with 2 ranks the diag variants are tuned in lock-step (the script checks that the ranks
    # agree); otherwise the default variant keeps the test short
    run = run_mpi(SCRIPTS / "mpi_gmm_check.py", nprocs, timeout=150,
                  args=["--tune"] if nprocs == 2 else [], env={"ASP_MODE": "strict"})
    assert run.ok, run.describe()
    assert "GMM-ALL-OK" in run.stdout, run.describe()
    lines = list(run.lines("GMM-OK"))
    assert {ln.split()[1] for ln in lines} >= {"full", "diag", "spherical", "tied",
                                               "kmeans-init"}
    # one global reduction per EM iteration
    for ln in lines:
        if "reductions=" in ln:
            assert ln.split("iters=")[1].split()[0] == ln.split("reductions=")[1].split()[0]
    if nprocs == 2:  # diag was tuned over several variants (and the ranks agreed)
        diag = next(ln for ln in lines if ln.split()[1] == "diag")
        assert int(diag.split("tuned=")[1].split()[0]) > 1, diag
    if nprocs == 3:  # an empty and a one-sample shard took part
        assert "[2999, 0, 1]" in run.stdout
