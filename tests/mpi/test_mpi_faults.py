"""Faults in distributed runs end every rank with a clear message; nothing hangs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_mpi

SCRIPTS = Path(__file__).parent / "scripts"
FAULTS = SCRIPTS / "mpi_faults.py"


@requires_mpi
def test_mpi_a_raising_rank_aborts_all_ranks():
    run = run_mpi(FAULTS, 2, timeout=60, args=["rank-raises"])
    assert not run.timed_out, run.describe()
    assert run.returncode != 0
    assert "asp[mpi] rank 1/2: fatal error, aborting all ranks" in run.stderr, run.describe()
    assert "boom on rank 1" in run.stderr
    assert "UNREACHABLE" not in run.stdout


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_grid_smaller_than_process_grid_fails_on_every_rank(nprocs):
    run = run_mpi(FAULTS, nprocs, timeout=60, args=["small-grid"])
    assert run.ok, run.describe()
    for r in range(nprocs):
        assert f"FAULT-OK small-grid rank {r}: the grid's interior" in run.stdout, run.describe()
    assert run.stdout.count("smaller than the process grid") == nprocs


@requires_mpi
def test_mpi_mismatched_inputs_fail_on_every_rank():
    run = run_mpi(FAULTS, 3, timeout=90, args=["mismatch"])
    assert run.ok, run.describe()
    for case, text in (("mismatch-stencil", "mismatched grid"),
                       ("mismatch-gmm", "mismatched number of features"),
                       ("nan-gmm", "rank 2: Input X contains NaN"),
                       ("mismatch-mpk", "this rank owns rows")):
        for r in range(3):
            assert f"FAULT-OK {case} rank {r}: " in run.stdout, (case, run.describe())
        lines = [ln for ln in run.lines(f"FAULT-OK {case} ")]
        assert all(text in ln for ln in lines), (case, lines)


@requires_mpi
def test_mpi_a_failing_local_em_step_stops_every_rank():
    run = run_mpi(FAULTS, 3, timeout=90, args=["em-failure"], env={"ASP_AUTOTUNE": "off"})
    assert run.ok, run.describe()
    assert "FAULT-OK em-failure rank 1: kernel crashed on rank 1" in run.stdout, run.describe()
    for r in (0, 2):
        assert (f"FAULT-OK em-failure rank {r}: the EM step failed on 1 other rank(s)"
                in run.stdout), run.describe()


@requires_mpi
def test_mpi_a_failing_local_cacg_basis_stops_every_rank():
    run = run_mpi(FAULTS, 3, timeout=90, args=["cg-failure"])
    assert run.ok, run.describe()
    assert "FAULT-OK cg-failure rank 1: local basis failed on rank 1" in run.stdout, run.describe()
    for r in (0, 2):
        assert (f"FAULT-OK cg-failure rank {r}: CA-CG failed on 1 other rank(s)"
                in run.stdout), run.describe()


@requires_mpi
def test_mpi_run_mpi_kills_a_hung_job():
    start = time.perf_counter()
    run = run_mpi(FAULTS, 2, timeout=3, args=["hang"])
    assert run.timed_out
    assert not run.ok
    assert time.perf_counter() - start < 30
