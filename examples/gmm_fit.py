"""Fit a 8-component full-covariance Gaussian mixture with asp-gmm and compare with
scikit-learn. ``asp explain examples/gmm_fit.py`` shows the phases, the variants and their
EM-iteration timings."""

import numpy as np
from asp_gmm import GaussianMixture
from sklearn.mixture import GaussianMixture as SkGaussianMixture

rng = np.random.default_rng(0)
centers = rng.normal(scale=1.5, size=(8, 6))
X = centers[rng.integers(0, 8, 50_000)] + rng.normal(size=(50_000, 6))

ours = GaussianMixture(8, covariance_type="full", random_state=0, max_iter=40, tol=1e-9).fit(X)
ref = SkGaussianMixture(8, covariance_type="full", random_state=0, max_iter=40, tol=1e-9).fit(X)
print(f"asp-gmm  : {ours.n_iter_} iterations, lower bound {ours.lower_bound_:.10f}")
print(f"sklearn  : {ref.n_iter_} iterations, lower bound {ref.lower_bound_:.10f}")
