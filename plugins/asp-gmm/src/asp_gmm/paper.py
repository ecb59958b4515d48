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
from asp_gmm.validation import (check_gmm_arguments, check_gmm_covars, check_gmm_means,
                                check_gmm_weights)

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


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a``, an array the model owns, made read-only (see :class:`GMM`)."""
    a.flags.writeable = False
    return a


class GMM:
    """A Gaussian mixture of ``M`` components in ``D`` dimensions (``cvtype`` full or diag;
    tied and spherical run on the NumPy engine).

    ``weights``, ``means`` and ``covars`` may be assigned at any time: an assignment is
    checked as the constructor's arguments are (weights normalised to sum 1) and the next
    ``eval`` or ``train`` uses it. The arrays are read-only, so that a change in place cannot
    be silently ignored by the precision factors computed from them: assign a new array.
    """

    def __init__(self, M: int, D: int, means: Any = None, covars: Any = None,
                 weights: Any = None, cvtype: str = "diag", reg_covar: float = 1e-6,
                 tol: float = 1e-3, options: dict | None = None) -> None:
        check_gmm_arguments(M, D, cvtype, reg_covar, tol, options)
        self.M, self.D, self.cvtype = int(M), int(D), cvtype
        self.reg_covar, self.tol, self.options = float(reg_covar), float(tol), options
        self._weights: np.ndarray | None = None
        self._means: np.ndarray | None = None
        self._covars: np.ndarray | None = None
        self._prec_chol: np.ndarray | None = None
        self.means, self.covars, self.weights = means, covars, weights

    def __setstate__(self, state: dict[str, Any]) -> None:
        """An unpickled or deep-copied model's arrays come back writeable: read-only again,
        else a change in place would be silently ignored by its precision factors, as the
        class promises it cannot be."""
        self.__dict__.update(state)
        for name in ("_weights", "_means", "_covars"):
            value = state.get(name)
            if isinstance(value, np.ndarray):
                _read_only(value)

    @property
    def weights(self) -> np.ndarray | None:
        """The mixture weights (M,), summing to 1; None until given or trained."""
        return self._weights

    @weights.setter
    def weights(self, value: Any) -> None:
        self._weights = None if value is None else _read_only(check_gmm_weights(value, self.M))

    @property
    def means(self) -> np.ndarray | None:
        """The component means (M, D); None until given or trained."""
        return self._means

    @means.setter
    def means(self, value: Any) -> None:
        self._means = (None if value is None
                       else _read_only(check_gmm_means(value, self.M, self.D)))

    @property
    def covars(self) -> np.ndarray | None:
        """The covariances: (M, D, D) full, (M, D) diag, (D, D) tied, (M,) spherical; None
        until given or trained."""
        return self._covars

    @covars.setter
    def covars(self, value: Any) -> None:
        if value is None:
            self._covars = self._prec_chol = None
        else:
            self._set_covars(check_gmm_covars(value, self.cvtype, self.M, self.D))

    def _set_covars(self, covars: np.ndarray) -> None:
        """``covars`` and the precision factors ``eval`` and ``train`` use, computed once here
        (first, so that covariances without a Cholesky factor leave the model as it was)."""
        self._prec_chol = precision_cholesky(covars, self.cvtype)
        self._covars = _read_only(covars)

    def _init_missing(self, X: np.ndarray) -> None:
        if X.shape[0] < self.M:
            raise ValueError(f"need at least M={self.M} samples, got {X.shape[0]}")
        if self.means is None:
            rng = np.random.default_rng(0)
            self.means = X[rng.choice(X.shape[0], self.M, replace=False)]
        if self.weights is None:
            self.weights = np.full(self.M, 1.0 / self.M)
        if self.covars is None:
            eye = np.eye(self.D)
            self.covars = {"full": np.tile(eye, (self.M, 1, 1)),
                           "diag": np.ones((self.M, self.D)), "tied": eye,
                           "spherical": np.ones(self.M)}[self.cvtype]

    def train(self, X: Any, min_em_iters: int = 1, max_em_iters: int = 10) -> float:
        """Run EM (at least ``min_em_iters``, at most ``max_em_iters`` iterations, stopping
        when the mean log-likelihood changes by less than ``tol``); returns the final
        model's mean log-likelihood of X."""
        if min_em_iters < 0 or max_em_iters < max(1, min_em_iters):
            raise ValueError("need 0 <= min_em_iters <= max_em_iters and max_em_iters >= 1")
        X = _check_X(X, self.D)
        self._init_missing(X)
        previous = -np.inf
        assert self._weights is not None and self._means is not None \
            and self._prec_chol is not None  # _init_missing set them
        for it in range(1, max_em_iters + 1):
            step = engine.em_step(X, self._weights, self._means, self._prec_chol, self.cvtype,
                                  self.reg_covar, options=self.options)
            # the engine's parameters are valid: not checked again
            self._set_covars(step.covariances)
            self._weights, self._means = _read_only(step.weights), _read_only(step.means)
            if it >= min_em_iters and abs(step.log_prob_norm - previous) < self.tol:
                break
            previous = step.log_prob_norm
        return float(np.mean(self.eval(X)[0]))

    def eval(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(log-probability of each sample, posteriors N x M) under the current model."""
        if self._means is None or self._prec_chol is None or self._weights is None:
            raise ValueError("the model has no parameters yet: give them or call train first")
        X = _check_X(X, self.D)
        with np.errstate(divide="ignore"):
            weighted = engine.log_prob(X, self._means, self._prec_chol, self.cvtype,
                                       options=self.options) + np.log(self._weights)
        log_prob = logsumexp_rows(weighted)
        with np.errstate(under="ignore"):
            posteriors = np.exp(weighted - log_prob[:, None])
        return log_prob, posteriors
