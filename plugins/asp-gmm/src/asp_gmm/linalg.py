"""Small dense linear algebra of the M-step, mirroring scikit-learn's numerics.

The per-component Cholesky factorisations are O(M D^3) and run once per EM iteration, so they
stay in NumPy/SciPy; what matters is that they behave exactly like scikit-learn's
(``_compute_precision_cholesky``): the same factorisation, the same error text for a collapsed
component, the same log-determinant. SciPy is imported lazily.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COVARIANCE_TYPES",
    "ILL_DEFINED",
    "covariances_from_precision_cholesky",
    "log_det_cholesky",
    "precision_cholesky",
    "precision_cholesky_from_precisions",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


def _solve_lower(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import solve_triangular
    except ImportError:  # pragma: no cover - scipy is a dependency of scikit-learn
        return np.linalg.solve(chol, rhs)
    return solve_triangular(chol, rhs, lower=True)


def _cholesky_lower(matrix: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import cholesky
    except ImportError:  # pragma: no cover
        return np.linalg.cholesky(matrix)
    return cholesky(matrix, lower=True)


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precisions (upper-triangular for full/tied), as scikit-learn.

    Raises ``ValueError`` with scikit-learn's message when a covariance is not positive
    definite (a collapsed component).
    """
    message = ILL_DEFINED
    if covariances.dtype == np.float32:
        message += (" The numerical accuracy can also be improved by passing float64"
                    " data instead of float32.")
    if covariance_type == "full":
        n_components, n_features, _ = covariances.shape
        out = np.empty((n_components, n_features, n_features), dtype=covariances.dtype)
        eye = np.eye(n_features, dtype=covariances.dtype)
        for k in range(n_components):
            try:
                chol = _cholesky_lower(covariances[k])
            except np.linalg.LinAlgError:
                raise ValueError(message) from None
            out[k] = _solve_lower(chol, eye).T
        return out
    if covariance_type == "tied":
        n_features = covariances.shape[0]
        try:
            chol = _cholesky_lower(covariances)
        except np.linalg.LinAlgError:
            raise ValueError(message) from None
        return _solve_lower(chol, np.eye(n_features, dtype=covariances.dtype)).T
    if np.any(covariances <= 0.0):
        raise ValueError(message)
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str
                                       ) -> np.ndarray:
    """The precision Cholesky factors from user-given precisions (``precisions_init``)."""
    if covariance_type == "full":
        return np.stack([np.linalg.cholesky(p) for p in precisions])
    if covariance_type == "tied":
        return np.linalg.cholesky(precisions)
    return np.sqrt(precisions)


def covariances_from_precision_cholesky(prec_chol: np.ndarray, covariance_type: str
                                        ) -> np.ndarray:
    """Covariances whose precision Cholesky factors are ``prec_chol``."""
    if covariance_type == "full":
        return np.stack([np.linalg.inv(pc @ pc.T) for pc in prec_chol])
    if covariance_type == "tied":
        return np.linalg.inv(prec_chol @ prec_chol.T)
    return 1.0 / prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int
                     ) -> np.ndarray | float:
    """log det of each precision Cholesky factor (scikit-learn's ``_compute_log_det_cholesky``)."""
    if covariance_type == "full":
        n_components = prec_chol.shape[0]
        return np.sum(np.log(prec_chol.reshape(n_components, -1)[:, :: n_features + 1]), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(prec_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)
