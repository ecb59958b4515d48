"""``asp_gmm.GaussianMixture``: scikit-learn's estimator on the specialised EM engine.

Parameters, validation, initialisation, convergence logic, fitted attributes and every public
method are scikit-learn's (this class subclasses ``sklearn.mixture.GaussianMixture``); what
changes is the EM iteration, which runs as one fused, compiled kernel call per iteration
(:func:`asp_gmm.engine.em_step`) instead of separate E- and M-steps in NumPy, and the
E-step densities behind ``predict``/``score_samples``/``predict_proba``
(:func:`asp_gmm.engine.log_prob`). Computation is in float64 whatever the input dtype; fitted
attributes take the input's dtype, as scikit-learn's do.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._array_api import get_namespace
from sklearn.utils.validation import validate_data

from asp_gmm import engine
from asp_gmm.linalg import precision_cholesky

__all__ = ["GaussianMixture"]


class GaussianMixture(_SkGaussianMixture):
    """Gaussian mixture fitted by specialised EM; see ``sklearn.mixture.GaussianMixture``.

    The one extra parameter, ``asp_options``, is passed to the Asp dispatcher: e.g.
    ``{"platform_selection": "numpy"}`` forces the NumPy engine,
    ``{"disable_passes": ("fuse-em",)}`` removes the fused variants.
    """

    _parameter_constraints: dict = {**_SkGaussianMixture._parameter_constraints,
                                    "asp_options": [dict, None]}

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full",
                 tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100,
                 n_init: int = 1, init_params: str = "kmeans", weights_init: Any = None,
                 means_init: Any = None, precisions_init: Any = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 asp_options: dict | None = None) -> None:
        super().__init__(n_components=n_components, covariance_type=covariance_type, tol=tol,
                         reg_covar=reg_covar, max_iter=max_iter, n_init=n_init,
                         init_params=init_params, weights_init=weights_init,
                         means_init=means_init, precisions_init=precisions_init,
                         random_state=random_state, warm_start=warm_start, verbose=verbose,
                         verbose_interval=verbose_interval)
        self.asp_options = asp_options

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = False
        return tags

    # -- the specialised pieces ---------------------------------------------------------------
    def _estimate_log_prob(self, X: np.ndarray, xp: Any = None) -> np.ndarray:
        if X.dtype not in (np.float32, np.float64):  # predict() keeps integer input as is
            X = X.astype(np.float64)
        lp = engine.log_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type,
                             options=self.asp_options)
        return lp.astype(X.dtype, copy=False)

    def _em_iteration(self, X: np.ndarray) -> float:
        """One EM iteration in one engine call; returns the incoming parameters' lower bound."""
        step = engine.em_step(X, np.asarray(self.weights_, dtype=np.float64),
                              np.asarray(self.means_, dtype=np.float64),
                              np.asarray(self.precisions_cholesky_, dtype=np.float64),
                              self.covariance_type, float(self.reg_covar),
                              options=self.asp_options)
        self.weights_ = step.weights
        self.means_ = step.means
        self.covariances_ = step.covariances
        self.precisions_cholesky_ = precision_cholesky(self.covariances_, self.covariance_type)
        return step.log_prob_norm

    def _cast_parameters(self, dtype: np.dtype) -> None:
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                     "precisions_"):
            value = getattr(self, name, None)
            if isinstance(value, np.ndarray):
                setattr(self, name, value.astype(dtype, copy=False))

    # -- scikit-learn's fit loop with the fused iteration --------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Estimate the model parameters with EM and predict the labels of X
        (see ``sklearn.mixture.GaussianMixture.fit_predict``)."""
        xp, _ = get_namespace(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}"
            )
        self._check_parameters(X, xp=xp)

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1

        max_lower_bound = -np.inf
        best_lower_bounds: list[float] = []
        self.converged_ = False
        random_state = check_random_state(self.random_state)

        for init in range(n_init):
            self._print_verbose_msg_init_beg(init)
            if do_init:
                self._initialize_parameters(X, random_state, xp=xp)
            lower_bound = -np.inf if do_init else self.lower_bound_
            current_lower_bounds: list[float] = []

            if self.max_iter == 0:
                best_params = self._get_parameters()
                best_n_iter = 0
            else:
                converged = False
                for n_iter in range(1, self.max_iter + 1):
                    prev_lower_bound = lower_bound
                    lower_bound = self._em_iteration(X)
                    current_lower_bounds.append(lower_bound)
                    change = lower_bound - prev_lower_bound
                    self._print_verbose_msg_iter_end(n_iter, change)
                    if abs(change) < self.tol:
                        converged = True
                        break
                self._print_verbose_msg_init_end(lower_bound, converged)
                if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                    max_lower_bound = lower_bound
                    best_params = self._get_parameters()
                    best_n_iter = n_iter
                    best_lower_bounds = current_lower_bounds
                    self.converged_ = converged

        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
            )

        self._set_parameters(best_params, xp=xp)
        self._cast_parameters(X.dtype)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_lower_bounds

        # a final E-step so that fit_predict(X) agrees with fit(X).predict(X)
        _, log_resp = self._e_step(X, xp=xp)
        return log_resp.argmax(axis=1)
