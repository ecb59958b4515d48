"""Run under ``mpiexec -n P``: data-parallel EM equals single-process EM (rtol 1e-10).

Every rank generates the same data set, keeps an uneven shard of it (with 3+ ranks one shard is
empty and one holds a single sample), fits ``DistributedGaussianMixture`` and compares with
``asp_gmm.GaussianMixture`` fitted on the whole data in this process, from the same initial
parameters and for the same number of iterations. It also checks that every rank ends with the
bitwise identical model and the same tuned variant. Rank 0 prints ``GMM-OK`` lines.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture
from asp_gmm.estimator import GaussianMixture


def shard_bounds(n, size):
    """Uneven split: with 3+ ranks rank 1 is empty and rank 2 holds one sample."""
    if size == 1:
        return [(0, n)]
    if size == 2:
        cut = n // 3
        return [(0, cut), (cut, n)]
    sizes = [0] * size
    sizes[1], sizes[2] = 0, 1
    rest = n - 1
    others = [r for r in range(size) if r not in (1, 2)]
    for i, r in enumerate(others):
        sizes[r] = rest // len(others) + (1 if i < rest % len(others) else 0)
    starts = np.cumsum([0] + sizes)
    return [(int(starts[r]), int(starts[r + 1])) for r in range(size)]


def data(n, d, m, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((m, d)) * 4 + 2.0
    labels = rng.integers(0, m, n)
    X = centres[labels] + rng.standard_normal((n, d)) * (0.5 + 0.5 * rng.random(d))
    return X, centres


def inits(X, m, cov, d):
    rng = np.random.default_rng(11)
    means = X[rng.choice(len(X), m, replace=False)] + 0.1
    weights = np.full(m, 1.0 / m)
    prec = {"full": np.stack([np.eye(d) * 0.8] * m), "diag": np.full((m, d), 0.8),
            "spherical": np.full(m, 0.8), "tied": np.eye(d) * 0.8}[cov]
    return weights, means, prec


def close(a, b, what, rtol=1e-10):
    if not np.allclose(a, b, rtol=rtol, atol=1e-12 * max(1.0, float(np.max(np.abs(b))))):
        err = np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(b) + 1e-300))
        raise AssertionError(f"{what}: distributed differs from single-process (max rel {err:.3g})")


def identical_everywhere(comm, arrays, what):
    mine = [np.ascontiguousarray(a).tobytes() for a in arrays]
    allv = comm.allgather(mine)
    if any(v != allv[0] for v in allv):
        raise AssertionError(f"{what}: ranks hold different models")


def check(comm, cov, n=3000, d=4, m=3, iters=8):
    X, _ = data(n, d, m)
    lo, hi = shard_bounds(n, comm.size)[comm.rank]
    w0, mu0, p0 = inits(X, m, cov, d)
    kw = dict(covariance_type=cov, tol=0.0, max_iter=iters, weights_init=w0, means_init=mu0,
              precisions_init=p0, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 runs every iteration
        ref = GaussianMixture(m, **kw).fit(X)
        dist = DistributedGaussianMixture(m, comm=comm, **kw).fit(X[lo:hi])
    if dist.n_iter_ != ref.n_iter_:
        raise AssertionError(f"{cov}: {dist.n_iter_} iterations, single process {ref.n_iter_}")
    close(dist.lower_bound_, ref.lower_bound_, f"{cov} lower_bound_")
    close(dist.weights_, ref.weights_, f"{cov} weights_")
    close(dist.means_, ref.means_, f"{cov} means_")
    close(dist.covariances_, ref.covariances_, f"{cov} covariances_")
    identical_everywhere(comm, [dist.weights_, dist.means_, dist.covariances_,
                                np.array([dist.lower_bound_])], cov)
    variants = comm.allgather(dist.variant_)
    if len(set(variants)) != 1:
        raise AssertionError(f"{cov}: ranks chose different variants {variants}")
    # the local predictions are the single-process ones on this shard
    pred = dist.predict(X[lo:hi])
    if hi > lo and not np.array_equal(pred, ref.predict(X[lo:hi])):
        raise AssertionError(f"{cov}: predict differs on rank {comm.rank}")
    # the local methods called on one rank only (they hung: collectives in their validation)
    if comm.rank == comm.size - 1:
        if not np.array_equal(dist.predict(X[:7]), ref.predict(X[:7])):
            raise AssertionError(f"{cov}: predict on one rank differs")
        dist.predict_proba(X[:3])
        dist.score_samples(X[:3])
    comm.Barrier()
    score = dist.score(X[lo:hi])
    close(score, ref.score(X), f"{cov} score")
    if comm.rank == 0:
        print(f"GMM-OK {cov} iters={dist.n_iter_} variant={dist.variant_} "
              f"tuned={len(dist.engine_.timings)} "
              f"reductions={dist.comm_stats_.reductions} shard_sizes="
              f"{[b - a for a, b in shard_bounds(n, comm.size)]}", flush=True)


def default_init(comm):
    """kmeans initialisation on rank 0's gathered sample, then EM to convergence."""
    X, centres = data(4000, 3, 4, seed=5)
    lo, hi = shard_bounds(len(X), comm.size)[comm.rank]
    g = DistributedGaussianMixture(4, covariance_type="diag", random_state=0, max_iter=200,
                                   tol=1e-6, comm=comm).fit(X[lo:hi])
    identical_everywhere(comm, [g.means_, g.covariances_, g.weights_], "kmeans init")
    labels = DistributedGaussianMixture(4, covariance_type="diag", random_state=0, max_iter=200,
                                        tol=1e-6, comm=comm).fit_predict(X[lo:hi])
    if not np.array_equal(labels, g.predict(X[lo:hi])):
        raise AssertionError("fit_predict differs from fit().predict()")
    if not g.converged_:
        raise AssertionError("default-initialised distributed EM did not converge")
    # every true centre is found
    dist = np.min(np.linalg.norm(g.means_[:, None, :] - centres[None], axis=2), axis=0)
    if np.max(dist) > 0.5:
        raise AssertionError(f"centres not recovered: {dist}")
    if comm.rank == 0:
        print(f"GMM-OK kmeans-init iters={g.n_iter_}", flush=True)


def main():
    comm = world()
    tune = "--tune" in sys.argv
    with fatal_errors(comm):
        for cov in ("full", "diag", "spherical", "tied"):
            # tuning compiles every variant: once (diag) is enough to check that ranks agree
            os.environ["ASP_AUTOTUNE"] = "always" if tune and cov == "diag" else "off"
            check(comm, cov)
        default_init(comm)
        bad_input(comm)
    if comm.rank == 0:
        print("GMM-ALL-OK", flush=True)


def bad_input(comm):
    """Hyperparameters that differ between ranks are a ValueError on every rank (a rank
    with other values waited forever in another collective, or fitted another model); tiny
    shards still give the sample the components need."""
    X = np.random.default_rng(comm.rank).standard_normal((20, 2))
    for kw in ({"n_components": 2 + comm.rank}, {"reg_covar": 1e-6 * (1 + comm.rank)},
               {"covariance_type": ("full", "diag", "tied")[comm.rank % 3]}):
        try:
            DistributedGaussianMixture(**{"n_components": 2, **kw}, comm=comm).fit(X)
        except ValueError as exc:
            if comm.size > 1 and "mismatched hyperparameters" not in str(exc):
                raise
        else:
            if comm.size > 1:
                raise AssertionError(f"no ValueError for {kw} differing between ranks")
    # one value given as a NumPy scalar on one rank and a Python number on another agrees
    DistributedGaussianMixture(2, tol=np.float64(1e-3) if comm.rank else 1e-3,
                               max_iter=np.int64(20) if comm.rank else 20, comm=comm).fit(X)
    small = np.random.default_rng(7).standard_normal((1 + (comm.rank == comm.size - 1), 2))
    DistributedGaussianMixture(2, init_sample=2, comm=comm).fit(small + 5.0 * comm.rank)


if __name__ == "__main__":
    sys.exit(main())
