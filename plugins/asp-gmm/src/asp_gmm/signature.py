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
from asp_gmm.reference import E_STEP_OUTPUTS

__all__ = ["OPS", "Call", "parse_call", "signature", "tuning_key"]

_ARGS = {
    "em_step": ("X", "weights", "means", "precisions_cholesky", "covariance_type", "reg_covar"),
    "log_prob": ("X", "means", "precisions_cholesky", "covariance_type"),
    "e_step": ("X", "weights", "means", "precisions_cholesky", "covariance_type", "output"),
    "m_step": ("X", "resp", "n_components", "covariance_type", "reg_covar"),
    "kmeans_assign": ("X", "centers", "covariance_type", "bounds", "moved"),
    "kmeans_seed": ("X", "x_squared_norms", "indices", "closest", "uniforms", "n_components",
                    "covariance_type"),
}
OPS = tuple(_ARGS)


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


def _check_responsibilities(resp: Any, N: int, M: Any) -> int:
    """The number of components of an ``m_step`` call (dense resp or hard labels)."""
    if not isinstance(M, (int, np.integer)) or isinstance(M, bool) or M < 1:
        raise ValueError(f"n_components must be a positive integer, got {M!r}")
    if not isinstance(resp, np.ndarray):
        raise TypeError(f"resp must be a numpy array, got {type(resp).__name__}")
    if resp.ndim == 2:
        if resp.shape != (N, M) or resp.dtype != np.float64:
            raise ValueError(f"resp must be float64 of shape ({N}, {M}), got {resp.dtype} "
                             f"{resp.shape}")
    elif resp.ndim == 1:
        if resp.shape != (N,) or resp.dtype != np.int64:
            raise ValueError(f"labels must be int64 of shape ({N},), got {resp.dtype} "
                             f"{resp.shape}")
    else:
        raise ValueError("resp must be responsibilities (n_samples, n_components) or labels "
                         "(n_samples,)")
    return int(M)


def parse_call(op: str, args: tuple, kwargs: dict[str, Any]) -> Call:
    """Validate one kernel call; return its data signature."""
    b = _bind(_ARGS[op], args, kwargs)
    X = b["X"]
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ValueError("X must be a 2-D numpy array of shape (n_samples, n_features)")
    if X.dtype not in (np.float64, np.float32):
        raise TypeError(f"X must be float64 or float32, got {X.dtype}")
    cov = b["covariance_type"]
    if cov not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {cov!r}")
    N, D = X.shape
    if op == "kmeans_seed":
        return Call(op, N, D, _check_seed(b, N), cov, X.dtype.name)
    if op == "kmeans_assign":
        centers = b["centers"]
        if not isinstance(centers, np.ndarray) or centers.ndim != 2 or centers.shape[1] != D \
                or centers.shape[0] < 1 or centers.dtype != np.float64:
            raise ValueError(f"centers must be float64 of shape (n_clusters, {D})")
        _check_bounds(b["bounds"], b["moved"], N, centers.shape[0])
        return Call(op, N, D, centers.shape[0], cov, X.dtype.name)
    if op == "m_step":
        M = _check_responsibilities(b["resp"], N, b["n_components"])
        _check_reg_covar(b["reg_covar"])
        return Call(op, N, D, M, cov, X.dtype.name)
    means = b["means"]
    if not isinstance(means, np.ndarray) or means.ndim != 2 or means.shape[1] != D:
        raise ValueError(f"means must have shape (n_components, {D})")
    M = means.shape[0]
    pshape = {"full": (M, D, D), "tied": (D, D), "diag": (M, D), "spherical": (M,)}[cov]
    _expect_shape("precisions_cholesky", b["precisions_cholesky"], pshape)
    if op in ("em_step", "e_step"):
        _expect_shape("weights", b["weights"], (M,))
    if op == "em_step":
        _check_reg_covar(b["reg_covar"])
    if op == "e_step" and b["output"] not in E_STEP_OUTPUTS:
        raise ValueError(f"output must be one of {E_STEP_OUTPUTS}, got {b['output']!r}")
    return Call(op, N, D, M, cov, X.dtype.name)


def _check_seed(b: dict[str, Any], N: int) -> int:
    """The number of components of a ``kmeans_seed`` call, its arrays checked."""
    from asp_gmm.lowering import kmeans_trials

    M = b["n_components"]
    if not isinstance(M, (int, np.integer)) or isinstance(M, bool) or not 1 <= M <= N:
        raise ValueError(f"n_components must be an integer in [1, {N}], got {M!r}")
    for name in ("x_squared_norms", "closest"):
        arr = b[name]
        if not isinstance(arr, np.ndarray) or arr.shape != (N,) or arr.dtype != np.float64:
            raise ValueError(f"{name} must be float64 of shape ({N},)")
    idx = b["indices"]
    if not isinstance(idx, np.ndarray) or idx.shape != (M,) or idx.dtype != np.int64:
        raise ValueError(f"indices must be int64 of shape ({M},)")
    c = int(np.count_nonzero(idx >= 0))
    if c < 1 or (idx[:c] >= N).any() or (idx[c:] != -1).any():
        raise ValueError(f"indices must be the chosen centres' sample indices in [0, {N}) "
                         "(at least one), followed by -1")
    uni = b["uniforms"]
    L = (M - c) * kmeans_trials(int(M))
    if not isinstance(uni, np.ndarray) or uni.shape != (L,) or uni.dtype != np.float64:
        raise ValueError(f"uniforms must be float64 of shape ({L},): the draws of the "
                         f"{M - c} steps left")
    return int(M)


def _check_bounds(bounds: Any, moved: Any, N: int, M: int) -> None:
    """A ``kmeans_assign`` call's state: written in place, so C-contiguous and writeable."""
    if not isinstance(bounds, np.ndarray) or bounds.shape != (N, 3) \
            or bounds.dtype != np.float64 or not bounds.flags.c_contiguous \
            or not bounds.flags.writeable:
        raise ValueError(f"bounds must be a writeable C-contiguous float64 array of shape "
                         f"({N}, 3)")
    if not isinstance(moved, np.ndarray) or moved.shape != (M,) or moved.dtype != np.float64:
        raise ValueError(f"moved must be float64 of shape ({M},)")


def _check_reg_covar(reg_covar: Any) -> None:
    if not float(reg_covar) >= 0.0:
        raise ValueError(f"reg_covar must be >= 0, got {reg_covar!r}")


def _op(instance: Any) -> str:
    op = getattr(instance, "op", None)
    if op not in OPS:
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
