"""Generated kernels (asp_stencil.differential) distributed over 2 and 3 ranks equal one process
under ``ASP_MODE=python``, bit for bit: interior-only kernels of the DSL (distributed kernels
may not loop over borders), ragged shapes, ghost depths 0-3, float and integer dtypes (one per
call, as distributed calls require), several inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from pytest_asp import requires_compiler, requires_mpi
from pytest_asp.mpi import run_mpi
from asp_stencil.differential import jacobi_cases, kernel_cases

SCRIPT = Path(__file__).parent / "scripts" / "mpi_stencil_differential.py"


def _cases(strategy, n: int) -> list[dict]:
    """The first ``n`` interior-only cases ``strategy`` generates (deterministically)."""
    found: list[dict] = []

    @settings(max_examples=20 * n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case):
        # every rank needs an interior point along each axis (3 ranks may split one axis);
        # the grids of a distributed call share one dtype
        if (len(found) < n and "border_points" not in case.source and not case.periodic
                and min(case.shape) - 2 * case.ghost >= 3 and len(set(case.dtypes)) == 1):
            found.append({"source": case.source, "shape": case.shape, "ghost": case.ghost,
                          "dtypes": case.dtypes, "custom": case.custom, "family": case.family})

    collect()
    return found


@requires_mpi
@requires_compiler
@pytest.mark.timeout(600)
@pytest.mark.parametrize("nprocs", [2, 3])
def test_generated_kernels_distributed_equal_one_process(nprocs, tmp_path):
    cases = _cases(jacobi_cases(max_points=600), 6) + _cases(
        kernel_cases(max_points=600, families=("float", "int")), 6)
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    run = run_mpi(SCRIPT, nprocs, timeout=540, args=[str(path)],
                  env={"ASP_CACHE_DIR": str(tmp_path / "cache")})
    assert run.ok, run.describe()
    assert "DIFF-ALL-OK" in run.stdout, run.describe()
    assert len(list(run.lines("DIFF-OK"))) >= len(cases) // 2, run.describe()
