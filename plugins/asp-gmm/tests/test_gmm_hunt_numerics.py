"""Regression tests from a hunt for numerical and data edge cases of ``GaussianMixture``
(see /work/notes/hunt_gmm_numerics.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from asp_gmm import GaussianMixture
from sklearn.exceptions import ConvergenceWarning


def _two_clusters(scale: float) -> np.ndarray:
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))])
    return (X * scale).astype(np.float32)


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_float32_fit_whose_covariances_overflow_float32_is_an_error(cov):
    """float32 data of spread 1e20: the float64 covariances (1e40) do not fit float32. The
    cast made ``covariances_`` inf without an error, and ``sample()`` returned inf and nan
    (scikit-learn, computing in float32, fails too: an error from SciPy or a model of nan)."""
    X = _two_clusters(1e20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning))
        with pytest.raises(ValueError, match="covariances do not fit float32.*float64 data"):
            GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_float32_fit_whose_covariances_fit_float32_still_fits(cov):
    """The check is on the range, not on the scale: spread 1e18, covariances about 1e37."""
    X = _two_clusters(1e18)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning))
        gm = GaussianMixture(2, covariance_type=cov, random_state=0).fit(X)
        samples, _ = gm.sample(5)
    assert gm.covariances_.dtype == np.float32
    assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(samples))
