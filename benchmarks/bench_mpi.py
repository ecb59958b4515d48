"""Distributed runs over MPI: 1 vs 2 ranks per specializer, and communication counts.

    python benchmarks/bench_mpi.py [--quick]          # standalone
    python benchmarks/bench_mpi.py --model            # the cluster scaling model (docs)
    asp bench --path benchmarks mpi [--quick]         # through the core's runner

The driver (this process) launches ``mpiexec -n 1`` and ``mpiexec -n 2`` workers of this same
file, alternating them (1, 2, 1, 2) so the noise of the shared machine hits both alike. Each
rank runs with ``OMP_NUM_THREADS=1``, so 1 rank uses one core and 2 ranks use both; strong-
scaling efficiency is ``T1 / (2 T2)``. A single-process OpenMP run with 2 threads is reported as
well (the alternative to MPI on one node). Times are per step/iteration/call, measured inside the
workers (best of several, the slowest rank's time), so launch and compile costs are excluded.

Communication counts (2 ranks, small problems, exact): messages per exchange and exchanges or
reductions of the communication-avoiding schemes versus the naive ones at k (or s) = 4 and 8.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from asp_core import hookimpl

HERE = Path(__file__).resolve()


@hookimpl
def asp_register_benchmarks(register: Any) -> None:
    register.benchmark(name="mpi", func=run_mpi_benchmarks, specializer="",
                       description="1 vs 2 MPI ranks per specializer (efficiency) and "
                                   "messages/reductions of CA vs naive schemes")


# -- driver ------------------------------------------------------------------------------------

def _launch(kind: str, nprocs: int, quick: bool, threads: int = 1) -> dict[str, Any]:
    from pytest_asp.mpi import run_mpi

    args = ["--worker", kind] + (["--quick"] if quick else [])
    run = run_mpi(HERE, nprocs, timeout=590, args=args,
                  env={"OMP_NUM_THREADS": str(threads), "ASP_AUTOTUNE": "once"})
    if not run.ok:
        raise RuntimeError(run.describe())
    line = next(run.lines("BENCH-RESULT "), None)
    if line is None:
        raise RuntimeError("worker printed no result\n" + run.describe())
    return json.loads(line[len("BENCH-RESULT "):])


def run_mpi_benchmarks(bench: Any) -> None:
    from asp_bench import Measurement
    from asp_core.mpi import find_mpiexec

    if find_mpiexec() is None:
        bench.note(f"skipped: no mpiexec ({'pip install asp-core[mpi]'})")
        return
    quick = bench.quick
    rounds = 1 if quick else 2
    for kind in ("stencil", "gmm", "mpk"):
        runs: dict[str, list[dict]] = {"1 rank": [], "2 ranks": [], "openmp 2 threads": []}
        for _ in range(rounds):
            runs["1 rank"].append(_launch(kind, 1, quick))
            runs["2 ranks"].append(_launch(kind, 2, quick))
            runs["openmp 2 threads"].append(_launch(kind + "-openmp", 1, quick, threads=2))
        cases = runs["1 rank"][0]["cases"]
        bench.note(f"{kind}: {runs['1 rank'][0]['problem']}")
        for case in cases:
            best = {impl: min(r["cases"][case] for r in rs if case in r["cases"])
                    for impl, rs in runs.items() if any(case in r["cases"] for r in rs)}
            t1 = best["1 rank"]
            lines = []
            for impl, t in best.items():
                m = Measurement(bench.suite, f"{kind}: {case}", impl, t, t, "1 rank", t1 / t)
                bench.results.append(m)
                extra = f"  efficiency {t1 / (2 * t):5.0%}" if impl == "2 ranks" else ""
                lines.append(f"    {impl:<18} {t * 1e3:10.3f} ms  x{t1 / t:5.2f} vs 1 rank{extra}")
            bench.note(f"{kind}: {case}\n" + "\n".join(lines))
    counts = _launch("counts", 2, True)
    bench.note("communication counts on 2 ranks (per run; CA = communication-avoiding):")
    for row in counts["rows"]:
        bench.note("  " + row)


# -- workers (under mpiexec) --------------------------------------------------------------------

def _timed(comm: Any, fn: Any, repeats: int) -> float:
    """Best over repeats of the slowest rank's time of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        dt = comm.allreduce(time.perf_counter() - t0, op=_max())
        best = min(best, dt)
    return best


def _max() -> Any:
    from mpi4py import MPI

    return MPI.MAX


def _stencil_kernel() -> Any:
    from asp_stencil import StencilKernel

    class HeatKernel(StencilKernel):
        """3-D heat equation step (7-point), as in the stencil benchmarks."""

        def __init__(self) -> None:
            self.alpha = 0.1
            self.centre = 1.0 - 6.0 * 0.1

        def kernel(self, in_grid, out_grid):
            for x in out_grid.interior_points():
                out_grid[x] = self.centre * in_grid[x]
                for y in in_grid.neighbors(x, 1):
                    out_grid[x] += self.alpha * in_grid[y]

    return HeatKernel()


def _stencil(comm: Any, quick: bool, openmp: bool) -> dict[str, Any]:
    from asp_stencil import StencilGrid
    from asp_stencil.distributed import DistributedStencilGrid, distribute

    n = 66 if quick else 162
    steps = 8
    shape = (n, n, n)
    kernel = _stencil_kernel()
    rng = np.random.default_rng(0)
    init = rng.standard_normal(shape)
    cases: dict[str, float] = {}
    if openmp:
        a, b = StencilGrid(shape), StencilGrid(shape)
        a.data[...] = init
        kernel.iterate(a, b, steps=1)  # specialise (and tune) before timing
        t = _timed(comm, lambda: kernel.iterate(a, b, steps=steps), 3) / steps
        for case in ("sweep, halo 1", "sweep, halo 1, overlap", "iterate, halo 4 (CA)"):
            cases[case] = t
    else:
        for case, halo, every, overlap in (("sweep, halo 1", 1, 1, False),
                                           ("sweep, halo 1, overlap", 1, 1, True),
                                           ("iterate, halo 4 (CA)", 4, 4, False)):
            dk = distribute(kernel, overlap=overlap)
            a = DistributedStencilGrid(shape, comm, halo_depth=halo)
            b = DistributedStencilGrid(like=a)
            a.load_global(init)
            dk.iterate(a, b, steps=every, exchange_every=every)  # specialise first
            cases[case] = _timed(comm, lambda: dk.iterate(a, b, steps=steps,
                                                          exchange_every=every), 3) / steps
    return {"problem": f"3-D 7-point heat {n}^3 f64, {steps} steps, time per step",
            "cases": cases}


def _gmm(comm: Any, quick: bool, openmp: bool) -> dict[str, Any]:
    from asp_core.mpi import block_range
    from asp_gmm.distributed import DistributedEM

    N, D, M = (20_000, 8, 8) if quick else (200_000, 16, 32)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, D)) + rng.integers(0, 4, (N, 1))
    w = np.full(M, 1.0 / M)
    mu = X[rng.choice(N, M, replace=False)]
    cases: dict[str, float] = {}
    for cov in ("diag", "full"):
        pc = np.ones((M, D)) if cov == "diag" else np.stack([np.eye(D)] * M)
        if openmp:
            from asp_gmm import engine

            def run() -> None:
                engine.em_step(X, w, mu, pc, cov, 1e-6)
            for _ in range(12):  # let the dispatcher tune its variants
                run()
        else:
            lo, hi = block_range(N, comm.Get_size(), comm.Get_rank())
            shard = np.ascontiguousarray(X[lo:hi])
            em = DistributedEM(comm)

            def run() -> None:
                em.step(shard, w, mu, pc, cov, 1e-6, N)
            for _ in range(7):  # tune (agreed across ranks)
                run()
        cases[f"EM iteration, {cov}"] = _timed(comm, run, 3)
    return {"problem": f"GMM N={N} D={D} M={M}, time per EM iteration", "cases": cases}


def _poisson2d(m: int) -> Any:
    import scipy.sparse as sp

    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    e = sp.identity(m)
    return (sp.kron(t, e) + sp.kron(e, t)).tocsr()


def _poisson3d(m: int) -> Any:
    import scipy.sparse as sp

    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    e = sp.identity(m)
    return (sp.kron(sp.kron(t, e), e) + sp.kron(sp.kron(e, t), e)
            + sp.kron(sp.kron(e, e), t)).tocsr()


def _mpk(comm: Any, quick: bool, openmp: bool) -> dict[str, Any]:
    from asp_mpk.distributed import DistributedMatrix, DistributedMatrixPowers, cg

    m2, m3, k, s = (300, 24, 8, 8) if quick else (1000, 50, 8, 8)
    A = _poisson2d(m2)
    x = np.random.default_rng(2).standard_normal(A.shape[0])
    A3 = _poisson3d(m3)
    b3 = A3 @ np.ones(A3.shape[0])
    cases: dict[str, float] = {}
    if openmp:
        import asp_mpk

        mp = asp_mpk.MatrixPowers(A, k)
        mp.powers(x)
        cases[f"powers k={k}"] = _timed(comm, lambda: mp.powers(x), 5)
        asp_mpk.cg(A3, b3, rtol=1e-8, s=s)
        cases[f"CA-CG s={s} to 1e-8"] = _timed(comm, lambda: asp_mpk.cg(A3, b3, rtol=1e-8,
                                                                         s=s), 2)
    else:
        mp = DistributedMatrixPowers(A, k, comm)
        xl = x[mp.matrix.lo:mp.matrix.hi]
        mp.powers(xl)
        for _ in range(64):   # the ranks tune together: they all stop at the same call
            if mp.variant is not None:
                break
            mp.powers(xl)
        cases[f"powers k={k}"] = _timed(comm, lambda: mp.powers(xl), 5)
        mat = DistributedMatrix(A3, comm, depth=s)
        bl = b3[mat.lo:mat.hi]
        cg(mat, bl, rtol=1e-8, s=s)
        cases[f"CA-CG s={s} to 1e-8"] = _timed(comm, lambda: cg(mat, bl, rtol=1e-8, s=s), 2)
    return {"problem": f"2-D Poisson {m2}^2 (powers), 3-D Poisson {m3}^3 (CG)", "cases": cases}


def _counts(comm: Any) -> dict[str, Any]:
    """Exact message/reduction counts of CA versus naive schemes at k (or s) = 4 and 8."""
    from asp_core.mpi import CommStats
    from asp_mpk.distributed import DistributedMatrix, DistributedMatrixPowers, cg, plain_cg
    from asp_stencil.distributed import DistributedStencilGrid, distribute

    rows = []
    A = _poisson2d(100)
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    A3 = _poisson3d(16)
    b3 = A3 @ np.ones(A3.shape[0])
    opts = {"platform_selection": "scipy"}  # counts do not depend on the local kernel
    for k in (4, 8):
        mp = DistributedMatrixPowers(A, k, comm, options=opts)
        xl = x[mp.matrix.lo:mp.matrix.hi]
        st = mp.stats
        m0, e0 = st.messages, st.exchanges
        mp.powers(xl)
        ca = (comm.allreduce(st.messages - m0), st.exchanges - e0)
        m0, e0 = st.messages, st.exchanges
        mp.naive_powers(xl)
        nv = (comm.allreduce(st.messages - m0), st.exchanges - e0)
        rows.append(f"matrix powers k={k}: PA1 {ca[0]} messages in {ca[1]} exchange(s); "
                    f"naive {nv[0]} messages in {nv[1]} exchanges ({nv[0] / ca[0]:.0f}x)")
    for s in (4, 8):
        mat = DistributedMatrix(A3, comm, depth=s)
        bl = b3[mat.lo:mat.hi]
        _, info, ca = cg(mat, bl, rtol=1e-8, s=s, options=opts)
        _, info2, pl = plain_cg(A3, bl, comm=comm, rtol=1e-8)
        rows.append(f"CG to 1e-8 on 3-D Poisson 16^3, s={s}: CA-CG {ca.iterations} iterations, "
                    f"{ca.reductions} reductions, {ca.exchanges} exchanges; plain CG "
                    f"{pl.iterations} iterations, {pl.reductions} reductions, {pl.exchanges} "
                    f"exchanges ({pl.reductions / ca.reductions:.1f}x fewer reductions)")
    kernel = _stencil_kernel()
    for s in (4, 8):
        res = []
        for halo in (1, s):
            a = DistributedStencilGrid((34, 34, 34), comm, halo_depth=halo)
            b = DistributedStencilGrid(like=a)
            st = CommStats()
            dk = distribute(kernel)
            dk.stats = st
            dk.iterate(a, b, steps=16, exchange_every=halo)
            res.append((comm.allreduce(st.messages), st.exchanges,
                        comm.allreduce(st.bytes)))
        rows.append(f"stencil 16 steps 32^3, halo depth {s}: {res[1][0]} messages in "
                    f"{res[1][1]} exchanges ({res[1][2] / 1e6:.2f} MB); halo depth 1: "
                    f"{res[0][0]} messages in {res[0][1]} exchanges ({res[0][2] / 1e6:.2f} MB)")
    return {"rows": rows}


def worker(kind: str, quick: bool) -> None:
    from asp_core.mpi import fatal_errors, world

    comm = world()
    with fatal_errors(comm):
        openmp = kind.endswith("-openmp")
        base = kind.removesuffix("-openmp")
        if base == "counts":
            out = _counts(comm)
        else:
            out = {"stencil": _stencil, "gmm": _gmm, "mpk": _mpk}[base](comm, quick, openmp)
    if comm.Get_rank() == 0:
        sys.stdout.write("BENCH-RESULT " + json.dumps(out) + "\n")
        sys.stdout.flush()


# -- a cluster scaling model (docs/guides/mpi.md) -------------------------------------------------

#: Assumptions of the model, stated once: one MPI rank per node (OpenMP inside the node).
CLUSTER = {
    "alpha_s": 2e-6,          # latency of one MPI message between nodes (InfiniBand HDR)
    "beta_Bps": 20e9,         # injection bandwidth per node (200 Gb/s link, ~80% achieved)
    "mem_Bps": 200e9,         # STREAM bandwidth of one node (2 sockets, DDR4/DDR5)
    "flops": 1.5e12,          # achieved double-precision FLOP/s of one node on dense EM work
}


def _allreduce(nbytes: float, P: int, c: dict) -> float:
    """Recursive doubling latency plus a ring's bandwidth term."""
    import math

    return 0.0 if P == 1 else 2 * math.log2(P) * c["alpha_s"] + 2 * nbytes / c["beta_Bps"]


def model_times(P: int, *, weak: bool, c: dict = CLUSTER) -> dict[str, float]:
    """Modelled seconds per step/iteration on P nodes (strong: fixed global size; weak: fixed
    size per node). Problem sizes: stencil 1024^3 (weak: 512^3 per node), GMM 10^8 samples D=16
    M=32 (weak: 10^7 per node), CG on 3-D Poisson 512^3 (weak: 256^3 per node)."""
    out = {}
    # stencil: 16 B per point per step; 3-D blocks; 6 face messages of one halo layer
    n_pts = (512 ** 3) * P if weak else 1024 ** 3
    n = (n_pts / P) ** (1 / 3)
    comp = 16 * n ** 3 / c["mem_Bps"]
    for s in (1, 4):
        halo = 0.0 if P == 1 else (6 * c["alpha_s"] + 6 * 8 * n * n * s / c["beta_Bps"]) / s
        redundant = 0.0 if P == 1 else comp * 3 * (s - 1) / n  # recomputed halo layers
        out[f"stencil s={s}"] = comp + halo + redundant
    # GMM diag: ~6 N M D flops per iteration, one Allreduce of the statistics
    N, D, M = (1e7 * P if weak else 1e8), 16, 32
    out["gmm diag"] = 6 * N * M * D / P / c["flops"] + _allreduce(8 * M * (2 * D + 1), P, c)
    # CG on 3-D Poisson (7 nnz/row: 84 B of matrix per row per pass). Plain CG per iteration:
    # the matrix plus ~10 vector passes = 164 B/row. CA-CG per s steps: the matrix once, the
    # 2s+2 basis vectors written and read once (Gram fused), 3 vectors rebuilt: 84+16(2s+2)+48.
    rows = (256 ** 3) * P if weak else 512 ** 3
    nl = (rows / P) ** (1 / 3)
    out["cg plain"] = (164 * rows / P / c["mem_Bps"]
                       + (0.0 if P == 1 else 6 * c["alpha_s"] + 6 * 8 * nl * nl / c["beta_Bps"])
                       + 2 * _allreduce(8, P, c))
    s = 8
    m = 2 * (s + 1)
    ca_local = (84 + 16 * m + 48) / s * rows / P / c["mem_Bps"]
    ca_ex = 0.0 if P == 1 else (6 * c["alpha_s"] + 2 * 6 * 8 * nl * nl * s / c["beta_Bps"]) / s
    ca_redundant = 0.0 if P == 1 else ca_local * 3 * s / nl  # ghost rows of depth s
    out["cg CA s=8"] = ca_local + ca_ex + ca_redundant + _allreduce(8 * m * m, P, c) / s
    return out


def scaling_table() -> str:
    """Markdown tables of modelled efficiency (strong and weak scaling); both CG columns are
    relative to plain CG on one node, so CA-CG's extra local work shows."""
    lines = []
    for weak in (False, True):
        base = model_times(1, weak=weak)
        names = list(base)
        lines.append(f"\n{'weak' if weak else 'strong'} scaling: efficiency "
                     f"({'T(1) / T(P)' if weak else 'T(1) / (P T(P))'}; both CG columns use "
                     "plain CG on one node as T(1))\n")
        lines.append("| nodes P | " + " | ".join(names) + " |")
        lines.append("|---:|" + "---:|" * len(names))
        for P in (1, 8, 64, 512, 4096):
            t = model_times(P, weak=weak)
            ref = [base["cg plain"] if k.startswith("cg") else base[k] for k in names]
            eff = [(r / t[k]) if weak else r / (P * t[k]) for r, k in zip(ref, names)]
            lines.append(f"| {P} | " + " | ".join(f"{e:.0%}" for e in eff) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if "--worker" in argv:
        worker(argv[argv.index("--worker") + 1], "--quick" in argv)
        return
    if "--model" in argv:
        print("assumptions:", CLUSTER)
        print(scaling_table())
        return
    from asp_bench import BenchContext

    bench = BenchContext("mpi", quick="--quick" in argv)
    print("mpi: 1 vs 2 ranks (OMP_NUM_THREADS=1 per rank) and communication counts")
    run_mpi_benchmarks(bench)


if __name__ == "__main__":
    main(sys.argv[1:])
