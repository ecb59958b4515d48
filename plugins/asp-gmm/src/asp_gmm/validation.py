"""Checks of the estimator's hyper-parameters and initial parameters, with scikit-learn's
messages but without its private validation machinery.

scikit-learn validates through ``sklearn.utils._param_validation`` and the ``_check_*``
helpers of ``sklearn.mixture._gaussian_mixture``; both are private and change between minor
releases. These functions raise ``ValueError`` / ``TypeError`` with the same text (scikit-learn's
``InvalidParameterError`` is a subclass of both), from public ``sklearn.utils`` functions only.
"""

from __future__ import annotations

from math import inf
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils import check_array

__all__ = ["check_hyperparameters", "check_initial_parameters"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def _fail(name: str, what: str, value: Any, exc: type = ValueError) -> None:
    raise exc(f"The {name!r} parameter of GaussianMixture must be {what}. Got {value!r} "
              "instead.")


def _integer(name: str, value: Any, low: int) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        _fail(name, f"an int in the range [{low}, inf)", value)


def _real(name: str, value: Any) -> None:
    if not isinstance(value, Real) or isinstance(value, bool) or not 0.0 <= float(value) < inf:
        _fail(name, "a float in the range [0.0, inf)", value)


def _one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        listed = ", ".join(repr(o) for o in sorted(options))
        _fail(name, f"a str among {{{listed}}}", value)


def check_hyperparameters(est: Any) -> None:
    """The constructor arguments of ``est`` (an ``asp_gmm.GaussianMixture``)."""
    _integer("n_components", est.n_components, 1)
    _one_of("covariance_type", est.covariance_type, COVARIANCE_TYPES)
    _real("tol", est.tol)
    _real("reg_covar", est.reg_covar)
    _integer("max_iter", est.max_iter, 0)
    _integer("n_init", est.n_init, 1)
    _one_of("init_params", est.init_params, INIT_PARAMS)
    if not isinstance(est.warm_start, (bool, np.bool_)):
        _fail("warm_start", "an instance of 'bool' or an instance of 'numpy.bool'",
              est.warm_start)
    if not isinstance(est.verbose, (bool, np.bool_)):  # scikit-learn takes a bool too
        _integer("verbose", est.verbose, 0)
    _integer("verbose_interval", est.verbose_interval, 1)
    if est.asp_options is not None and not isinstance(est.asp_options, dict):
        _fail("asp_options", "an instance of 'dict' or None", est.asp_options)


def _check_shape(param: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if param.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got "
                         f"{param.shape}")


def _weights(weights: Any, n_components: int) -> np.ndarray:
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError("The parameter 'weights' should be in the range [0, 1], but got max "
                         f"value {np.min(weights):.5f}, min value {np.max(weights):.5f}")
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError("The parameter 'weights' should be normalized, but got "
                         f"sum(weights) = {np.sum(weights):.5f}")
    return weights


def _precision_matrix(precision: np.ndarray, covariance_type: str) -> None:
    if not (np.all(np.isclose(precision, precision.T))
            and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError(f"'{covariance_type} precision' should be symmetric, "
                         "positive-definite")


def _precisions(precisions: Any, covariance_type: str, n_components: int, n_features: int
                ) -> np.ndarray:
    precisions = check_array(precisions, dtype=[np.float64, np.float32], ensure_2d=False,
                             allow_nd=covariance_type == "full")
    shape = {"full": (n_components, n_features, n_features), "tied": (n_features, n_features),
             "diag": (n_components, n_features), "spherical": (n_components,)}[covariance_type]
    _check_shape(precisions, shape, f"{covariance_type} precision")
    if covariance_type == "full":
        for matrix in precisions:
            _precision_matrix(matrix, covariance_type)
    elif covariance_type == "tied":
        _precision_matrix(precisions, covariance_type)
    elif np.any(precisions <= 0.0):
        raise ValueError(f"'{covariance_type} precision' should be positive")
    return precisions


def check_initial_parameters(est: Any, n_features: int
                             ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(weights_init, means_init, precisions_init)`` of ``est`` checked and as arrays (None
    where not given)."""
    M = est.n_components
    weights = None if est.weights_init is None else _weights(est.weights_init, M)
    means = None
    if est.means_init is not None:
        means = check_array(est.means_init, dtype=[np.float64, np.float32], ensure_2d=False)
        _check_shape(means, (M, n_features), "means")
    precisions = None
    if est.precisions_init is not None:
        precisions = _precisions(est.precisions_init, est.covariance_type, M, n_features)
    return weights, means, precisions
