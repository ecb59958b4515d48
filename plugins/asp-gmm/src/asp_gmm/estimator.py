"""``asp_gmm.GaussianMixture``: scikit-learn's estimator on the specialised EM engine.

Parameters, initialisation, convergence logic, fitted attributes and every public method
behave as ``sklearn.mixture.GaussianMixture``'s (this class subclasses it, so ``get_params``,
``bic``, ``aic``, ``sample`` and the estimator tags are scikit-learn's own); what changes is
that everything ``fit`` does per sample runs compiled:

* the initial M-step from the initial responsibilities (:mod:`asp_gmm.initialisation`;
  the hard assignments of k-means stay labels),
* every EM iteration as one fused kernel call (:func:`asp_gmm.engine.em_step`), whose lower
  bound is the convergence test's (no extra pass),
* the E-step behind ``fit_predict``, ``predict``, ``predict_proba``, ``score_samples`` and
  ``score`` (:func:`asp_gmm.engine.e_step`); ``fit`` skips scikit-learn's final E-step,
  whose labels ``fit`` throws away.

Only scikit-learn's public API is used (``validate_data``, ``check_is_fitted``,
``check_random_state``, ``check_array``, ``KMeans``, ``kmeans_plusplus``): no private imports
and no override of private methods, so a minor release cannot change what runs. Computation
is in float64 whatever the input dtype, on every engine; fitted attributes take the input's
dtype (promoted with the parameters a warm start goes on from: a float64 fit refitted on
float32 data stays float64), and ``predict_proba`` and ``score_samples`` return
scikit-learn's dtype (float32 only for float32 X under a float32 fit), as scikit-learn's do.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from asp_core import background
from asp_gmm import engine
from asp_gmm.initialisation import initial_parameters
from asp_gmm.linalg import precision_cholesky
from asp_gmm.validation import (check_hyperparameters, check_initial_parameters,
                                check_representable, fitted_parameters_fit)

__all__ = ["GaussianMixture"]

_PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


class _Verbose:
    """scikit-learn's progress messages (``verbose`` 1: iterations, 2: with times)."""

    def __init__(self, level: int, interval: int) -> None:
        self.level, self.interval = level, interval
        self.init_start = self.iter_start = time.time()

    def init_begin(self, n_init: int) -> None:
        if self.level >= 1:
            print(f"Initialization {n_init}")
            self.init_start = self.iter_start = time.time()

    def iteration_end(self, n_iter: int, change: float) -> None:
        if n_iter % self.interval or self.level < 1:
            return
        if self.level == 1:
            print(f"  Iteration {n_iter}")
            return
        now = time.time()
        print(f"  Iteration {n_iter}\t time lapse {now - self.iter_start:.5f}s\t "
              f"ll change {change:.5f}")
        self.iter_start = now

    def init_end(self, lower_bound: float, converged: bool) -> None:
        msg = "converged" if converged else "did not converge"
        if self.level == 1:
            print(f"Initialization {msg}.")
        elif self.level >= 2:
            print(f"Initialization {msg}. time lapse {time.time() - self.init_start:.5f}s\t "
                  f"lower bound {lower_bound:.5f}.")


class GaussianMixture(_SkGaussianMixture):
    """Gaussian mixture fitted by specialised EM; see ``sklearn.mixture.GaussianMixture``.

    The one extra parameter, ``asp_options``, is passed to the Asp dispatcher: e.g.
    ``{"platform_selection": "numpy"}`` forces the NumPy engine,
    ``{"disable_passes": ("fuse-em",)}`` removes the fused variants, ``{"variants": "all"}``
    times the paper's parallelisation strategies too.
    """

    lower_bound_: float  # set by fit (annotated for the type checker; no class default)

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

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> GaussianMixture:
        """Estimate the model parameters with EM (see ``sklearn.mixture.GaussianMixture.fit``).
        """
        with background.foreground():
            self._fit(X)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Estimate the model parameters with EM and predict the labels of X (see
        ``sklearn.mixture.GaussianMixture.fit_predict``)."""
        with background.foreground():
            X = self._fit(X)
            # the final E-step, so that fit_predict(X) agrees with fit(X).predict(X)
            return self._compiled_e_step(X, "labels")

    def _fit(self, X: Any) -> np.ndarray:
        """scikit-learn's ``fit_predict`` loop without its final E-step; returns checked X."""
        check_hyperparameters(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError("Expected n_samples >= n_components "
                             f"but got n_components = {self.n_components}, "
                             f"n_samples = {X.shape[0]}")
        init = check_initial_parameters(self, X.shape[1])
        do_init = not (self.warm_start and hasattr(self, "converged_")
                       and fitted_parameters_fit(self, X.shape[1]))
        n_init = self.n_init if do_init else 1
        # the fitted attributes' dtype: scikit-learn's arithmetic's, X's promoted with the
        # parameters a warm start goes on from (a float64 fit refitted on float32 data stays
        # float64; it became float32)
        previous = None if do_init else np.asarray(getattr(self, "means_")).dtype
        dtype = X.dtype if previous is None else np.result_type(X.dtype, previous)
        # the shape's library builds in the background, from the start of the fit if its
        # NumPy passes foresee enough work (engine.BUILD_AFTER_S): the k-means then finds it
        # compiled; a short fit runs in NumPy without gcc and the GIL-holding code
        # generation beside it
        engine.prepare(X.shape[1], self.n_components, self.covariance_type, X.dtype,
                       self.asp_options, defer=True)
        verbose = _Verbose(self.verbose, self.verbose_interval)
        max_lower_bound = -np.inf
        best_params: tuple = ()
        best_n_iter = 0
        best_lower_bounds: list[float] = []
        self.converged_ = False
        random_state = check_random_state(self.random_state)

        for n_try in range(n_init):
            verbose.init_begin(n_try)
            if do_init:
                start = initial_parameters(self, X, random_state, *init)
                self.weights_, self.means_ = start.weights, start.means
                self.covariances_ = start.covariances
                self.precisions_cholesky_ = start.precisions_cholesky
            else:
                self._cast_parameters(np.float64)
            # no iteration computes no lower bound: a warm start with max_iter=0 leaves
            # lower_bound_ -inf, as scikit-learn's (not the previous fit's)
            lower_bound: float = (-np.inf if do_init or self.max_iter == 0
                                  else float(self.lower_bound_))
            current_lower_bounds: list[float] = []
            n_iter, converged = 0, False
            for n_iter in range(1, self.max_iter + 1):
                prev_lower_bound = lower_bound
                lower_bound = self._em_iteration(X)
                current_lower_bounds.append(lower_bound)
                change = lower_bound - prev_lower_bound
                verbose.iteration_end(n_iter, change)
                if abs(change) < self.tol:
                    converged = True
                    break
            if self.max_iter > 0:
                verbose.init_end(lower_bound, converged)
            if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                max_lower_bound = lower_bound
                best_params = tuple(getattr(self, name, None) for name in _PARAMETERS)
                best_n_iter = n_iter
                best_lower_bounds = current_lower_bounds
                self.converged_ = converged

        if not self.converged_ and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. "
                          "Try different init parameters, or increase max_iter, "
                          "tol, or check for degenerate data.", ConvergenceWarning)
        for name, value in zip(_PARAMETERS, best_params):
            setattr(self, name, value)
        self._set_precisions()
        self._check_representable(dtype)
        self._cast_parameters(dtype)
        self.n_iter_ = best_n_iter
        self._fitted_covariance_type = self.covariance_type   # for a later warm start
        self._set_lower_bounds(max_lower_bound, best_lower_bounds, dtype)
        engine.explain_numpy_passes(X.shape[1], self.n_components, self.covariance_type,
                                    X.dtype, self.asp_options, f"{type(self).__name__}.fit")
        return X

    def _set_lower_bounds(self, best: float, bounds: list[float], dtype: Any) -> None:
        """``lower_bound_`` and ``lower_bounds_`` as scikit-learn's: NumPy scalars of the
        data's dtype (its arithmetic's; ours, Python floats, had no ``dtype`` and were
        float64 for float32 data), and the Python float ``-inf`` where no iteration ran."""
        scalar = np.dtype(dtype).type
        self.lower_bound_ = scalar(best) if bounds else best
        self.lower_bounds_ = [scalar(bound) for bound in bounds]

    def _em_iteration(self, X: np.ndarray) -> float:
        """One EM iteration in one engine call; returns the incoming parameters' lower bound."""
        step = engine.em_step(X, self.weights_, self.means_, self.precisions_cholesky_,
                              self.covariance_type, float(self.reg_covar),
                              options=self.asp_options, wait_for_candidates=False)
        self.weights_ = step.weights
        self.means_ = step.means
        self.covariances_ = step.covariances
        self.precisions_cholesky_ = precision_cholesky(self.covariances_, self.covariance_type,
                                                       data_dtype=X.dtype)
        return step.log_prob_norm

    def _set_precisions(self) -> None:
        """``precisions_`` from ``precisions_cholesky_`` (scikit-learn's ``_set_parameters``)."""
        pc = self.precisions_cholesky_
        if self.covariance_type == "full":
            self.precisions_ = pc @ np.transpose(pc, (0, 2, 1))
        elif self.covariance_type == "tied":
            self.precisions_ = pc @ pc.T
        else:
            self.precisions_ = pc**2

    def _check_representable(self, dtype: Any) -> None:
        """The fitted parameters must be finite in the data's dtype
        (:func:`asp_gmm.validation.check_representable`)."""
        check_representable(self, dtype)

    def _cast_parameters(self, dtype: Any) -> None:
        for name in (*_PARAMETERS, "precisions_"):
            value = getattr(self, name, None)
            if isinstance(value, np.ndarray):
                setattr(self, name, value.astype(dtype, copy=False))

    # -- the compiled E-step behind the public methods ---------------------------------------
    def _compiled_e_step(self, X: np.ndarray, output: str) -> Any:
        if X.dtype not in (np.float32, np.float64):  # predict() keeps integer input as is
            X = X.astype(np.float64)
        w, mu, pc = (np.asarray(getattr(self, n), dtype=np.float64)
                     for n in ("weights_", "means_", "precisions_cholesky_"))
        return engine.e_step(X, w, mu, pc, self.covariance_type, output,
                             options=self.asp_options, wait_for_compile=False)

    def _checked(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    def _output_dtype(self, X: np.ndarray) -> np.dtype:
        """scikit-learn's dtype of the responsibilities and log-likelihoods: its arithmetic's,
        X's promoted with the parameters' (float32 only for float32 X under a float32 fit);
        ours is float64 throughout."""
        return np.result_type(X.dtype, *(np.asarray(getattr(self, n)).dtype
                                         for n in ("weights_", "means_", "precisions_cholesky_")))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable component of each sample (see
        ``sklearn.mixture.GaussianMixture.predict``)."""
        return self._compiled_e_step(self._checked(X), "labels")

    def predict_proba(self, X: Any) -> np.ndarray:
        """The responsibilities of each component for each sample (see
        ``sklearn.mixture.GaussianMixture.predict_proba``)."""
        X = self._checked(X)
        return self._compiled_e_step(X, "proba").astype(self._output_dtype(X), copy=False)

    def score_samples(self, X: Any) -> np.ndarray:
        """The log-likelihood of each sample (see
        ``sklearn.mixture.GaussianMixture.score_samples``)."""
        X = self._checked(X)
        lse = self._compiled_e_step(X, "score_samples")
        dtype = self._output_dtype(X)
        # scikit-learn's log-sum-exp (SciPy's) returns float64 for long double
        return lse.astype(np.float64 if dtype == np.longdouble else dtype, copy=False)

    def score(self, X: Any, y: Any = None) -> float:
        """The mean log-likelihood of the samples (see
        ``sklearn.mixture.GaussianMixture.score``)."""
        return float(self._compiled_e_step(self._checked(X), "score"))
