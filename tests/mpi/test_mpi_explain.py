"""``asp explain`` of an MPI run: rank 0 prints every rank's reports, each labelled with its
rank (every rank printing its own interleaved them: ``--json`` was not JSON)."""

from __future__ import annotations

import json

from pytest_asp import requires_compiler, requires_mpi
from pytest_asp.mpi import run_mpi

SCRIPT = """
import numpy as np
from asp_stencil.bench import Heat
from asp_stencil.distributed import DistributedStencilGrid, distribute
from asp_core.mpi import fatal_errors, world

comm = world()
with fatal_errors(comm):
    a = DistributedStencilGrid((18, 18, 18), comm, halo_depth=1)
    b = DistributedStencilGrid(like=a)
    k = distribute(Heat(), overlap=False)
    for _ in range(3):
        k.kernel(a, b)
print("script output on rank", comm.rank)
"""


@requires_mpi
@requires_compiler
def test_explain_of_an_mpi_run_reports_every_rank_once(tmp_path):
    script = tmp_path / "heat.py"
    script.write_text(SCRIPT)
    env = {"ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "off"}
    run = run_mpi("asp_core.cli", 2, timeout=240, module=True, env=env,
                  args=["explain", "--json", str(script)])
    assert run.returncode == 0 and not run.timed_out, run.describe()
    kernels = json.loads(run.stdout)["kernels"]
    assert sorted(k["rank"] for k in kernels) == [0, 1]
    assert all(k["kernel"] == "Heat.kernel[2 ranks]" for k in kernels)
    run = run_mpi("asp_core.cli", 2, timeout=240, module=True, env=env,
                  args=["explain", str(script)])
    assert run.returncode == 0 and not run.timed_out, run.describe()
    assert run.stdout.count("##### rank 0 of 2") == 1 and run.stdout.count("##### rank 1 of 2") == 1
    assert run.stdout.index("rank 0 of 2") < run.stdout.index("rank 1 of 2")
