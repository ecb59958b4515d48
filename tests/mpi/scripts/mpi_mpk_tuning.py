"""Run under ``mpiexec -n P`` with one argument: distributed matrix powers agree on a variant.

* ``tune`` (``ASP_AUTOTUNE=always``, ``ASP_MODE=strict``): every rank times the local kernel's
  variants of its own extended matrix, the ranks agree on each time and all of them run the
  same variant; the powers equal SciPy's to 1e-10 and CA-CG converges, reporting one variant
  on every rank. Rank 0 also checks that ``asp explain`` records the run as
  ``...[P ranks]``. Rank 0 prints ``MPK-TUNING-OK``.
* ``uneven``: one small block and large ones propose different variants, so each rank tunes
  its own (no warning; SciPy's results; the large blocks do not run the naive products).
  Each rank prints ``MPK-UNEVEN-OK rank <r>: ...``.
* ``fallback`` (``ASP_MODE=auto``) and ``strict`` (``ASP_MODE=strict``): the local kernel
  cannot be specialised on rank 1 only. Every rank falls back with one warning (results still
  SciPy's), or every rank raises. Each rank prints ``MPK-<CASE>-OK rank <r>: <message>``.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import scipy.sparse as sp

from asp_core import recording
from asp_core.errors import AspError, SpecializationWarning
from asp_core.mpi import fatal_errors, world
from asp_mpk.distributed import DistributedMatrixPowers, cg, partition_rows


def local_graph(n, reach=30, seed=3):
    """An SPD matrix of a random graph of short edges: thin (graph PA1 pays), not banded (no
    slow-to-compile DIA kernels), so the local kernel has several CSR variants to time."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), 4)
    cols = np.clip(rows + rng.integers(-reach, reach + 1, rows.size), 0, n - 1)
    A = sp.csr_matrix((rng.random(rows.size), (rows, cols)), shape=(n, n))
    A = A + A.T
    return (A + sp.diags(np.asarray(abs(A).sum(axis=1)).ravel() + 1.0)).tocsr()


def scipy_powers(A, x, k):
    ref = [x]
    for _ in range(k):
        ref.append(A @ ref[-1])
    return np.array(ref)


def check_powers(comm, A, mp, x, k):
    lo, hi = mp.matrix.lo, mp.matrix.hi
    got = mp.powers(x[lo:hi])
    ref = scipy_powers(A, x, k)[:, lo:hi]
    err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300) if ref.size else 0.0
    worst = comm.allreduce(float(err), op=max)
    if worst > 1e-10:
        raise AssertionError(f"powers differ from SciPy: relative error {worst:.3g}")


def check_cg(comm, A, s):
    n = A.shape[0]
    b = A @ np.random.default_rng(2).standard_normal(n)
    lo, hi = partition_rows(n, comm.size)[comm.rank:comm.rank + 2]
    x, info, st = cg(A, b[lo:hi], comm=comm, rtol=1e-10, s=s)
    r = b - A @ np.concatenate(comm.allgather(x))
    if info != 0 or np.linalg.norm(r) > 1e-10 * np.linalg.norm(b):
        raise AssertionError(f"CA-CG: info={info}, residual {np.linalg.norm(r):.3g}")
    return st


def tune(comm):
    k = 3
    A = local_graph(3000)
    x = np.random.default_rng(7).standard_normal(A.shape[0])
    x /= np.linalg.norm(x)
    if comm.rank == 0:
        recording.start()
    mp = DistributedMatrixPowers(A, k, comm)
    calls = 0
    while mp.variant is None and calls < 60:
        check_powers(comm, A, mp, x, k)
        calls += 1
    records = recording.stop() if comm.rank == 0 else []
    winner = mp.variant
    assert winner is not None, f"rank {comm.rank}: still tuning after {calls} calls"
    tuner = mp._last.tuner
    assert len(tuner.variants) >= 2, f"nothing was tuned: {tuner.variants}"
    mine = (winner, calls, sorted((v, tuple(t)) for v, t in tuner.times.items()))
    everyone = comm.allgather(mine)
    assert all(e == everyone[0] for e in everyone), everyone
    check_powers(comm, A, mp, x, k)   # the bound winner
    if comm.rank == 0:
        ranks = [r.kernel for r in records if r.kernel.endswith(f"[{comm.size} ranks]")]
        assert ranks, [r.kernel for r in records]
    st = check_cg(comm, A, 3)
    variants = comm.allgather(st.variant)
    assert all(v == variants[0] for v in variants), variants
    if comm.rank == 0:
        print(f"MPK-TUNING-OK winner={winner} variants={len(tuner.variants)} calls={calls} "
              f"cg-variant={variants[0]} explain={ranks[0]}", flush=True)


def fail_on_rank_1(comm):
    if comm.rank == 1:   # phases 1-4 of the local kernel fail on rank 1 only
        from asp_core.dispatch import Dispatcher

        def broken(self, *args, **kwargs):
            raise AspError("forced on rank 1")
        Dispatcher.variants = broken


def say(case, comm, message):
    # one write per line: mpiexec interleaves the ranks' output at write boundaries
    sys.stdout.write(f"MPK-{case}-OK rank {comm.rank}: {message}\n")
    sys.stdout.flush()


def fallback(comm):
    fail_on_rank_1(comm)
    k = 3
    A = local_graph(600)
    x = np.random.default_rng(7).standard_normal(A.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp = DistributedMatrixPowers(A, k, comm)
        for _ in range(3):
            check_powers(comm, A, mp, x, k)
    ours = [str(w.message) for w in caught if issubclass(w.category, SpecializationWarning)]
    assert len(ours) == 1, ours
    assert mp.variant is None
    check_cg(comm, A, 3)
    say("FALLBACK", comm, f"warnings={len(ours)} {ours[0]}")


def strict(comm):
    fail_on_rank_1(comm)
    A = local_graph(600)
    mp = DistributedMatrixPowers(A, 3, comm)
    lo, hi = mp.matrix.lo, mp.matrix.hi
    try:
        mp.powers(np.ones(hi - lo))
    except AspError as exc:
        say("STRICT", comm, f"powers {exc}")
    else:
        raise AssertionError(f"no error on rank {comm.rank}")
    try:
        cg(A, np.ones(hi - lo), comm=comm, s=3)
    except AspError as exc:
        say("STRICT", comm, f"cg {exc}")
    else:
        raise AssertionError(f"no error from cg on rank {comm.rank}")


def uneven(comm):
    """Blocks of very different sizes propose different variants (a small block's are
    one-thread, one-block ones): each rank tunes its own instead of the variants all share
    (here only the naive k products), with no warning, and the results stay SciPy's."""
    from asp_mpk import gallery

    A = gallery.poisson2d(400)   # the large blocks: above the one-thread size
    n, k = A.shape[0], 4
    bounds = [0, 600] + [600 + (n - 600) * r // (comm.size - 1) for r in range(1, comm.size)]
    x = np.random.default_rng(5).standard_normal(n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp = DistributedMatrixPowers(A, k, comm, bounds=bounds)
        calls = 0
        while calls < 80 and (calls < 2 or any(comm.allgather(mp.variant is None))):
            check_powers(comm, A, mp, x, k)
            calls += 1
    assert not [w for w in caught if issubclass(w.category, SpecializationWarning)], caught
    assert mp._last.per_rank and mp.variant is not None, (calls, mp.variant)
    variants = comm.allgather(mp.variant)
    assert not variants[-1].startswith("naive"), variants
    say("UNEVEN", comm, f"variants={variants} calls={calls}")


def main():
    comm = world()
    with fatal_errors(comm):
        {"tune": tune, "fallback": fallback, "strict": strict,
         "uneven": uneven}[sys.argv[1]](comm)


if __name__ == "__main__":
    main()
