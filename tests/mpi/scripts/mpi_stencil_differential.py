"""Run under ``mpiexec -n P`` with a JSON file of generated kernel cases (written by
``test_mpi_stencil_differential.py`` from :mod:`asp_stencil.differential`): each case's kernel
runs distributed (a sweep, and ``iterate`` with an exchange every step and, with a deeper halo,
every few steps) and in one process under ``ASP_MODE=python``; the gathered results must be
equal bit for bit. Rank 0 prints ``DIFF-OK <n>`` per case, ``DIFF-SKIP <n> <reason>`` for a
case Python cannot run, and ``DIFF-ALL-OK`` at the end.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_stencil.differential import KernelCase, PythonRaises, case_grids, env, in_python
from asp_stencil.distributed import DistributedStencilGrid, distribute
from asp_stencil.testing import clone_grids, load_kernel

STEPS = 5


def same(want: np.ndarray, got: np.ndarray, what: str) -> None:
    bits = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[want.dtype.itemsize]
    if want.shape != got.shape or not np.array_equal(want.view(bits), got.view(bits)):
        bad = np.argwhere(want.view(bits) != got.view(bits))
        raise AssertionError(f"{what}: the distributed result differs from one process at "
                             f"{len(bad)} points, first {bad[:3].tolist()}")


def run_case(comm, n: int, case: KernelCase) -> None:
    cls = load_kernel(case.source, namespace={"np": np})
    start = case_grids(case, seed=n)
    try:
        one = clone_grids(start)
        in_python(lambda: cls().kernel(*one))
        many = clone_grids(start)
        last = many.index(in_python(lambda: cls().iterate(*many, steps=STEPS)))
    except PythonRaises as exc:
        if comm.rank == 0:
            print(f"DIFF-SKIP {n} {exc}", flush=True)
        return
    g = case.ghost
    for halo, every in ((g, 1), (3 * g, None)) if g else ((0, 1),):
        dk = distribute(cls())
        dg = [DistributedStencilGrid.from_global(s, comm, halo_depth=halo) for s in start]
        with np.errstate(all="ignore"):
            dk.kernel(*dg)
        for i, d in enumerate(dg):
            got = d.gather()
            if comm.rank == 0:
                same(one[i].data, got, f"case {n} sweep halo={halo} grid {i}\n{case!r}")
        for d, s in zip(dg, start):
            d.load_global(s.data)
        with np.errstate(all="ignore"):
            res = dk.iterate(*dg, steps=STEPS, exchange_every=every)
        got = res.gather()
        if comm.rank == 0:
            same(many[last].data, got, f"case {n} iterate({STEPS}) halo={halo}\n{case!r}")
    if comm.rank == 0:
        print(f"DIFF-OK {n}", flush=True)


def main() -> None:
    comm = world()
    with open(sys.argv[1]) as f:
        cases = [KernelCase(c["source"], tuple(c["shape"]), c["ghost"], tuple(c["dtypes"]),
                            [tuple(o) for o in c["custom"]], False, c["family"])
                 for c in json.load(f)]
    with fatal_errors(comm), env(ASP_LOG_LEVEL="WARNING"):
        for n, case in enumerate(cases):
            run_case(comm, n, case)
    if comm.rank == 0:
        print("DIFF-ALL-OK", flush=True)


if __name__ == "__main__":
    main()
