"""Checks of the estimator's hyper-parameters and initial parameters, with scikit-learn's
messages but without its private validation machinery, and the same checks of the paper
``GMM``'s arguments.

scikit-learn validates through ``sklearn.utils._param_validation`` and the ``_check_*``
helpers of ``sklearn.mixture._gaussian_mixture``; both are private and change between minor
releases. These functions raise what scikit-learn does, with the same text: a hyper-parameter
outside its constraint :class:`InvalidParameterError` (like scikit-learn's private class of that
name, both a ``ValueError`` and a ``TypeError``), the other checks ``ValueError``; from public
``sklearn.utils`` functions only.
scikit-learn is imported only where the estimator's checks need it (:func:`_check_array`): the
paper ``GMM`` runs without it.
"""

from __future__ import annotations

from math import inf
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["InvalidParameterError", "check_gmm_arguments", "check_gmm_covars",
           "check_gmm_means", "check_gmm_weights", "check_hyperparameters", "check_initial_parameters", "check_representable",
           "check_shared_hyperparameters", "fitted_parameters_fit"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


class InvalidParameterError(ValueError, TypeError):
    """A constructor argument outside what it may be (scikit-learn's ``InvalidParameterError``
    derives from both, so code written for scikit-learn may catch either)."""


def _fail(name: str, what: str, value: Any, owner: str = "GaussianMixture") -> None:
    raise InvalidParameterError(f"The {name!r} parameter of {owner} must be {what}. Got "
                                f"{value!r} instead.")


def _integer(name: str, value: Any, low: int, owner: str = "GaussianMixture",
             allow_bool: bool = True) -> None:
    """scikit-learn's ``Interval(Integral, low, None)``, which takes a bool (an ``Integral``:
    ``max_iter=True`` fits there) but not ``np.bool_``; the paper ``GMM``, which is not
    scikit-learn's API, refuses a bool as a count (``allow_bool=False``)."""
    if (not isinstance(value, Integral) or (isinstance(value, bool) and not allow_bool)
            or value < low):
        _fail(name, f"an int in the range [{low}, inf)", value, owner)


def _real(name: str, value: Any, owner: str = "GaussianMixture") -> None:
    """scikit-learn's ``Interval(Real, 0.0, None, closed="left")``, [0, inf), which takes a
    bool too (a ``Real``)."""
    if not isinstance(value, Real) or not 0.0 <= float(value) < inf:
        _fail(name, "a float in the range [0.0, inf)", value, owner)


def _one_of(name: str, value: Any, options: tuple[str, ...], owner: str = "GaussianMixture"
            ) -> None:
    if value not in options:
        listed = ", ".join(repr(o) for o in sorted(options))
        _fail(name, f"a str among {{{listed}}}", value, owner)


def check_hyperparameters(est: Any) -> None:
    """The constructor arguments of ``est`` (an ``asp_gmm.GaussianMixture``)."""
    check_shared_hyperparameters(est)
    if not isinstance(est.verbose, (bool, np.bool_)):  # scikit-learn takes a bool too
        if not isinstance(est.verbose, Integral) or est.verbose < 0:
            _fail("verbose", "an int in the range [0, inf), an instance of 'bool' or an "
                  "instance of 'numpy.bool'", est.verbose, "GaussianMixture")
    _integer("verbose_interval", est.verbose_interval, 1)


def check_shared_hyperparameters(est: Any, owner: str = "GaussianMixture") -> None:
    """The constructor arguments ``asp_gmm.GaussianMixture`` shares with
    ``asp_gmm.distributed.DistributedGaussianMixture`` (``owner`` names the class in the
    messages), so that both refuse what scikit-learn refuses, with its messages."""
    _integer("n_components", est.n_components, 1, owner)
    _one_of("covariance_type", est.covariance_type, COVARIANCE_TYPES, owner)
    _real("tol", est.tol, owner)
    _real("reg_covar", est.reg_covar, owner)
    _integer("max_iter", est.max_iter, 0, owner)
    _integer("n_init", est.n_init, 1, owner)
    _one_of("init_params", est.init_params, INIT_PARAMS, owner)
    # scikit-learn's "random_state" constraint, checked before X as scikit-learn does (a numpy
    # Generator got numpy's message from check_random_state, once the fit was under way)
    rs = est.random_state
    if not (rs is None or isinstance(rs, np.random.RandomState)
            or (isinstance(rs, Integral) and 0 <= int(rs) <= 2**32 - 1)):
        _fail("random_state", "an int in the range [0, 4294967295], an instance of "
              "'numpy.random.mtrand.RandomState' or None", rs, owner)
    if est.asp_options is not None and not isinstance(est.asp_options, dict):
        _fail("asp_options", "an instance of 'dict' or None", est.asp_options, owner)
    if not isinstance(est.warm_start, (bool, np.bool_)):
        _fail("warm_start", "an instance of 'bool' or an instance of 'numpy.bool'",
              est.warm_start, owner)


def fitted_parameters_fit(est: Any, n_features: int) -> bool:
    """Whether the fitted parameters of ``est`` have the shapes of its current
    ``n_components``, ``covariance_type`` and ``n_features``: a warm start from others starts
    afresh, as a cold fit (scikit-learn goes on from them: a changed covariance type or feature
    count failed inside the EM with a shape message, a changed n_components kept the old number
    of components)."""
    M, D = est.n_components, n_features
    shapes = {"weights_": (M,), "means_": (M, D),
              "precisions_cholesky_": _covariance_shape(est.covariance_type, M, D)}
    # diag factors (M, D) and tied ones (D, D) have one shape where M == D: the type the
    # parameters were fitted with tells them apart (a diag fit went on as tied, from a
    # non-symmetric "covariance")
    fitted_as = getattr(est, "_fitted_covariance_type", est.covariance_type)
    return fitted_as == est.covariance_type and all(
        np.shape(np.asarray(getattr(est, name, None))) == shape for name, shape in shapes.items())


def _check_shape(param: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if param.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got "
                         f"{param.shape}")


def _check_array(value: Any, allow_nd: bool = False) -> np.ndarray:
    """scikit-learn's ``check_array`` for an initial parameter (finite float64 or float32),
    imported here: the paper ``GMM`` validates through this module without scikit-learn."""
    from sklearn.utils import check_array

    return check_array(value, dtype=[np.float64, np.float32], ensure_2d=False,
                       allow_nd=allow_nd)


def _finite_array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A float64 copy of ``value``, of ``shape`` and finite: :func:`_check_array`'s checks of
    a paper ``GMM`` parameter, in NumPy alone."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # e.g. ragged lists, strings
        raise ValueError(f"The parameter '{name}' cannot be converted to a float array: "
                         f"{exc}") from None
    _check_shape(array, shape, name)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"The parameter '{name}' contains NaN or infinity")
    return array


def _weights(weights: Any, n_components: int) -> np.ndarray:
    weights = _check_array(weights)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError("The parameter 'weights' should be in the range [0, 1], but got max "
                         f"value {np.min(weights):.5f}, min value {np.max(weights):.5f}")
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError("The parameter 'weights' should be normalized, but got "
                         f"sum(weights) = {np.sum(weights):.5f}")
    return weights


def _covariance_shape(covariance_type: str, n_components: int, n_features: int
                      ) -> tuple[int, ...]:
    return {"full": (n_components, n_features, n_features), "tied": (n_features, n_features),
            "diag": (n_components, n_features), "spherical": (n_components,)}[covariance_type]


def _positive_definite(matrices: np.ndarray, covariance_type: str, name: str) -> None:
    """Precisions or covariances (both are): symmetric positive-definite matrices (full,
    tied), positive numbers (diag, spherical)."""
    if covariance_type in ("diag", "spherical"):
        if np.any(matrices <= 0.0):
            raise ValueError(f"'{name}' should be positive")
        return
    for matrix in matrices if covariance_type == "full" else [matrices]:
        if not (np.all(np.isclose(matrix, matrix.T))
                and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
            raise ValueError(f"'{name}' should be symmetric, positive-definite")


def _precisions(precisions: Any, covariance_type: str, n_components: int, n_features: int
                ) -> np.ndarray:
    precisions = _check_array(precisions, allow_nd=covariance_type == "full")
    name = f"{covariance_type} precision"
    _check_shape(precisions, _covariance_shape(covariance_type, n_components, n_features), name)
    _positive_definite(precisions, covariance_type, name)
    return precisions


def _array_like(est: Any, name: str) -> None:
    """scikit-learn's ``"array-like"`` constraint of an initial parameter: something with a
    length, a shape or ``__array__`` that is not a scalar (a number or a string failed later,
    as a TypeError about dimensions or a float conversion, without the parameter's name)."""
    value = getattr(est, name)
    if value is not None and (np.isscalar(value) or not (
            hasattr(value, "__len__") or hasattr(value, "shape")
            or hasattr(value, "__array__"))):
        _fail(name, "an array-like or None", value, type(est).__name__)


def check_initial_parameters(est: Any, n_features: int
                             ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(weights_init, means_init, precisions_init)`` of ``est`` checked and as arrays (None
    where not given)."""
    for name in ("weights_init", "means_init", "precisions_init"):
        _array_like(est, name)
    M = est.n_components
    weights = None if est.weights_init is None else _weights(est.weights_init, M)
    means = None
    if est.means_init is not None:
        means = _check_array(est.means_init)
        _check_shape(means, (M, n_features), "means")
    precisions = None
    if est.precisions_init is not None:
        precisions = _precisions(est.precisions_init, est.covariance_type, M, n_features)
    return weights, means, precisions


def check_representable(model: Any, dtype: Any) -> None:
    """The covariances and precision factors of a fitted ``model`` (one process or
    distributed), computed in float64, must be finite in the data's dtype: a float32 fit of
    data whose spread exceeds about 1e19 (covariances past float32's 3.4e38) or whose
    covariances fall below about 1e-77 (their factors past it) got inf from the cast,
    silently: ``covariances_`` of inf and ``sample()`` returning inf and nan; variances below
    about 1e-45 became 0. scikit-learn, computing in float32, fails there too (an error from SciPy or a
    model of nan), so the fit raises, naming the cause. (``precisions_`` may overflow, as
    scikit-learn's do: no method reads them.)"""
    if np.dtype(dtype) == np.float64:
        return
    info = np.finfo(dtype)
    for name in ("covariances_", "precisions_cholesky_"):
        value = getattr(model, name, None)
        if isinstance(value, np.ndarray) and not np.all(np.abs(value) <= float(info.max)):
            _unrepresentable(name, dtype, f"largest {float(info.max):.3g}")
    # variances below the dtype's smallest number became 0 while their factors stayed finite:
    # a model of zero covariances whose sample() repeated one point (scikit-learn's float32
    # Cholesky fails there)
    cov = getattr(model, "covariances_", None)
    if isinstance(cov, np.ndarray) and cov.size:
        variances = np.diagonal(cov, axis1=-2, axis2=-1) \
            if model.covariance_type in ("full", "tied") else cov
        if np.any(variances.astype(dtype) <= 0):
            _unrepresentable("covariances_", dtype,
                             f"smallest {float(info.smallest_subnormal):.3g}")


def _unrepresentable(name: str, dtype: Any, bound: str) -> None:
    raise ValueError(
        "Fitting the mixture model failed because the fitted "
        f"{name.rstrip('_').replace('_', ' ')} do not fit {np.dtype(dtype).name} "
        f"({bound}): the data's spread over- or underflows its range. Scale the input "
        f"data, or pass float64 data instead of {np.dtype(dtype).name}.")


def check_gmm_arguments(M: Any, D: Any, cvtype: Any, reg_covar: Any, tol: Any, options: Any
                        ) -> None:
    """The paper ``GMM``'s scalar arguments, with the estimator's checks and messages (but no
    bool for ``M`` or ``D``: a count given as True is a mistake outside scikit-learn's API)."""
    _integer("M", M, 1, "GMM", allow_bool=False)
    _integer("D", D, 1, "GMM", allow_bool=False)
    _one_of("cvtype", cvtype, COVARIANCE_TYPES, "GMM")
    _real("reg_covar", reg_covar, "GMM")
    _real("tol", tol, "GMM")
    if options is not None and not isinstance(options, dict):
        _fail("options", "an instance of 'dict' or None", options, "GMM")


def check_gmm_weights(weights: Any, M: int) -> np.ndarray:
    """The paper ``GMM``'s weights (M non-negative numbers, not all zero) over their sum."""
    weights = _finite_array(weights, (M,), "weights")
    total = float(np.sum(weights))
    if np.any(weights < 0.0) or not 0.0 < total < inf:
        raise ValueError("The parameter 'weights' should be non-negative with a positive, "
                         f"finite sum, but got {weights}")
    return weights / total


def check_gmm_means(means: Any, M: int, D: int) -> np.ndarray:
    """The paper ``GMM``'s means: finite, M x D."""
    return _finite_array(means, (M, D), "means")


def check_gmm_covars(covars: Any, cvtype: str, M: int, D: int) -> np.ndarray:
    """The paper ``GMM``'s covariances: finite, of ``cvtype``'s shape, and symmetric
    positive-definite (full, tied; only one triangle of a matrix is read) or positive."""
    covars = _finite_array(covars, _covariance_shape(cvtype, M, D), "covars")
    _positive_definite(covars, cvtype, "covars")
    return covars
