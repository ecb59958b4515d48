"""Regression tests of asp_gmm.distributed (notes/hunt_gmm_s5.md): each launches an inline
script under ``mpiexec`` whose ranks print one OK line each."""

from __future__ import annotations

import os

import pytest

from pytest_asp import requires_mpi
from pytest_asp.mpi import assert_every_rank_prints, run_mpi


FLOAT32_ATTRIBUTES = """
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture
from asp_gmm.estimator import GaussianMixture

warnings.simplefilter("ignore")
comm = world()
with fatal_errors(comm):
    rng = np.random.default_rng(1)
    n, d, m = 120, 2, 2
    X = np.concatenate([rng.standard_normal((n // 2, d)), rng.standard_normal((n // 2, d)) + 4])
    X = X.astype(np.float32)
    cuts = np.linspace(0, n, comm.size + 1).astype(int)
    shard = X[cuts[comm.rank]:cuts[comm.rank + 1]]
    for cov in ("full", "tied", "diag", "spherical"):
        kw = dict(covariance_type=cov, weights_init=[0.5, 0.5], means_init=[[0, 0], [4, 4]],
                  max_iter=20, tol=1e-8)
        ref = GaussianMixture(m, **kw).fit(X)
        dist = DistributedGaussianMixture(m, comm=comm, **kw).fit(shard)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                     "precisions_"):
            a, b = getattr(dist, name), getattr(ref, name)
            assert a.dtype == b.dtype == np.float32, (cov, name, a.dtype, b.dtype)
            assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (cov, name, a, b)
        lo, hi = cuts[comm.rank], cuts[comm.rank + 1]
        for method in ("predict_proba", "score_samples"):
            a, b = getattr(dist, method)(shard), getattr(ref, method)(X)[lo:hi]
            assert a.dtype == b.dtype, (cov, method, a.dtype, b.dtype)
            assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (cov, method)
        assert np.array_equal(dist.predict(shard), ref.predict(X)[lo:hi]), cov
        assert np.isclose(dist.score(shard), ref.score(X), rtol=1e-6), cov
    print(f"FLOAT32-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_float32_fit_keeps_float32_attributes(nprocs, tmp_path):
    """A float32 distributed fit kept float64 fitted attributes (and returned float64
    responsibilities and log-likelihoods), where ``asp_gmm.GaussianMixture`` and scikit-learn
    keep float32. Now the dtypes, and the values to float32 rounding, are the one-process
    fit's."""
    assert_every_rank_prints(FLOAT32_ATTRIBUTES, "FLOAT32-OK", nprocs, tmp_path)


EMPTY_EVERYWHERE = """
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture

comm = world()
with fatal_errors(comm):
    X = np.random.default_rng(comm.rank).standard_normal((40, 2))
    gmm = DistributedGaussianMixture(2, comm=comm, random_state=0).fit(X)
    empty = np.zeros((0, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a nan with a RuntimeWarning is not an answer
        for method in ("score", "bic", "aic"):
            try:
                value = getattr(gmm, method)(empty)
            except ValueError as exc:
                assert "0 sample(s)" in str(exc), str(exc)
            else:
                raise AssertionError(f"{method} of no samples gave {value} on rank {comm.rank}")
    # the ranks are still in step: a collective call after the errors works
    assert np.isfinite(gmm.score(X))
    print(f"EMPTY-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_score_bic_aic_of_no_samples_raise_on_every_rank(nprocs, tmp_path):
    """``score``/``bic``/``aic`` when every rank's shard is empty returned nan (``bic`` -inf,
    ``aic`` a finite number) with a RuntimeWarning; scikit-learn raises ValueError for empty
    X. Every rank now raises it, and the ranks stay in step."""
    assert_every_rank_prints(EMPTY_EVERYWHERE, "EMPTY-OK", nprocs, tmp_path)


PICKLE_FITTED = """
import copy
import pickle
import sys
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture

warnings.simplefilter("ignore")
comm = world()
with fatal_errors(comm):
    X = np.random.default_rng(comm.rank).standard_normal((60, 3)) + 3 * comm.rank
    mine = comm.Split(0, comm.rank)   # a communicator of the user's: not picklable itself
    gmm = DistributedGaussianMixture(2, comm=mine, random_state=0).fit(X)
    twin = copy.deepcopy(gmm)
    assert twin.comm is mine
    np.testing.assert_array_equal(twin.predict_proba(X), gmm.predict_proba(X))
    np.testing.assert_array_equal(twin.fit(X).means_, gmm.means_)   # over the same ranks
    everything = np.concatenate(comm.allgather(X))
    scores = gmm.score_samples(everything)   # collective (its validation), as score is
    if comm.rank == 0:
        with open(sys.argv[1], "wb") as f:
            pickle.dump((gmm, everything, scores), f)
    print(f"PICKLED-OK rank {comm.rank}", flush=True)
"""

UNPICKLE = """
import pickle
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
with open(sys.argv[1], "rb") as f:
    gmm, X, scores = pickle.load(f)
np.testing.assert_allclose(gmm.score_samples(X), scores, rtol=1e-12)
assert np.isclose(gmm.score(X), scores.mean(), rtol=1e-12)   # one process: the whole data
gmm.fit(X)                                                   # and it refits
assert np.all(np.isfinite(gmm.score_samples(X)))
print("UNPICKLED-OK")
"""


@requires_mpi
def test_mpi_gmm_fitted_model_pickles_and_predicts_in_a_fresh_process(tmp_path):
    """A fitted ``DistributedGaussianMixture`` could be neither pickled (AttributeError: a
    local tuning callback) nor deep-copied (ctypes pointers): ``engine_``, the fit's engine,
    went with it; with a communicator of the user's (``comm.Split``), "cannot serialize
    'mpi4py.MPI.Intracomm'". Saved on rank 0 now, it predicts, scores and refits in a new
    process."""
    import subprocess
    import sys

    saved = tmp_path / "gmm.pkl"
    script = tmp_path / "fit.py"
    script.write_text(PICKLE_FITTED)
    env = {"ASP_CACHE_DIR": str(tmp_path / "cache"), "ASP_AUTOTUNE": "off"}
    run = run_mpi(script, 2, timeout=120, args=[str(saved)], env=env)
    assert run.ok, run.describe()
    assert "PICKLED-OK rank 0" in run.stdout and "PICKLED-OK rank 1" in run.stdout
    fresh = subprocess.run([sys.executable, "-c", UNPICKLE, str(saved)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, **env})
    assert fresh.returncode == 0 and "UNPICKLED-OK" in fresh.stdout, fresh.stderr


ONE_SAMPLE_AND_UNFITTED = """
import numpy as np
from sklearn.exceptions import NotFittedError

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture

comm = world()
with fatal_errors(comm):
    X = np.random.default_rng(comm.rank).standard_normal((1 if comm.rank == 0 else 0, 2))
    try:
        DistributedGaussianMixture(1, comm=comm).fit(X)
    except ValueError as exc:
        assert "1 sample(s)" in str(exc) and "minimum of 2" in str(exc), str(exc)
    else:
        raise AssertionError(f"one sample over all ranks was fitted on rank {comm.rank}")
    for method in ("predict", "predict_proba", "score_samples", "score", "bic"):
        try:
            getattr(DistributedGaussianMixture(2, comm=comm), method)(X)
        except NotFittedError:
            pass
        else:
            raise AssertionError(f"{method} before fit did not raise NotFittedError")
    print(f"CHECKS-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_one_sample_and_unfitted_errors_are_sklearns(nprocs, tmp_path):
    """One sample over all ranks was fitted (a covariance of ``reg_covar`` alone) where
    scikit-learn and ``asp_gmm.GaussianMixture`` require two; the methods of an unfitted
    model raised ``AttributeError: ... no attribute 'means_'`` instead of scikit-learn's
    ``NotFittedError``. Both now give scikit-learn's error on every rank."""
    assert_every_rank_prints(ONE_SAMPLE_AND_UNFITTED, "CHECKS-OK", nprocs, tmp_path)


BAD_PARAMETERS = """
import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture

comm = world()
X = np.random.default_rng(comm.rank).standard_normal((50, 2)) + 4 * comm.rank
given = dict(weights_init=[0.5, 0.5], means_init=[[0, 0], [4, 4]],
             precisions_init=[np.eye(2), np.eye(2)])
cases = [
    ("normalized", dict(weights_init=[0.2, 0.2])),
    ("positive-definite", dict(given, precisions_init=[np.diag([1.0, -1.0])] * 2)),
    ("'diag precision' should be positive", dict(covariance_type="diag",
                                                 precisions_init=[[-1.0, 1.0], [1.0, 1.0]])),
    ("'init_params' parameter", dict(given, init_params="foo")),
    ("'tol' parameter", dict(tol=-1.0)),
    ("'max_iter' parameter", dict(max_iter=2.5)),
    ("'random_state' parameter", dict(random_state=-1 if comm.rank == comm.size - 1 else 0)),
    ("'init_sample' parameter", dict(init_sample=0)),
    ("'init_sample' parameter", dict(init_sample=3.5)),
    ("'init_sample' parameter", dict(init_sample="x")),
    ("Found array with 0 feature(s)", dict(features=0)),
]
with fatal_errors(comm):
    for text, kw in cases:
        try:
            data = X[:, :kw.pop("features")] if "features" in kw else X
            DistributedGaussianMixture(2, comm=comm, **kw).fit(data)
        except ValueError as exc:
            assert text in str(exc), (text, str(exc))
        else:
            raise AssertionError(f"{kw} was fitted on rank {comm.rank}")
    print(f"PARAMS-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_refuses_the_parameters_sklearn_refuses(nprocs, tmp_path):
    """The distributed estimator skipped scikit-learn's parameter checks: weights_init not
    summing to 1 and a negative tol were fitted, a bad init_params was ignored when the three
    initial parameters were given, a precisions_init that is not positive-definite gave
    LinAlgError (diag: "the data's spread overflows"), max_iter=2.5 a TypeError, and a bad
    random_state on one rank raised there alone (the other ranks went on into the fit's
    collectives). Now every rank raises scikit-learn's ValueError."""
    assert_every_rank_prints(BAD_PARAMETERS, "PARAMS-OK", nprocs, tmp_path)


EMPTY_SHARD_DTYPE = """
import warnings

import numpy as np

from asp_core.mpi import fatal_errors, world
from asp_gmm.distributed import DistributedGaussianMixture

warnings.simplefilter("ignore")
comm = world()
with fatal_errors(comm):
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.standard_normal((60, 2)), rng.standard_normal((60, 2)) + 4])
    X = X.astype(np.float32)
    shard = np.empty((0, 2)) if comm.rank == 0 else X[comm.rank - 1::comm.size - 1]
    gmm = DistributedGaussianMixture(2, comm=comm, means_init=[[0, 0], [4, 4]],
                                     max_iter=10).fit(shard)
    assert gmm.means_.dtype == np.float32, gmm.means_.dtype
    assert gmm.predict(shard).shape == (len(shard),)
    print(f"EMPTY-OK rank {comm.rank}", flush=True)
"""


@requires_mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_gmm_an_empty_float64_shard_next_to_float32_ones(nprocs, tmp_path):
    """``np.empty((0, D))`` is float64: next to float32 shards it failed the fit with
    "mismatched dtype of X", though shards may have any size, even 0."""
    assert_every_rank_prints(EMPTY_SHARD_DTYPE, "EMPTY-OK", nprocs, tmp_path)
