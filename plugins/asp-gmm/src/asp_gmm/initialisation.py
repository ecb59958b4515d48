"""scikit-learn's initialisation of a Gaussian mixture, with the initial M-step compiled.

The responsibilities come from exactly what scikit-learn draws (its k-means and k-means++ with
their passes compiled, :mod:`asp_gmm.kmeans`, or its public ``KMeans`` and ``kmeans_plusplus``
where those do not run compiled; the same calls on the same ``RandomState``), so a fit with the same
``random_state`` starts from the same point; the hard assignments of ``kmeans``, ``k-means++``
and ``random_from_data`` stay labels (N integers, -1 for none) instead of an N x M one-hot
matrix, and the M-step from them (counts, means, covariances) runs in the compiled
``m_step`` kernel (:func:`asp_gmm.engine.m_step`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from asp_gmm import engine
from asp_gmm.kmeans import kmeans_labels, kmeans_plusplus_indices
from asp_gmm.linalg import (covariances_from_precision_cholesky, precision_cholesky,
                            precision_cholesky_from_precisions)

__all__ = ["InitialParameters", "initial_parameters", "initial_responsibilities"]


class InitialParameters(NamedTuple):
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray  # from the precisions when precisions_init is given
    precisions_cholesky: np.ndarray


def _compiled_kmeans(X: np.ndarray, covariance_type: str) -> bool:
    """Whether the k-means passes run compiled: float64 data of a mixture whose kernels are
    compiled (full, diag) in a mode that compiles; otherwise scikit-learn's own KMeans runs
    (float32 k-means is scikit-learn's float32 arithmetic, kept exactly)."""
    from asp_core import config

    return (X.dtype == np.float64 and covariance_type in ("full", "diag")
            and config.mode() != "python")


def initial_responsibilities(X: np.ndarray, n_components: int, init_params: str,
                             random_state: np.random.RandomState, covariance_type: str = "full",
                             options: dict[str, Any] | None = None) -> np.ndarray:
    """Labels (int64, N) or dense responsibilities (float64, N x M), drawn as scikit-learn's
    ``BaseMixture._initialize_parameters`` draws them (k-means through
    :mod:`asp_gmm.kmeans` when it runs compiled)."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    N, M = X.shape[0], n_components
    compiled = _compiled_kmeans(X, covariance_type)
    if init_params == "kmeans":
        if compiled:
            return kmeans_labels(X, M, random_state, covariance_type, options)
        km = KMeans(n_clusters=M, n_init=1, random_state=random_state).fit(X)
        return np.asarray(km.labels_, dtype=np.int64)
    if init_params == "random":
        resp = np.asarray(random_state.uniform(size=(N, M)), dtype=X.dtype)
        resp /= resp.sum(axis=1)[:, np.newaxis]
        return resp.astype(np.float64, copy=False)
    if init_params == "random_from_data":
        indices = random_state.choice(N, size=M, replace=False)
    elif compiled:  # k-means++
        indices = kmeans_plusplus_indices(X, M, random_state, covariance_type, options)
    else:
        _, indices = kmeans_plusplus(X, M, random_state=random_state)
    return _one_sample_per_component(indices, N)


def _one_sample_per_component(indices: np.ndarray, n_samples: int) -> np.ndarray:
    """Component k starts from sample ``indices[k]``: labels (-1 for the other samples), or,
    where a sample starts two components, scikit-learn's one-hot responsibilities (N x M),
    whose row of that sample has a one in each. k-means++ picks one sample twice where fewer
    distinct samples than components remain (all their distances 0); as labels, the last
    write won and the other component started with no sample (weight 0, mean 0)."""
    M = len(indices)
    if len(np.unique(indices)) < M:
        resp = np.zeros((n_samples, M))
        resp[indices, np.arange(M)] = 1.0
        return resp
    labels = np.full(n_samples, -1, dtype=np.int64)
    labels[indices] = np.arange(M)
    return labels


def initial_parameters(est: Any, X: np.ndarray, random_state: np.random.RandomState,
                       weights_init: np.ndarray | None, means_init: np.ndarray | None,
                       precisions_init: np.ndarray | None) -> InitialParameters:
    """scikit-learn's ``GaussianMixture._initialize`` for ``est``: the responsibilities are
    computed only when some initial parameter is missing, given ones take precedence, and the
    initial weights are the counts over N."""
    cov_type = est.covariance_type
    step: Any = None  # set whenever a parameter below is missing
    if weights_init is None or means_init is None or precisions_init is None:
        resp = initial_responsibilities(X, est.n_components, est.init_params, random_state,
                                        cov_type, est.asp_options)
        step = engine.m_step(X, resp, est.n_components, cov_type, float(est.reg_covar),
                             options=est.asp_options, wait_for_compile=False)
    weights = step.weights if weights_init is None else weights_init
    means = step.means if means_init is None else means_init
    if precisions_init is None:
        covariances = step.covariances
        prec_chol = precision_cholesky(covariances, cov_type, data_dtype=X.dtype)
    else:
        # scikit-learn leaves covariances_ unset here; a fit with max_iter=0 kept None, and
        # sample() failed on it
        prec_chol = precision_cholesky_from_precisions(precisions_init, cov_type)
        covariances = covariances_from_precision_cholesky(prec_chol, cov_type)
    return InitialParameters(np.asarray(weights, dtype=np.float64),
                             np.asarray(means, dtype=np.float64),
                             np.asarray(covariances, dtype=np.float64),
                             np.asarray(prec_chol, dtype=np.float64))
