"""Distributed stencils (asp_stencil.distributed) on 1, 2 and 3 ranks equal one process, bitwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_compiler, requires_mpi

SCRIPTS = Path(__file__).parent / "scripts"
STRICT = {"ASP_MODE": "strict", "ASP_AUTOTUNE": "off"}


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_mpi_stencil_bitwise_equal_to_one_process(nprocs):
    run = run_mpi(SCRIPTS / "mpi_stencil_check.py", nprocs, timeout=120, env=STRICT)
    assert run.ok, run.describe()
    assert "STENCIL-ALL-OK" in run.stdout, run.describe()
    cases = list(run.lines("STENCIL-OK"))
    # every kernel with a one-step and a deep halo, three of them also overlapped
    assert len(cases) >= 13, run.describe()
    assert sum("overlap=True" in c for c in cases) >= 6
    # the deep halo exchanges less often than the one-step halo
    deep = [c for c in cases if "jacobi-3d overlap=False halo=3" in c][0]
    plain = [c for c in cases if "jacobi-3d overlap=False halo=1" in c][0]
    assert int(deep.split("exchanges=")[1].split()[0]) < int(
        plain.split("exchanges=")[1].split()[0])


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_stencil_ranks_tune_together(nprocs, tmp_path):
    """Blocks of different shapes and per-rank noise: the variant is still one for all ranks,
    chosen on times agreed over the job (each rank reports the slowest rank's time)."""
    run = run_mpi(SCRIPTS / "mpi_stencil_tuning.py", nprocs, timeout=240,
                  env={"ASP_MODE": "strict", "ASP_AUTOTUNE": "always",
                       "ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    assert "TUNING-OK" in run.stdout, run.describe()


EDGE_CASES = ["thin-overlap", "many-grids", "periodic", "exchange-mixed", "bad-dims", "scatter"]


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
@pytest.mark.parametrize("case", EDGE_CASES + ["overlapping-groups"])
def test_mpi_stencil_edge_cases(case, nprocs, tmp_path):
    """Edge cases from a bug hunt (see the script's docstring): 1-wide blocks with
    overlap=True equal one process bitwise; thousands of grids do not exhaust MPI's
    communicators; a periodic grid, grids of two decompositions in one exchange, a bad dims on
    one rank and a root array that does not convert raise on every rank; a rank in two
    overlapping communicators does not hang."""
    if case == "overlapping-groups" and nprocs != 3:
        pytest.skip("two groups sharing one rank need 3 ranks")
    run = run_mpi(SCRIPTS / "mpi_stencil_edges.py", nprocs, timeout=120, args=[case],
                  env={"ASP_AUTOTUNE": "off", "ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    for r in range(nprocs):
        assert f"EDGE-OK {case} rank {r}" in run.stdout, run.describe()
