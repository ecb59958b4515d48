"""Distributed matrix powers and CA-CG (asp_mpk.distributed) on 1, 2 and 3 ranks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_asp.mpi import run_mpi
from pytest_asp import requires_compiler, requires_mpi

SCRIPTS = Path(__file__).parent / "scripts"


def _field(line: str, name: str) -> str:
    return line.split(f"{name}=")[1].split()[0]


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_mpi_mpk_equal_to_one_process(nprocs):
    run = run_mpi(SCRIPTS / "mpi_mpk_check.py", nprocs, timeout=150,
                  env={"ASP_MODE": "strict", "ASP_AUTOTUNE": "off"})
    assert run.ok, run.describe()
    assert "MPK-ALL-OK" in run.stdout, run.describe()
    powers = [ln for ln in run.lines("MPK-OK powers") if "k=4" in ln]
    assert powers
    for ln in powers:  # PA1: fewer messages than k separate products (none on one rank)
        pa1, naive = int(_field(ln, "pa1")), int(_field(ln, "naive"))
        assert pa1 < naive or pa1 == naive == 0 == nprocs - 1
    cgs = list(run.lines("MPK-OK cg"))
    assert len(cgs) == 2
    for ln in cgs:
        m = re.search(r"iters ca=(\d+) plain=(\d+) reductions ca=(\d+) plain=(\d+) "
                      r"exchanges ca=(\d+) plain=(\d+)", ln)
        assert m, ln
        it_ca, it_plain, red_ca, red_plain, ex_ca, ex_plain = map(int, m.groups())
        assert it_ca <= 1.2 * it_plain + 4
        # one reduction per s steps against two per step; fewer exchanges too
        assert 2 * red_ca < red_plain
        assert ex_ca < ex_plain  # counted on one rank too: exchanges with no peer


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_mpk_ranks_agree_on_the_local_variant(nprocs, tmp_path):
    """Every rank times the variants of its own extended matrix, on times agreed over the job,
    and all run the same one (powers and CA-CG); ``asp explain`` sees ``[P ranks]``."""
    run = run_mpi(SCRIPTS / "mpi_mpk_tuning.py", nprocs, timeout=240, args=["tune"],
                  env={"ASP_MODE": "strict", "ASP_AUTOTUNE": "always",
                       "ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    (line,) = run.lines("MPK-TUNING-OK")
    assert f"[{nprocs} ranks]" in line and "cg-variant=None" not in line, line


@requires_mpi
@requires_compiler
def test_mpi_mpk_ranks_with_different_variants_each_tune_their_own(tmp_path):
    run = run_mpi(SCRIPTS / "mpi_mpk_tuning.py", 2, timeout=240, args=["uneven"],
                  env={"ASP_AUTOTUNE": "always", "ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    assert len(list(run.lines("MPK-UNEVEN-OK"))) == 2, run.describe()


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("case,mode", [("fallback", "auto"), ("strict", "strict")])
def test_mpi_mpk_a_rank_that_cannot_specialise_makes_every_rank_fall_back(case, mode,
                                                                          tmp_path):
    run = run_mpi(SCRIPTS / "mpi_mpk_tuning.py", 3, timeout=120, args=[case],
                  env={"ASP_MODE": mode, "ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    reason = "rank 1: AspError: forced on rank 1"
    lines = list(run.lines(f"MPK-{case.upper()}-OK"))
    if case == "fallback":   # one warning on each rank, naming the failing rank; SciPy's results
        assert sorted(ln.split(":")[0] for ln in lines) == [
            f"MPK-FALLBACK-OK rank {r}" for r in range(3)], run.describe()
        assert all("warnings=1" in ln and f"runs unspecialised on every rank: {reason}" in ln
                   for ln in lines), lines
    else:                    # powers and CA-CG raise on every rank
        for what in ("powers", "cg"):
            mine = [ln for ln in lines if f": {what} " in ln]
            assert sorted(ln.split(":")[0] for ln in mine) == [
                f"MPK-STRICT-OK rank {r}" for r in range(3)], run.describe()
            assert all(f"cannot be specialised on 3 ranks: {reason}" in ln for ln in mine)
