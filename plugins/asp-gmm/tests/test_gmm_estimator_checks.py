"""scikit-learn's estimator checks on asp_gmm.GaussianMixture (no expected failures)."""

from __future__ import annotations

from asp_gmm import GaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks


@parametrize_with_checks([GaussianMixture(), GaussianMixture(covariance_type="diag")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
