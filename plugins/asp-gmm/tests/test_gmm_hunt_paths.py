"""Differential checks against scikit-learn on the less-travelled paths of ``fit``: the types of
the lower bounds, warm-start sequences with changed hyper-parameters, ``n_init`` with every
``init_params``, and the draws a fit takes from a shared ``RandomState``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from asp_gmm import GaussianMixture

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


def _blobs(n: int = 60, d: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 1.0, (n, d)), rng.normal(3.0, 1.5, (n, d)),
                           rng.normal(0.0, 0.5, (n // 3, d))])


def _fit_both(X: np.ndarray, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of short fits, alike in both
        return SkGaussianMixture(**params).fit(X), GaussianMixture(**params).fit(X)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lower_bounds_are_numpy_scalars_of_the_data_dtype(dtype, cov):
    """scikit-learn's lower_bound_ and lower_bounds_ are NumPy scalars of the data's dtype
    (np.float32 for float32 data); ours were Python floats, without ``dtype`` and in float64
    precision for float32 data."""
    X = _blobs().astype(dtype)
    ref, ours = _fit_both(X, n_components=3, covariance_type=cov, max_iter=3, random_state=0)
    assert type(ours.lower_bound_) is type(ref.lower_bound_) is np.dtype(dtype).type
    assert [type(b) for b in ours.lower_bounds_] == [type(b) for b in ref.lower_bounds_]
    assert np.asarray(ours.lower_bounds_).dtype == np.asarray(ref.lower_bounds_).dtype
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-5)


def test_no_iteration_leaves_the_python_float_minus_inf():
    """With max_iter=0 no lower bound is computed: scikit-learn's -inf stays a Python float."""
    X = _blobs()
    ref, ours = _fit_both(X, n_components=3, max_iter=0, n_init=2, random_state=0)
    assert type(ours.lower_bound_) is type(ref.lower_bound_) is float
    assert ours.lower_bound_ == ref.lower_bound_ == -np.inf
    assert ours.lower_bounds_ == ref.lower_bounds_ == []


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_warm_start_sequence_with_changed_hyperparameters_follows_sklearn(cov):
    """set_params between warm fits (max_iter, tol, reg_covar, max_iter=0): each fit goes on
    from the last, with the same iterations, convergence and lower bounds as scikit-learn."""
    X = _blobs(seed=2)
    steps = [{}, {"max_iter": 5}, {"tol": 0.0}, {"reg_covar": 0.5}, {"max_iter": 0},
             {"max_iter": 3, "reg_covar": 1e-6}]
    models = [cls(3, covariance_type=cov, warm_start=True, max_iter=2, random_state=0)
              for cls in (SkGaussianMixture, GaussianMixture)]
    for step in steps:
        ref, ours = _fit_both_in_place(models, X, step)
        assert (ours.n_iter_, ours.converged_) == (ref.n_iter_, ref.converged_), step
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
        np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-5, atol=1e-8)


def _fit_both_in_place(models: list, X: np.ndarray, params: dict):
    for model in models:
        model.set_params(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
    return models


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_a_shared_random_state_is_advanced_as_sklearn_advances_it(init_params):
    """Two fits and a sample on one RandomState instance (n_init=2): the same models, samples
    and the same state left, so code after the fit draws what it draws after scikit-learn's."""
    X = _blobs(seed=6)
    states, results = [], []
    for cls in (SkGaussianMixture, GaussianMixture):
        rs = np.random.RandomState(11)
        model = cls(4, covariance_type="diag", init_params=init_params, n_init=2,
                    random_state=rs)
        first = model.fit(X).means_.copy()
        model.fit(X)
        results.append((first, model.means_, model.sample(5)[0]))
        states.append(rs.randint(1 << 30))
    assert states[0] == states[1]
    for theirs, ours in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_kmeans_plusplus_seeding_one_sample_twice_starts_both_components_from_it(cov):
    """With fewer distinct samples than components, k-means++ seeds one sample twice (here
    sample 0 starts components 1 and 3) and scikit-learn's one-hot responsibilities start
    both from it; our labels kept only the last, and component 1 started empty (weight 0,
    mean 0): another first lower bound and another mixture."""
    from sklearn.cluster import kmeans_plusplus

    X = np.repeat(np.random.default_rng(8).normal(size=(3, 2)), 4, axis=0)
    _, seeds = kmeans_plusplus(X, 4, random_state=np.random.RandomState(1))
    assert list(seeds) == [5, 0, 8, 0]  # the case under test
    for max_iter in (1, 100):
        ref, ours = _fit_both(X, n_components=4, covariance_type=cov, init_params="k-means++",
                              max_iter=max_iter, random_state=1)
        np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
        np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_integer_X_is_scored_as_floats(cov):
    """The E-step methods read integer X as float64 (docs/guides/gmm.md: scikit-learn's full
    and tied log-densities of integer X are truncated to integers)."""
    X = np.round(_blobs(seed=1)).astype(np.int64)
    model = GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)
    Xf = X.astype(np.float64)
    np.testing.assert_array_equal(model.predict(X), model.predict(Xf))
    np.testing.assert_allclose(model.predict_proba(X), model.predict_proba(Xf), rtol=1e-12)
    np.testing.assert_allclose(model.score_samples(X), model.score_samples(Xf), rtol=1e-12)
    assert model.score(X) == pytest.approx(model.score(Xf), rel=1e-12)
