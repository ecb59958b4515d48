"""The distributed Gaussian mixture against ``asp_gmm.GaussianMixture`` on the concatenated
data: shards of uneven sizes (one with no sample, one with fewer samples than components),
float32 and float64. Each test launches an inline script under ``mpiexec``; every rank checks
its own fitted model and prints one OK line."""

from __future__ import annotations

import pytest

from pytest_asp import requires_mpi
from pytest_asp.mpi import assert_every_rank_prints

# the data and its uneven shards: with 3 ranks, rank 1 holds no sample and rank 2 one (fewer
# than the 3 components); with 2 ranks, rank 1 holds one
PRELUDE = """
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture
from asp_gmm.estimator import GaussianMixture

warnings.simplefilter("ignore")
comm = world()


def data(offset=0.0):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.standard_normal((30, 2)), rng.standard_normal((30, 2)) + 4,
                        0.5 * rng.standard_normal((30, 2)) + [0, 5]])
    rng.shuffle(X)
    return X + offset


def shard(X):
    cuts = {1: [0, len(X)], 2: [0, len(X) - 1, len(X)],
            3: [0, len(X) - 1, len(X) - 1, len(X)]}[comm.size]
    return X[cuts[comm.rank]:cuts[comm.rank + 1]]


def same(a, b, names, rtol):
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, (name, x.dtype, y.dtype)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=name)
"""

LOWER_BOUNDS = """
with fatal_errors(comm):
    for dtype in (np.float32, np.float64):
        X = data().astype(dtype)
        for max_iter in (0, 1, 100):
            kw = dict(covariance_type="diag", max_iter=max_iter, random_state=0)
            ref = GaussianMixture(3, **kw).fit(X)
            dist = DistributedGaussianMixture(3, comm=comm, **kw).fit(shard(X))
            assert type(dist.lower_bound_) is type(ref.lower_bound_), (
                dtype, max_iter, type(dist.lower_bound_), type(ref.lower_bound_))
            assert [type(b) for b in dist.lower_bounds_] == [type(b) for b in
                                                             ref.lower_bounds_], (dtype, max_iter)
            assert dist.n_iter_ == ref.n_iter_ and dist.converged_ == ref.converged_
            np.testing.assert_allclose(dist.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    print(f"BOUNDS-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
def test_mpi_gmm_lower_bounds_are_numpy_scalars_of_the_data_dtype(tmp_path):
    """``lower_bound_`` and ``lower_bounds_`` of a distributed fit were Python floats (no
    dtype, float64 precision for float32 data) where the one-process estimator's (and
    scikit-learn's) are NumPy scalars of X's dtype; they now are, and ``lower_bound_`` stays
    the Python float -inf with ``max_iter=0``, as there."""
    assert_every_rank_prints(PRELUDE + LOWER_BOUNDS, "BOUNDS-OK", 3, tmp_path)


LAST_INIT = """
with fatal_errors(comm):
    X = data()
    for cov in ("full", "spherical"):
        kw = dict(covariance_type=cov, n_init=3, max_iter=0, init_params="random",
                  random_state=1)
        ref = GaussianMixture(3, **kw).fit(X)
        dist = DistributedGaussianMixture(3, comm=comm, **kw).fit(shard(X))
        same(dist, ref, ("weights_", "means_", "covariances_", "precisions_cholesky_"),
             rtol=1e-10)
    print(f"LAST-INIT-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
def test_mpi_gmm_n_init_without_iterations_keeps_the_last_initialisation(tmp_path):
    """With ``max_iter=0`` and ``n_init > 1`` no initialisation has a lower bound (-inf):
    scikit-learn and the one-process estimator keep the last one, the distributed fit kept
    the first. It now keeps the last."""
    assert_every_rank_prints(PRELUDE + LAST_INIT, "LAST-INIT-OK", 3, tmp_path)


FLOAT32_INIT = """
with fatal_errors(comm):
    X = data().astype(np.float32)
    for init in ("k-means++", "random_from_data"):
        kw = dict(covariance_type="diag", init_params=init, max_iter=0, random_state=0)
        ref = GaussianMixture(3, **kw).fit(X)
        dist = DistributedGaussianMixture(3, comm=comm, **kw).fit(shard(X))
        same(dist, ref, ("weights_", "means_", "covariances_", "precisions_cholesky_"),
             rtol=1e-6)
    print(f"INIT32-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
def test_mpi_gmm_float32_initialisation_is_the_one_process_one(tmp_path):
    """Rank 0 initialised with scikit-learn's private initialisation on a float64 copy of the
    gathered float32 sample: its initial M-step added float64's 10 eps to the counts where
    the one-process fit (and scikit-learn) add float32's, so the k-means++ and
    random_from_data starts had means 1e-6 off and covariances (about reg_covar) several
    times off, and EM went elsewhere. Rank 0 now starts as the one-process estimator does."""
    assert_every_rank_prints(PRELUDE + FLOAT32_INIT, "INIT32-OK", 2, tmp_path)


FLOAT32_EM = """
with fatal_errors(comm):
    X = data(offset=100.0).astype(np.float32)
    means = np.array([[100, 100], [104, 104], [100, 105]])
    for cov in ("full", "tied", "diag", "spherical"):
        kw = dict(covariance_type=cov, means_init=means, max_iter=3, tol=0.0, random_state=0)
        ref = GaussianMixture(3, **kw).fit(X)
        dist = DistributedGaussianMixture(3, comm=comm, **kw).fit(shard(X))
        same(dist, ref, ("weights_", "means_", "covariances_", "precisions_cholesky_"),
             rtol=1e-5)
    print(f"EM32-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_float32_em_over_shards_is_the_one_process_em(nprocs, tmp_path):
    """Each shard's counts carry scikit-learn's 10 eps, whose means shrink towards the origin;
    summing the shards' scatter took that shrinkage once per shard, so the covariances were
    off by (shards - 1) * 10 eps * c**2 / nk (c: the incoming means). For float32 data
    (10 eps = 1.2e-6) 100 from the origin that is 1e-3 relative after one iteration. The
    shards now send the plain scatter and the sum adds the shrinkage once."""
    assert_every_rank_prints(PRELUDE + FLOAT32_EM, "EM32-OK", nprocs, tmp_path)


WARM_START = """
with fatal_errors(comm):
    X = data()
    names = ("weights_", "means_", "covariances_", "precisions_cholesky_")
    for cov in ("full", "diag"):
        kw = dict(covariance_type=cov, max_iter=2, random_state=0)
        ref = GaussianMixture(3, warm_start=True, **kw)
        dist = DistributedGaussianMixture(3, comm=comm, warm_start=True, **kw)
        # four fits of two iterations each: not converged, converged in 2, then in 1 (the
        # first change is measured from the previous fit's lower bound)
        for _ in range(4):
            ref.fit(X)
            assert dist.fit_predict(shard(X)).shape == (len(shard(X)),)
            same(dist, ref, names, rtol=1e-10)
            np.testing.assert_allclose(dist.lower_bound_, ref.lower_bound_, rtol=1e-10)
            assert (dist.n_iter_, dist.converged_) == (ref.n_iter_, ref.converged_), (
                cov, dist.n_iter_, dist.converged_, ref.n_iter_, ref.converged_)
        assert (ref.n_iter_, ref.converged_) == (1, True)
        # no iteration: the parameters stay, the lower bound is -inf (not the previous one)
        ref.max_iter = dist.max_iter = 0
        ref.fit(X)
        dist.fit(shard(X))
        same(dist, ref, names, rtol=1e-10)
        assert dist.lower_bound_ == ref.lower_bound_ == -np.inf
        assert (dist.n_iter_, dist.converged_) == (0, False)
        # warm_start=False: every fit initialises again, the warm fits went on from the first
        cold = DistributedGaussianMixture(3, comm=comm, **kw)
        first = cold.fit(shard(X)).means_.copy()
        cold.fit(shard(X))
        same(cold, GaussianMixture(3, **kw).fit(X), names, rtol=1e-10)
        np.testing.assert_array_equal(cold.means_, first)
        assert not np.allclose(dist.means_, first, rtol=1e-6)

    # a non-bool warm_start: scikit-learn's message on every rank, no rank left waiting
    try:
        DistributedGaussianMixture(3, comm=comm, warm_start="yes").fit(shard(X))
    except ValueError as exc:
        assert str(exc) == ("The 'warm_start' parameter of DistributedGaussianMixture must be "
                            "an instance of 'bool' or an instance of 'numpy.bool'. Got 'yes' "
                            "instead."), str(exc)
    else:
        raise AssertionError("no ValueError for warm_start='yes'")
    # one rank warm-starting a fitted model while another initialises: a ValueError on both
    # (the others waited in the initialisation's collectives)
    lonely = DistributedGaussianMixture(3, comm=comm, warm_start=True, max_iter=2)
    if comm.rank == 0:   # fitted on this rank alone
        from mpi4py import MPI

        lonely.comm = MPI.COMM_SELF
        lonely.fit(X)
        lonely.comm = comm
    try:
        lonely.fit(shard(X))
    except ValueError as exc:
        assert "mismatched warm start" in str(exc), str(exc)
    else:
        raise AssertionError("no ValueError for a warm start on one rank only")
    print(f"WARM-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
def test_mpi_gmm_warm_start_is_the_one_process_warm_start(tmp_path):
    """``DistributedGaussianMixture`` had no ``warm_start``: a second fit always initialised
    again, where ``asp_gmm.GaussianMixture`` (and scikit-learn) go on from the fitted model.
    Repeated warm fits now equal the one-process ones (parameters, lower bound, iterations,
    convergence), ``warm_start=False`` still initialises each fit, and a non-bool
    ``warm_start`` is scikit-learn's error on every rank."""
    assert_every_rank_prints(PRELUDE + WARM_START, "WARM-OK", 2, tmp_path)
