"""Small dense linear algebra of the M-step, mirroring scikit-learn's numerics.

The per-component Cholesky factorisations are O(M D^3) and run once per EM iteration, so they
stay in NumPy/SciPy; what matters is that they behave exactly like scikit-learn's
(``_compute_precision_cholesky``): the same factorisation, the same error text for a collapsed
component, the same log-determinant. SciPy is imported lazily.
"""

from __future__ import annotations

from typing import Any

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


def precision_cholesky(covariances: np.ndarray, covariance_type: str, *,
                       data_dtype: Any = None) -> np.ndarray:
    """Cholesky factors of the precisions (upper-triangular for full/tied), as scikit-learn.

    Raises ``ValueError`` with scikit-learn's message when a covariance is not positive
    definite (a collapsed component), and one naming the overflow when a covariance is not
    finite (scikit-learn goes on with nan there). ``data_dtype``: the dtype of the data the
    covariances come from (default theirs): for float32 data the message suggests float64, as
    scikit-learn's does (the covariances of a float32 fit are float64 here).
    """
    if not np.all(np.isfinite(covariances)):   # scikit-learn returns a model of nan here
        raise ValueError("Fitting the mixture model failed because some components have "
                         "covariances that are not finite (inf or nan): the data's spread "
                         "overflows the floating-point range. Scale the input data.")
    message = ILL_DEFINED
    if np.dtype(covariances.dtype if data_dtype is None else data_dtype) == np.float32:
        message += (" The numerical accuracy can also be improved by passing float64"
                    " data instead of float32.")
    if covariance_type == "full":
        # all components at once (LAPACK per matrix, one Python call): M separate SciPy calls
        # cost ~1 ms each, more than the compiled EM iteration at small N
        try:
            chol = np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError:
            raise ValueError(message) from None
        eye = np.broadcast_to(np.eye(covariances.shape[-1], dtype=covariances.dtype),
                              covariances.shape)
        return np.transpose(np.linalg.solve(chol, eye), (0, 2, 1))
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
    # scikit-learn's factors are upper-triangular U with P = U U^T: the Cholesky factor of P
    # with its rows and columns reversed, reversed back
    if covariance_type in ("full", "tied"):
        flipped = np.flip(np.asarray(precisions), axis=(-2, -1))
        return np.flip(np.linalg.cholesky(flipped), axis=(-2, -1))
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
