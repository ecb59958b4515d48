"""Distributed stencil calls whose arguments differ on one rank, or are refused by one rank's
own checks, raise the same clear error on every rank (naming what differs and on which rank)
instead of giving results that differ from one process, or hanging.

The odd rank is the last one: on 3 ranks of a (3, 1) process grid it is not a neighbour of
rank 0, so a check carried only on the halo messages would not reach rank 0. Each case runs
under a timeout, so a former hang fails instead of stalling the run.
"""

from __future__ import annotations

import pytest

from pytest_asp import requires_compiler, requires_mpi
from pytest_asp.mpi import run_mpi

DISAGREE = """
import sys

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil import StencilGrid, StencilKernel
from asp_stencil.distributed import DistributedStencilGrid, distribute

comm = world()
odd = comm.rank == comm.size - 1   # the one rank that passes something else
SHAPE = (12, 9)
DIAGONAL = [[(0, 0)], [(1, 1), (-1, -1), (1, -1), (-1, 1)]]


class Jac(StencilKernel):
    def __init__(self, alpha):
        self.alpha = alpha
        self.centre = 1.0 - 4.0 * alpha

    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = self.centre * a[x]
            for y in a.neighbors(x, 1):
                out[x] += self.alpha * a[y]


def expect(case, texts, fn):
    try:
        fn()
    except (ValueError, TypeError) as exc:
        missing = [t for t in texts if t not in str(exc)]
        if missing:
            raise AssertionError(f"{case}: unclear error on rank {comm.rank} (no {missing}): "
                                 f"{exc}")
        sys.stdout.write(f"RAISED-OK {case} rank {comm.rank}: {exc}\\n")
        sys.stdout.flush()
        return
    raise AssertionError(f"{case}: no error on rank {comm.rank}")


def grids():
    a = DistributedStencilGrid(SHAPE, comm, halo_depth=2)
    b = DistributedStencilGrid(like=a)
    a.load_global(np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) % 7)
    return a, b


def reference(steps):
    a = StencilGrid(SHAPE)
    a.data[...] = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) % 7
    b = StencilGrid(SHAPE)
    return Jac(0.1).iterate(a, b, steps=steps).data


with fatal_errors(comm):
    case = sys.argv[1]
    a, b = grids()
    k = distribute(Jac(0.1))
    odd_rank = f"rank {comm.size - 1}"
    if case == "alpha":
        # a rank-dependent constant: each rank computed its block with its own alpha
        expect(case, ["mismatched kernel attribute self.alpha", odd_rank, "0.2"],
               lambda: distribute(Jac(0.2 if odd else 0.1)).kernel(a, b))
    elif case == "alpha-iterate":
        expect(case, ["mismatched kernel attribute self.alpha", odd_rank],
               lambda: distribute(Jac(0.2 if odd else 0.1)).iterate(a, b, steps=4))
    elif case == "neighbors":
        # set on one rank only: that rank computed another stencil
        if odd:
            a.neighbor_definition = DIAGONAL
        expect(case, ["mismatched neighbor_definition of grid 1", odd_rank],
               lambda: k.kernel(a, b))
    elif case == "neighbors-later":
        # changed on one rank after the first sweep: it entered a new variant agreement while
        # the others went on to the next halo exchange (a hang, abort-on-error or not)
        k.kernel(a, b)
        if odd:
            a.neighbor_definition = DIAGONAL
        expect(case, ["mismatched neighbor_definition of grid 1", odd_rank],
               lambda: k.kernel(a, b))
    elif case == "aliased-output":
        # refused by the odd rank's own check only: caught there, the others hung
        expect(case, ["output grid is also input grid 1", odd_rank],
               lambda: k.kernel(a, a if odd else b))
    elif case == "read-only-output":
        k.kernel(a, b)
        if odd:
            b.local.data.flags.writeable = False
        expect(case, ["read-only", odd_rank], lambda: k.iterate(a, b, steps=3))
        b.local.data.flags.writeable = True
    elif case == "swapped-grids":
        expect(case, ["mismatched grid arguments", odd_rank],
               lambda: k.iterate(*((b, a) if odd else (a, b)), steps=2))
    elif case == "overlap":
        expect(case, ["mismatched overlap", odd_rank],
               lambda: distribute(Jac(0.1), overlap=odd).kernel(a, b))
    elif case == "one-grid":
        expect(case, ["needs at least one input grid", odd_rank],
               lambda: k.iterate(*((a,) if odd else (a, b)), steps=2))
    comm.Barrier()
    # and the grids still work on every rank afterwards, equal to one process
    a, b = grids()
    got = k.iterate(a, b, steps=3).allgather()
    if not np.array_equal(got, reference(3)):
        raise AssertionError(f"{case}: the run after the error differs from one process")
    print(f"RANK-DONE rank {comm.rank}", flush=True)
"""

CASES = ("alpha", "alpha-iterate", "neighbors", "neighbors-later", "aliased-output",
         "read-only-output", "swapped-grids", "overlap", "one-grid")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One cache for the module, so the kernel compiles once."""
    return tmp_path_factory.mktemp("cache")


@requires_mpi
@requires_compiler
@pytest.mark.parametrize("nprocs", [2, 3])
@pytest.mark.parametrize("case", CASES)
def test_mpi_stencil_call_differing_on_one_rank_raises_on_every_rank(case, nprocs, tmp_path,
                                                                      cache_dir):
    script = tmp_path / "disagree.py"
    script.write_text(DISAGREE)
    run = run_mpi(script, nprocs, timeout=60, args=[case],
                  env={"ASP_CACHE_DIR": str(cache_dir), "ASP_AUTOTUNE": "off",
                       "ASP_MODE": "strict"})
    assert not run.timed_out, run.describe()
    assert run.ok, run.describe()
    for r in range(nprocs):
        assert f"RAISED-OK {case} rank {r}" in run.stdout, run.describe()
    assert run.stdout.count("RANK-DONE") == nprocs, run.describe()
