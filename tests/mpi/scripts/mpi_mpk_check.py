"""Run under ``mpiexec -n P``: distributed matrix powers and CA-CG equal the single process.

Matrix powers (PA1, one exchange) equal repeated ``A @ x`` to rtol 1e-12 on a 2-D Poisson matrix,
a random unstructured SPD matrix, with balanced and uneven row blocks (with 3+ ranks, rank 1
owns no rows and rank 2 a single row). CA-CG on P ranks equals the same solver on one process
(``COMM_SELF``, whole matrix) to rtol 1e-10, reaches the tolerance, and uses one reduction per
s steps against two per step for plain distributed CG. Rank 0 prints ``MPK-OK`` lines.
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp

from asp_core.mpi import fatal_errors, world
from asp_mpk.distributed import (DistributedMatrix, DistributedMatrixPowers, cg, partition_rows,
                                 plain_cg)


def poisson2d(m, shift=0.0):
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    e = sp.identity(m)
    return (sp.kron(t, e) + sp.kron(e, t) + shift * sp.identity(m * m)).tocsr()


def random_spd(n, seed=4):
    rng = np.random.default_rng(seed)
    R = sp.random(n, n, density=4.0 / n, random_state=seed, format="csr")
    A = R + R.T
    A = A + sp.diags(np.asarray(abs(A).sum(axis=1)).ravel() + 1.0 + rng.random(n))
    return A.tocsr()


def uneven(n, size):
    """Uneven row blocks: 1:2 with two ranks; with 3+ rank 1 owns none and rank 2 one row."""
    if size < 3:
        return partition_rows(n, size, [1.0] + [2.0] * (size - 1))
    sizes = [0] * size
    sizes[2] = 1
    others = [r for r in range(size) if r not in (1, 2)]
    for i, r in enumerate(others):
        sizes[r] = (n - 1) // len(others) + (1 if i < (n - 1) % len(others) else 0)
    return np.concatenate([[0], np.cumsum(sizes)])


def close(a, b, rtol, what):
    scale = max(1.0, float(np.max(np.abs(b)))) if np.size(b) else 1.0
    if not np.allclose(a, b, rtol=rtol, atol=rtol * 1e-3 * scale):
        err = np.max(np.abs(a - b)) / scale
        raise AssertionError(f"{what}: max scaled difference {err:.3g} exceeds rtol {rtol}")


# The banded (DIA) kernels of asp-mpk take long to compile; the distribution logic is the same
# whatever runs locally, so banded cases use the SciPy platform and the unstructured ones the
# generated C (CSR PA1).
SCIPY = {"platform_selection": "scipy"}


def powers_case(comm, name, A, bounds, k, options=None):
    n = A.shape[0]
    x = np.random.default_rng(7).standard_normal(n)
    x /= np.linalg.norm(x)
    ref = [x]
    for _ in range(k):
        ref.append(A @ ref[-1])
    ref = np.array(ref)
    mp = DistributedMatrixPowers(A, k, comm, bounds=bounds, options=options)
    lo, hi = mp.matrix.lo, mp.matrix.hi
    before, ex0 = mp.stats.messages, mp.stats.exchanges
    got = mp.powers(x[lo:hi])
    ca_msgs, ca_ex = mp.stats.messages - before, mp.stats.exchanges - ex0
    close(got, ref[:, lo:hi], 1e-12, f"{name} k={k} PA1 powers rank {comm.rank}")
    before, ex0 = mp.stats.messages, mp.stats.exchanges
    naive = mp.naive_powers(x[lo:hi])
    naive_msgs, naive_ex = mp.stats.messages - before, mp.stats.exchanges - ex0
    close(naive, ref[:, lo:hi], 1e-12, f"{name} k={k} naive powers")
    # chebyshev basis with explicit interval: the same on every rank
    ch = mp.powers(x[lo:hi], basis="chebyshev", shifts=(0.0, 8.0))
    from asp_mpk.bases import chebyshev_coefs

    c = chebyshev_coefs(0.0, 8.0, k)
    v = [x, c[0, 0] * (A @ x) + c[1, 0] * x]
    for j in range(1, k):
        v.append(c[0, j] * (A @ v[j]) + c[1, j] * v[j] + c[2, j] * v[j - 1])
    close(ch, np.array(v[:k + 1])[:, lo:hi], 1e-11, f"{name} chebyshev")
    tot_ca = comm.allreduce(ca_msgs)
    tot_naive = comm.allreduce(naive_msgs)
    if (ca_ex, naive_ex) != (1, k):
        raise AssertionError(f"{name}: {ca_ex} PA1 exchanges and {naive_ex} naive ones; "
                             f"expected 1 and k = {k}")
    if comm.size > 1 and not (tot_ca <= tot_naive and (k == 1 or tot_ca < tot_naive)):
        raise AssertionError(f"{name}: PA1 sent {tot_ca} messages, naive {tot_naive}")
    if comm.rank == 0:
        print(f"MPK-OK powers {name} k={k} rows={hi - lo} messages pa1={tot_ca} "
              f"naive={tot_naive}", flush=True)


def local_rows_case(comm, A, bounds, k):
    """Each rank passes only its own rows (global column ids): ghost rows are fetched."""
    lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    x = np.random.default_rng(9).standard_normal(A.shape[0])
    ref = [x]
    for _ in range(k):
        ref.append(A @ ref[-1])
    mp = DistributedMatrixPowers(A[lo:hi], k, comm, rows=(lo, hi))
    close(mp.powers(x[lo:hi]), np.array(ref)[:, lo:hi], 1e-12, "local-rows powers")
    # a row block whose arrays were changed after construction is refused on every rank,
    # naming the rank and the entry, before SciPy or C code indexes with it
    bad = A[lo:hi].tocsr(copy=True)
    last = comm.size - 1
    if comm.rank == last:
        bad.indices[0] = 10**6
    try:
        DistributedMatrixPowers(bad, k, comm, rows=(lo, hi))
    except ValueError as exc:
        assert f"rank {last}: ValueError: A has an invalid CSR structure: column index 1000000" \
            in str(exc), exc
    else:
        raise AssertionError("a row block with a column index outside the matrix was accepted")
    # arguments that shape the messages must agree: a clear error on every rank, not a hang
    for call, what in ((lambda: DistributedMatrixPowers(A[lo:hi], k + comm.rank, comm,
                                                        rows=(lo, hi)), "depth"),
                       (lambda: mp.powers(np.ones((1 + comm.rank, hi - lo))), "vectors"),
                       (lambda: DistributedMatrixPowers(A[lo:hi], k, comm,
                                                        rows=(lo,) if comm.rank else (lo, hi)),
                        "rows"),
                       (lambda: cg(A[lo:hi], np.ones(hi - lo), comm=comm, rows=(lo, hi),
                                   maxiter=3 + comm.rank), "maxiter"),
                       (lambda: cg(A[lo:hi], np.ones(hi - lo), comm=comm, rows=(lo, hi),
                                   rtol=-1.0 if comm.rank else 1e-5), "rtol")):
        try:
            call()
        except ValueError as exc:
            if comm.size > 1 and what not in str(exc):
                raise
        else:
            if comm.size > 1:
                raise AssertionError(f"no ValueError for {what} differing between ranks")
    x0, info, _ = cg(A[lo:hi], np.zeros(hi - lo), comm=comm, rows=(lo, hi))
    if info != 0 or np.any(x0):   # b = 0: x = 0 and converged, as SciPy
        raise AssertionError(f"cg with b = 0 gave info {info}")
    if comm.rank == 0:
        print(f"MPK-OK local-rows k={k} setup_messages={mp.stats.setup_messages}", flush=True)


def cg_case(comm, name, A, bounds, s, options=None):
    n = A.shape[0]
    rng = np.random.default_rng(2)
    xtrue = rng.standard_normal(n)
    b = A @ xtrue
    mat = DistributedMatrix(A, comm, bounds=bounds, depth=s)
    lo, hi = mat.lo, mat.hi
    x, info, st = cg(mat, b[lo:hi], comm=comm, rtol=1e-12, s=s, options=options)
    if info != 0:
        raise AssertionError(f"{name}: CA-CG did not converge (info={info})")
    xs, _, _ = cg(A, b, comm=_self(), rtol=1e-12, s=s, options=options)
    close(x, xs[lo:hi], 1e-10, f"{name} CA-CG vs one process")
    close(x, xtrue[lo:hi], 1e-9, f"{name} CA-CG vs exact")
    xp, infop, sp_ = plain_cg(A, b[lo:hi], comm=comm, rtol=1e-12, bounds=bounds)
    if infop != 0:
        raise AssertionError(f"{name}: plain CG did not converge")
    close(x, xp, 1e-9, f"{name} CA-CG vs plain CG")
    if st.iterations > 1.2 * sp_.iterations + s:
        raise AssertionError(f"{name}: CA-CG took {st.iterations} iterations, plain CG "
                             f"{sp_.iterations}")
    # the point of CA-CG: one reduction per s steps instead of two per step
    if st.reductions > 0.6 * sp_.reductions:
        raise AssertionError(f"{name}: CA-CG used {st.reductions} reductions, plain CG "
                             f"{sp_.reductions}")
    if comm.rank == 0:
        print(f"MPK-OK cg {name} s={s} iters ca={st.iterations} plain={sp_.iterations} "
              f"reductions ca={st.reductions} plain={sp_.reductions} exchanges "
              f"ca={st.exchanges} plain={sp_.exchanges}", flush=True)


def _self():
    from mpi4py import MPI

    return MPI.COMM_SELF


def main():
    comm = world()
    with fatal_errors(comm):
        A = poisson2d(12)
        R = random_spd(150)
        n = A.shape[0]
        for k in (1, 4):
            powers_case(comm, "poisson2d", A, None, k, SCIPY)
        powers_case(comm, "poisson2d-uneven", A, uneven(n, comm.size), 3, SCIPY)
        powers_case(comm, "random-uneven", R, uneven(R.shape[0], comm.size), 4)
        local_rows_case(comm, R, uneven(R.shape[0], comm.size), 3)
        cg_case(comm, "poisson2d-shifted", poisson2d(12, shift=1.0), uneven(n, comm.size), 4,
                SCIPY)
        cg_case(comm, "random-spd", R, None, 3)
    if comm.rank == 0:
        print("MPK-ALL-OK", flush=True)


if __name__ == "__main__":
    sys.exit(main())
