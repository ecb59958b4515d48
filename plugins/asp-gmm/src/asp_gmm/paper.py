"""``asp_gmm.GMM``: the Asp paper's GMM interface, a thin layer over the same engine.

    gmm = GMM(M, D, cvtype="diag")
    likelihood = gmm.train(X, min_em_iters=1, max_em_iters=10)
    log_probs, posteriors = gmm.eval(X)

No scikit-learn needed. Parameters not given are initialised at the first ``train``: means from
M distinct samples of X (a fixed seed, so runs repeat), covariances the identity, uniform
weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asp_gmm import engine
from asp_gmm.linalg import precision_cholesky
from asp_gmm.reference import logsumexp_rows

__all__ = ["GMM"]


def _check_X(X: Any, D: int) -> np.ndarray:
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:  # e.g. ragged lists
        raise ValueError(f"X cannot be converted to an array: {exc}") from None
    if X.dtype.kind not in "fiu":
        raise TypeError(f"X must be numeric, got dtype {X.dtype}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(f"X must have shape (n_samples, {D}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("Input X contains NaN or infinity.")
    return np.ascontiguousarray(X)


class GMM:
    """A Gaussian mixture of ``M`` components in ``D`` dimensions (``cvtype`` full or diag;
    tied and spherical run on the NumPy engine)."""

    def __init__(self, M: int, D: int, means: Any = None, covars: Any = None,
                 weights: Any = None, cvtype: str = "diag", reg_covar: float = 1e-6,
                 tol: float = 1e-3, options: dict | None = None) -> None:
        if int(M) < 1 or int(D) < 1:
            raise ValueError(f"M and D must be >= 1, got M={M}, D={D}")
        if cvtype not in ("full", "diag", "tied", "spherical"):
            raise ValueError(f"cvtype must be 'full', 'diag', 'tied' or 'spherical', "
                             f"got {cvtype!r}")
        self.M, self.D, self.cvtype = int(M), int(D), cvtype
        self.reg_covar, self.tol, self.options = float(reg_covar), float(tol), options
        self.means = None if means is None else np.array(means, dtype=np.float64)
        self.weights = None if weights is None else np.array(weights, dtype=np.float64)
        self.covars = None if covars is None else np.array(covars, dtype=np.float64)
        if self.means is not None and self.means.shape != (self.M, self.D):
            raise ValueError(f"means must have shape ({M}, {D})")
        if self.weights is not None:
            if self.weights.shape != (self.M,) or np.any(self.weights < 0):
                raise ValueError(f"weights must be {M} non-negative numbers")
            self.weights = self.weights / self.weights.sum()
        cshape = {"full": (self.M, self.D, self.D), "diag": (self.M, self.D),
                  "tied": (self.D, self.D), "spherical": (self.M,)}[cvtype]
        if self.covars is not None and self.covars.shape != cshape:
            raise ValueError(f"covars must have shape {cshape} for cvtype={cvtype!r}")
        self._prec_chol = None if self.covars is None else precision_cholesky(self.covars,
                                                                              cvtype)

    def _init_missing(self, X: np.ndarray) -> None:
        if X.shape[0] < self.M:
            raise ValueError(f"need at least M={self.M} samples, got {X.shape[0]}")
        if self.means is None:
            rng = np.random.default_rng(0)
            self.means = X[rng.choice(X.shape[0], self.M, replace=False)].astype(np.float64)
        if self.weights is None:
            self.weights = np.full(self.M, 1.0 / self.M)
        if self.covars is None:
            eye = np.eye(self.D)
            self.covars = {"full": np.tile(eye, (self.M, 1, 1)),
                           "diag": np.ones((self.M, self.D)), "tied": eye,
                           "spherical": np.ones(self.M)}[self.cvtype]
            self._prec_chol = precision_cholesky(self.covars, self.cvtype)

    def train(self, X: Any, min_em_iters: int = 1, max_em_iters: int = 10) -> float:
        """Run EM (at least ``min_em_iters``, at most ``max_em_iters`` iterations, stopping
        when the mean log-likelihood changes by less than ``tol``); returns the final
        model's mean log-likelihood of X."""
        if min_em_iters < 0 or max_em_iters < max(1, min_em_iters):
            raise ValueError("need 0 <= min_em_iters <= max_em_iters and max_em_iters >= 1")
        X = _check_X(X, self.D)
        self._init_missing(X)
        previous = -np.inf
        assert self.weights is not None and self.means is not None \
            and self._prec_chol is not None  # _init_missing set them
        for it in range(1, max_em_iters + 1):
            step = engine.em_step(X, self.weights, self.means, self._prec_chol, self.cvtype,
                                  self.reg_covar, options=self.options)
            self.weights, self.means, self.covars = step.weights, step.means, step.covariances
            self._prec_chol = precision_cholesky(self.covars, self.cvtype)
            if it >= min_em_iters and abs(step.log_prob_norm - previous) < self.tol:
                break
            previous = step.log_prob_norm
        return float(np.mean(self.eval(X)[0]))

    def eval(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(log-probability of each sample, posteriors N x M) under the current model."""
        if self.means is None or self._prec_chol is None or self.weights is None:
            raise ValueError("the model has no parameters yet: give them or call train first")
        X = _check_X(X, self.D)
        with np.errstate(divide="ignore"):
            weighted = engine.log_prob(X, self.means, self._prec_chol, self.cvtype,
                                       options=self.options) + np.log(self.weights)
        log_prob = logsumexp_rows(weighted)
        with np.errstate(under="ignore"):
            posteriors = np.exp(weighted - log_prob[:, None])
        return log_prob, posteriors
