"""Argument checking and the specialisation / tuning keys of the two GMM kernels.

Runs on every call before any compiled code (the dispatcher's ``signature`` function), so it
must be cheap: shapes and dtypes only. Errors are ``ValueError``/``TypeError`` with the text a
user of the estimator would understand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from asp_gmm.linalg import COVARIANCE_TYPES

__all__ = ["Call", "parse_call", "signature", "tuning_key"]

_EM_ARGS = ("X", "weights", "means", "precisions_cholesky", "covariance_type", "reg_covar")
_LP_ARGS = ("X", "means", "precisions_cholesky", "covariance_type")


@dataclass(frozen=True)
class Call:
    op: str
    n_samples: int
    n_features: int
    n_components: int
    covariance: str
    x_dtype: str


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    if len(args) > len(names):
        raise TypeError(f"expected at most {len(names)} arguments, got {len(args)}")
    bound = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names or key in bound:
            raise TypeError(f"unexpected or repeated argument {key!r}")
        bound[key] = value
    missing = [n for n in names if n not in bound]
    if missing:
        raise TypeError(f"missing arguments: {', '.join(missing)}")
    return bound


def _expect_shape(name: str, arr: Any, shape: tuple[int, ...]) -> None:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")


def parse_call(op: str, args: tuple, kwargs: dict[str, Any]) -> Call:
    """Validate one kernel call; return its data signature."""
    b = _bind(_EM_ARGS if op == "em_step" else _LP_ARGS, args, kwargs)
    X = b["X"]
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ValueError("X must be a 2-D numpy array of shape (n_samples, n_features)")
    if X.dtype not in (np.float64, np.float32):
        raise TypeError(f"X must be float64 or float32, got {X.dtype}")
    cov = b["covariance_type"]
    if cov not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {cov!r}")
    N, D = X.shape
    means = b["means"]
    if not isinstance(means, np.ndarray) or means.ndim != 2 or means.shape[1] != D:
        raise ValueError(f"means must have shape (n_components, {D})")
    M = means.shape[0]
    pshape = {"full": (M, D, D), "tied": (D, D), "diag": (M, D), "spherical": (M,)}[cov]
    _expect_shape("precisions_cholesky", b["precisions_cholesky"], pshape)
    if op == "em_step":
        _expect_shape("weights", b["weights"], (M,))
        if not float(b["reg_covar"]) >= 0.0:
            raise ValueError(f"reg_covar must be >= 0, got {b['reg_covar']!r}")
    return Call(op, N, D, M, cov, X.dtype.name)


def _op(instance: Any) -> str:
    op = getattr(instance, "op", None)
    if op not in ("em_step", "log_prob"):
        raise TypeError("gmm kernels are dispatched with a GMMKernel instance naming the op")
    return op


def signature(args: tuple, kwargs: dict[str, Any], instance: Any) -> tuple:
    """The specialisation key: (op, M, D, covariance type, dtype of X)."""
    op = _op(instance)
    call = parse_call(op, args, kwargs)
    return (op, call.n_components, call.n_features, call.covariance, call.x_dtype)


def tuning_key(args: tuple, kwargs: dict[str, Any], instance: Any) -> tuple:
    """(M, D, order of magnitude of N, dtype, covariance type): the perf database key."""
    op = _op(instance)
    call = parse_call(op, args, kwargs)
    magnitude = int(math.floor(math.log10(max(call.n_samples, 1))))
    return (op, call.n_components, call.n_features, magnitude, call.x_dtype, call.covariance)
