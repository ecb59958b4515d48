"""Data-parallel EM over MPI: each rank holds a shard of X, every rank holds the same model.

One EM iteration is the specialised single-process iteration (:func:`asp_gmm.engine`'s
variants, C/OpenMP on each rank's shard) followed by ONE ``Allreduce`` of the shards'
sufficient statistics. Each shard's ``EMStep`` (counts ``nk``, means, covariances, mean
log-likelihood) is turned back into additive statistics around a shift common to all ranks (the
incoming means, so the sums do not cancel catastrophically):

    N_r, N_r * loglik_r, nk_r, nk_r * mu_r, W_r + nk_r (mu_r - c)(mu_r - c)^T

where ``W_r`` is the shard's scatter about its own means; after the sum the global scatter is
``sum - nk (mu - c)(mu - c)^T`` (Chan, Golub & LeVeque's parallel variance update; the
``10 eps`` scikit-learn adds to the counts is taken off each shard's scatter and put back once,
:func:`_eps_scatter`). The new
parameters are computed from identical sums on every rank, so every rank ends each iteration
with the same model, equal to the single-process one up to rounding (rtol 1e-10 in the tests).
Empty shards contribute zeros; tiny shards are ordinary shards.

Variant selection agrees across ranks: every rank builds the same variants through the core's
pipeline; while tuning, iteration i runs variant i on every rank and the per-variant time used
for the decision is the mean over ranks (it travels inside the same ``Allreduce``), so the
identical inputs give the identical winner everywhere. A winner already in rank 0's perf
database is broadcast and used by all ranks.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from asp_core.errors import warn

from asp_gmm.reference import EMStep

if TYPE_CHECKING:
    from asp_core.autotune import Autotuner
    from asp_core.collective import AgreedVariants

__all__ = ["DistributedGaussianMixture", "DistributedEM", "combine_em_steps"]

# what fit sets that takes the data's dtype, as asp_gmm.GaussianMixture's
_FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

# N_r, N_r * loglik_r, 1 if the shard is not empty, summed variant seconds, failed ranks
_SCALARS = 5


def _scatter_size(cov: str, M: int, D: int) -> int:
    return {"full": M * D * D, "tied": D * D, "diag": M * D, "spherical": M}[cov]


def _local_statistics(step: EMStep | None, n: int, shift: np.ndarray, cov: str, M: int, D: int,
                      reg_covar: float, eps: float, seconds: float, failed: bool = False
                      ) -> np.ndarray:
    """The additive statistics of one shard (see the module docstring), as one flat buffer."""
    buf = np.zeros(_SCALARS + M + M * D + _scatter_size(cov, M, D))
    buf[3] = seconds
    if failed:
        buf[4] = 1.0
        return buf
    if step is None or n == 0:
        return buf
    tiny = 10.0 * eps
    w = np.asarray(step.weights, dtype=np.float64)
    mu = np.asarray(step.means, dtype=np.float64)
    c = np.asarray(step.covariances, dtype=np.float64)
    nk = w * (n + M * tiny)           # nk_r (sum of responsibilities + 10 eps)
    d = mu - shift
    buf[0], buf[1], buf[2] = n, n * step.log_prob_norm, 1.0
    buf[_SCALARS:_SCALARS + M] = nk
    buf[_SCALARS + M:_SCALARS + M + M * D] = (mu * nk[:, None]).ravel()
    o = _SCALARS + M + M * D
    if cov == "full":
        W = (c - reg_covar * np.eye(D)[None]) * nk[:, None, None]
        T = W + nk[:, None, None] * (d[:, :, None] * d[:, None, :])
    elif cov == "tied":
        W = (c - reg_covar * np.eye(D)) * nk.sum()
        T = W + np.einsum("k,ki,kj->ij", nk, d, d)
    elif cov == "diag":
        W = (c - reg_covar) * nk[:, None]
        T = W + nk[:, None] * d**2
    else:
        W = (c - reg_covar) * nk * D
        T = W + nk * np.sum(d**2, axis=1)
    buf[o:] = np.ravel(T - tiny * _eps_scatter(cov, shift, mu))
    return buf


def _eps_scatter(cov: str, shift: np.ndarray, means: np.ndarray) -> np.ndarray:
    """What the ``10 eps`` in a shard's counts adds to its scatter about ``shift`` (times
    1 / (10 eps)): the shard's covariances are scikit-learn's, whose means ``S1 / (R + 10 eps)``
    shrink towards the origin, so ``W + nk (mu - c)(mu - c)^T`` exceeds the plain sum of
    ``r (x - c)(x - c)^T`` by ``10 eps`` times this. Each shard takes it off and the sum
    puts it back once: added by every shard, float32 data (10 eps = 1.2e-6) got covariances
    off by (shards - 1) * 1.2e-6 * c^2 / nk from the one-process fit's, and EM drifted."""
    if cov == "full":
        return shift[:, :, None] * shift[:, None, :] - means[:, :, None] * means[:, None, :]
    if cov == "tied":
        return shift.T @ shift
    if cov == "diag":
        return shift**2
    return np.sum(shift**2, axis=1)


def _finish(total: np.ndarray, shift: np.ndarray, cov: str, M: int, D: int, reg_covar: float,
            eps: float) -> EMStep:
    """The global EM step from the summed statistics (identical on every rank)."""
    tiny = 10.0 * eps
    n, nll, shards = total[0], total[1], total[2]
    nk = total[_SCALARS:_SCALARS + M] - (shards - 1.0) * tiny  # 10 eps once, as one process
    S1 = total[_SCALARS + M:_SCALARS + M + M * D].reshape(M, D)
    T = total[_SCALARS + M + M * D:]
    means = S1 / nk[:, None]
    d = means - shift
    T = T + tiny * np.ravel(_eps_scatter(cov, shift, means))
    if cov == "full":
        W = T.reshape(M, D, D) - nk[:, None, None] * (d[:, :, None] * d[:, None, :])
        covs = W / nk[:, None, None]
        covs = 0.5 * (covs + np.transpose(covs, (0, 2, 1)))
        covs[:, np.arange(D), np.arange(D)] += reg_covar
    elif cov == "tied":
        W = T.reshape(D, D) - np.einsum("k,ki,kj->ij", nk, d, d)
        covs = W / nk.sum()
        covs = 0.5 * (covs + covs.T)
        covs[np.arange(D), np.arange(D)] += reg_covar
    elif cov == "diag":
        covs = (T.reshape(M, D) - nk[:, None] * d**2) / nk[:, None] + reg_covar
    else:
        covs = (T - nk * np.sum(d**2, axis=1)) / (nk * D) + reg_covar
    return EMStep(float(nll / n), nk / nk.sum(), means, covs)


def combine_em_steps(comm: Any, step: EMStep | None, n_local: int, shift: np.ndarray, cov: str,
                     reg_covar: float, eps: float, *, seconds: float = 0.0, stats: Any = None,
                     error: BaseException | None = None) -> tuple[EMStep, float]:
    """Collective: the global :class:`EMStep` from each rank's shard step (one Allreduce).

    ``step`` is None on a rank with an empty shard. Returns the step and the mean over ranks of
    ``seconds`` (used to agree on the fastest variant). A rank whose local step failed passes
    the exception as ``error``: the failure travels in the same Allreduce, so every rank raises
    (the failing one its own exception) instead of the others waiting forever.
    """
    from mpi4py import MPI

    M, D = shift.shape
    local = _local_statistics(step, n_local, shift, cov, M, D, reg_covar, eps, seconds,
                              failed=error is not None)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=MPI.SUM)
    if stats is not None:
        stats.reduction()
    if total[4] > 0:
        if error is not None:
            raise error
        raise RuntimeError(f"the EM step failed on {int(total[4])} other rank(s); their error "
                           "output says why")
    return _finish(total, shift, cov, M, D, reg_covar, eps), float(total[3] / comm.Get_size())


class DistributedEM:
    """One EM iteration over all ranks' shards, with the variant choice agreed across ranks."""

    def __init__(self, comm: Any, options: dict[str, Any] | None = None) -> None:
        from asp_core.mpi import CommStats

        self.comm = comm
        self.options = dict(options or {})
        self.stats = CommStats()
        self._variants: Mapping[str, Callable[..., EMStep]] | AgreedVariants | None = None
        self._tuner: Autotuner | None = None
        self.winner: str | None = None
        self.timings: dict[str, float] = {}

    # -- variants ----------------------------------------------------------------------------
    def _prepare(self, X: np.ndarray, params: tuple, n_global: int) -> None:
        """The variants every rank has (each built on its first use) and their collective
        tuner, kept per order of magnitude of the global N; the NumPy step on every rank when
        any rank cannot specialise."""
        from asp_core import Dispatcher
        from asp_core.collective import AgreedVariants

        from asp_gmm import reference
        from asp_gmm.engine import GMMKernel

        sample = np.ascontiguousarray(X[:1]) if len(X) else np.zeros((1, params[1].shape[1]),
                                                                     dtype=X.dtype)
        dispatcher = Dispatcher("gmm", reference.em_step, instance=GMMKernel("em_step"),
                                options=self.options, name="asp_gmm.em_step[mpi]")
        agreed = AgreedVariants(dispatcher, (sample, *params), self.comm,
                                tuning=int(math.floor(math.log10(max(n_global, 1)))),
                                what="distributed EM")
        if agreed.tuner is None:
            self._variants = {"numpy": reference.em_step}
            self.winner = "numpy"
            return
        self._variants = agreed
        self._tuner = agreed.tuner
        if agreed.tuner.done:  # rank 0's stored winner, or the default with tuning off
            self.winner = agreed.tuner.winner

    def _fn(self, name: str) -> Callable[..., EMStep] | None:
        """Collective: variant ``name`` built on every rank, or None on every rank where it
        failed to build on any (a compile timeout: every rank raised ``ToolchainError``,
        where one process's fit falls back to NumPy)."""
        from asp_core.collective import AgreedVariants

        variants = self._variants
        assert variants is not None
        if isinstance(variants, AgreedVariants):
            return variants.agreed_build(name)
        return variants[name]

    def _numpy(self, reason: str) -> Callable[..., EMStep]:
        """The NumPy step on every rank from now on, with one warning (as one process)."""
        from asp_core import SpecializationWarning

        from asp_gmm import reference

        warn(f"asp: distributed EM runs unspecialised on every rank: {reason}",
             SpecializationWarning)
        self._variants, self._tuner, self.winner = {"numpy": reference.em_step}, None, "numpy"
        return reference.em_step

    def step(self, X: np.ndarray, weights: np.ndarray, means: np.ndarray,
             precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float,
             n_global: int) -> EMStep:
        """Collective: one global EM iteration from the given (identical) parameters."""
        params = (weights, means, precisions_cholesky, covariance_type, float(reg_covar))
        if self._variants is None:
            self._prepare(X, params, n_global)
        while True:   # the variant to run, built on every rank (one failing is dropped)
            tuner = self._tuner
            tuning = tuner is not None and not tuner.done
            if tuner is not None and tuner.done:   # its last candidate left by a failed build
                self.winner = tuner.winner
            name = tuner.next() if tuner is not None and tuning else self.winner
            assert name is not None
            fn = self._fn(name)
            if fn is not None:
                break
            if not tuning or tuner is None or tuner.done:
                fn, name, tuning = self._numpy(f"variant {name} failed to build on a rank"), \
                    "numpy", False
                break
        local: EMStep | None = None
        seconds = 0.0
        error: BaseException | None = None
        if len(X):
            try:
                t0 = time.perf_counter()
                local = fn(X, *params)
                seconds = time.perf_counter() - t0
            except Exception as exc:  # reported on every rank by the collective below
                error = exc
        eps = float(np.finfo(X.dtype).eps)
        step, mean_seconds = combine_em_steps(self.comm, local, len(X), np.asarray(
            means, dtype=np.float64), covariance_type, float(reg_covar), eps, seconds=seconds,
            stats=self.stats, error=error)
        if tuning:
            self.timings[name] = mean_seconds
            assert tuner is not None
            tuner.report(name, mean_seconds, agreed=True)  # it travelled in the Allreduce
            if tuner.done:
                self.winner = tuner.winner
        return step


class DistributedGaussianMixture:
    """Gaussian mixture fitted by data-parallel EM; each rank passes its own shard of X.

    Parameters are scikit-learn's (``n_components``, ``covariance_type``, ``tol``,
    ``reg_covar``, ``max_iter``, ``n_init``, ``init_params``, ``weights_init``, ``means_init``,
    ``precisions_init``, ``random_state``, ``warm_start``) plus ``comm`` (default
    ``COMM_WORLD``), ``asp_options`` (core dispatcher options) and ``init_sample`` (how many
    points, over all ranks, rank 0 gathers to initialise when no explicit initial parameters
    are given).

    ``fit``, ``score`` and ``bic``/``aic`` are collective; ``predict``, ``predict_proba`` and
    ``score_samples`` act on the local shard only. After ``fit`` every rank holds the same
    fitted attributes (``weights_``, ``means_``, ``covariances_``, ``precisions_cholesky_``,
    ``precisions_``, ``lower_bound_``, ``n_iter_``, ``converged_``); the arrays take the
    data's dtype, as ``asp_gmm.GaussianMixture``'s do (EM runs in float64).

    With ``warm_start=True`` a fit of a fitted model goes on from its ``weights_``, ``means_``
    and ``precisions_cholesky_`` (the same on every rank) with one initialisation, as
    scikit-learn's: the first iteration's change is taken from the previous ``lower_bound_``.
    Fitted parameters of other shapes than the current ``n_components``, ``covariance_type``
    and number of features start afresh, as ``asp_gmm.GaussianMixture`` does.
    """

    lower_bound_: float  # set by fit, read by a warm start's (annotated for the type checker)

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full",
                 tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100,
                 n_init: int = 1, init_params: str = "kmeans", weights_init: Any = None,
                 means_init: Any = None, precisions_init: Any = None, random_state: Any = None,
                 warm_start: bool = False, comm: Any = None, asp_options: dict | None = None,
                 init_sample: int = 20000) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.comm = comm
        self.asp_options = asp_options
        self.init_sample = init_sample

    def __getstate__(self) -> dict[str, Any]:
        """The model without ``engine_``, the fit's engine: it holds this process's compiled
        kernels (ctypes pointers) and tuning callbacks, so a fitted model could be neither
        pickled (to save it, or to predict in another process) nor deep-copied. Predicting
        needs only the fitted parameters. Nor the communicator, a handle of this MPI job (one
        made by ``Split`` or ``Dup`` cannot be pickled): the loaded model fits and scores over
        the ``COMM_WORLD`` of the process that loads it, unless given ``comm=`` again."""
        state = self.__dict__.copy()
        state.pop("engine_", None)
        state["comm"] = None
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> DistributedGaussianMixture:
        """A copy without the engine that shares the communicator (a handle: the copy fits
        over the same ranks)."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(copy.deepcopy(self.__getstate__(), memo))
        twin.comm = self.comm
        return twin

    # -- validation ----------------------------------------------------------------------------
    def _comm(self) -> Any:
        if self.comm is None:
            from asp_core.mpi import world

            self.comm = world()
        else:
            from asp_core.mpi import abort_on_uncaught

            abort_on_uncaught(self.comm)
        return self.comm

    def _validate(self, X: Any, *, fitting: bool, collective: bool = True) -> np.ndarray:
        """The local shard as a float array. Collective (the same ValueError on all ranks)
        unless ``collective=False``, for the methods that act on the local shard only
        (``predict``...): their validation's collectives hung a call made on one rank."""
        from asp_core.mpi import agree, check_same

        if not fitting:
            self._check_fitted()
        comm = self._comm() if collective else None
        error = None
        arr = None
        try:
            arr = np.asarray(X)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"X must be numeric, got dtype {arr.dtype}")
            if arr.ndim != 2:
                raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
            if arr.shape[1] == 0:   # scikit-learn's message (it was a ZeroDivisionError)
                raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a "
                                 f"minimum of 1 is required by {type(self).__name__}.")
            arr = np.ascontiguousarray(arr, dtype=arr.dtype if arr.dtype in (np.float32,
                                                                            np.float64)
                                       else np.float64)
            if not np.all(np.isfinite(arr)):
                raise ValueError("Input X contains NaN or infinity.")
        except (TypeError, ValueError) as exc:
            if comm is None:
                raise
            error = str(exc)
        assert arr is not None
        if comm is None:
            return self._check_features(arr)
        agree(comm, error)
        check_same(comm, arr.shape[1], "number of features")
        # an empty shard (np.empty((0, D)) is float64 whatever the others hold) takes the
        # dtype of the shards with samples, when they agree: shards may have any size, even 0
        held = {d for d in comm.allgather(str(arr.dtype) if len(arr) else None) if d}
        if not len(arr) and len(held) == 1:
            arr = arr.astype(held.pop())
        check_same(comm, str(arr.dtype), "dtype of X")
        return arr if fitting else self._check_features(arr)

    def _check_features(self, arr: np.ndarray) -> np.ndarray:
        if arr.shape[1] != self.means_.shape[1]:
            raise ValueError(f"X has {arr.shape[1]} features, but the model is fitted with "
                             f"{self.means_.shape[1]} features")
        return arr

    def _check_fitted(self) -> None:
        """scikit-learn's NotFittedError before ``fit`` (it was an AttributeError naming
        ``means_``). Raised before any collective: ``fit`` is collective, so every rank is
        fitted or none is."""
        if not hasattr(self, "means_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this "
                                 "estimator.")

    def _check_parameters(self, n_global: int, D: int) -> None:
        """Collective: the same hyperparameters and initial parameters on every rank (else a
        ValueError on every rank; a rank with other values would wait in another collective or
        fit another model), then their checks, which then fail on every rank alike."""
        import hashlib

        from asp_core.mpi import check_same

        from asp_gmm.validation import check_initial_parameters, check_shared_hyperparameters

        def digest(a: Any) -> str | None:
            if a is None:
                return None
            try:
                return hashlib.sha256(
                    np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()[:16]
            except (TypeError, ValueError) as exc:   # every rank must still reach check_same
                return f"not float64: {type(exc).__name__}: {exc}"

        inits = tuple(map(digest, (self.weights_init, self.means_init, self.precisions_init)))
        check_same(self._comm(), (self.n_components, self.covariance_type, self.tol,
                                  self.reg_covar, self.max_iter, self.n_init, self.init_sample,
                                  self.warm_start, inits),
                   "hyperparameters (n_components, covariance_type, tol, reg_covar, max_iter, "
                   "n_init, init_sample, warm_start, and the initial weights, means and "
                   "precisions)")
        error = None
        try:   # random_state, init_params and asp_options are not compared: agreed instead
            check_shared_hyperparameters(self, owner=type(self).__name__)
            if isinstance(self.init_sample, (bool, np.bool_)) or not isinstance(
                    self.init_sample, (int, np.integer)) or self.init_sample < 1:
                # 0, -5 and 3.5 were taken, "x" and None failed inside int()
                raise ValueError(f"The 'init_sample' parameter of {type(self).__name__} must "
                                 f"be an int in the range [1, inf). Got {self.init_sample!r} "
                                 "instead.")
        except ValueError as exc:
            error = str(exc)
        _agree_once(self._comm(), error)
        if n_global < 2:   # one sample has no covariance: scikit-learn refuses it too
            raise ValueError(f"Found array with {n_global} sample(s) over all ranks while a "
                             f"minimum of 2 is required by {type(self).__name__}.")
        if n_global < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {n_global} (over all ranks)")
        # scikit-learn's checks of the initial parameters (normalised weights, shapes,
        # positive-definite precisions): the same arrays on every rank, so the same outcome
        check_initial_parameters(self, D)

    def _warm(self, D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Collective: (weights, means, precisions_cholesky, covariances) of the fitted model,
        in float64, when this fit goes on from them (scikit-learn's warm start), else None.
        Every rank must take the same branch: an initialisation is collective, so a rank whose
        model alone was fitted (or fitted to other shapes) would leave the others waiting in
        it; such ranks get a ValueError on every rank instead."""
        from asp_core.mpi import check_same

        from asp_gmm.validation import fitted_parameters_fit

        warm = bool(self.warm_start and hasattr(self, "converged_")
                    and fitted_parameters_fit(self, D))
        check_same(self._comm(), warm, "warm start (warm_start and a model fitted to the "
                   "current n_components, covariance_type and number of features)")
        if not warm:
            return None
        w, mu, pc, covs = (np.asarray(getattr(self, name), dtype=np.float64) for name in
                           ("weights_", "means_", "precisions_cholesky_", "covariances_"))
        return w, mu, pc, covs

    # -- initialisation ------------------------------------------------------------------------
    def _initial(self, X: np.ndarray, n_global: int, rng: np.random.RandomState
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Collective: (weights, means, precisions_cholesky), the same on every rank."""
        from asp_gmm.linalg import precision_cholesky, precision_cholesky_from_precisions

        comm = self._comm()
        M, D, cov = self.n_components, X.shape[1], self.covariance_type
        given = (self.weights_init is not None and self.means_init is not None
                 and self.precisions_init is not None)
        if given:   # the same arrays on every rank (checked): so are these checks' results
            w = np.asarray(self.weights_init, dtype=np.float64)
            mu = np.asarray(self.means_init, dtype=np.float64)
            if w.shape != (M,) or mu.shape != (M, D):
                raise ValueError(f"weights_init must have shape ({M},) and means_init ({M}, "
                                 f"{D}); got {w.shape} and {mu.shape}")
            pc = precision_cholesky_from_precisions(np.asarray(self.precisions_init,
                                                               dtype=np.float64), cov)
            return w, mu, pc
        # rank 0 initialises from a sample drawn from every shard, in proportion to its size:
        # shares by largest remainder, so that they add up to the sample (rounding each one
        # left 1 + 1 + 2 samples with 0 + 0 + 1 taken, fewer than the components)
        want = min(n_global, max(int(self.init_sample), M))
        sizes = np.array(comm.allgather(len(X)), dtype=np.int64)
        exact = want * sizes / n_global
        shares = np.floor(exact).astype(np.int64)
        order = np.argsort(-(exact - shares), kind="stable")
        shares[order[:want - int(shares.sum())]] += 1
        take = int(shares[comm.Get_rank()])
        if want >= n_global:
            # the sample is all the data, gathered in rank order: no draw, so that rank 0's
            # rng is untouched and the initialisation is the one-process fit's on the gathered
            # data (drawing a seed first gave another k-means start than random_state does)
            pick = np.arange(len(X))
        else:
            seed = int(rng.randint(0, 2**31 - 1))
            local_rng = np.random.default_rng([seed, comm.Get_rank()])
            pick = np.sort(local_rng.choice(len(X), size=min(take, len(X)), replace=False))
        parts = comm.gather(X[pick], root=0)
        init = None
        error = None
        if comm.Get_rank() == 0:
            try:
                init = self._sample_init(np.concatenate(parts), rng)
            except Exception as exc:  # reported on every rank below
                error = f"{type(exc).__name__}: {exc}"
        error = comm.bcast(error, root=0)
        if error is not None:
            raise ValueError(f"initialisation on rank 0 failed: {error}")
        w, mu, covs = comm.bcast(init, root=0)
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
        if self.means_init is not None:
            mu = np.asarray(self.means_init, dtype=np.float64)
        if self.precisions_init is not None:
            pc = precision_cholesky_from_precisions(np.asarray(self.precisions_init,
                                                               dtype=np.float64), cov)
        else:
            pc = precision_cholesky(covs, cov, data_dtype=X.dtype)
        return w, mu, pc

    def _sample_init(self, Xs: np.ndarray, rng: np.random.RandomState
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights, means, covariances) from the gathered sample, as the one-process
        estimator starts (:func:`asp_gmm.initialisation.initial_parameters`): the sample in its
        own dtype, so a float32 fit draws from scikit-learn's float32 k-means and its initial
        M-step adds float32's 10 eps. scikit-learn's private initialisation on a float64 copy
        started a float32 k-means++ or random_from_data fit from means 1e-6 off and
        covariances of about reg_covar many times off, and EM converged elsewhere."""
        from asp_gmm.initialisation import initial_parameters

        start = initial_parameters(self, Xs, rng, None, None, None)
        return start.weights, start.means, start.covariances

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> DistributedGaussianMixture:
        """Collective: EM on the union of every rank's shard ``X``."""
        from mpi4py import MPI

        from asp_gmm.linalg import precision_cholesky

        comm = self._comm()
        X = self._validate(X, fitting=True)
        n_global = int(comm.allreduce(len(X), op=MPI.SUM))
        self._check_parameters(n_global, X.shape[1])
        warm = self._warm(X.shape[1])
        rng = _random_state(self.random_state)
        engine = DistributedEM(comm, self.asp_options)
        self.engine_ = engine
        best: tuple | None = None
        best_lb = -np.inf
        for _ in range(self.n_init if warm is None else 1):
            covs: np.ndarray | None
            if warm is None:
                w, mu, pc = self._initial(X, n_global, rng)
                lb = -np.inf
                covs = None
            else:
                # scikit-learn's warm start: the first change is from the previous fit's lower
                # bound; with no iteration the lower bound stays -inf, not the previous one
                w, mu, pc, covs = warm
                lb = -np.inf if self.max_iter == 0 else float(self.lower_bound_)
            converged = False
            bounds: list[float] = []
            n_iter = 0
            for n_iter in range(1, self.max_iter + 1):
                prev = lb
                step = engine.step(X, w, mu, pc, self.covariance_type, self.reg_covar, n_global)
                lb = step.log_prob_norm
                bounds.append(lb)
                w, mu, covs = step.weights, step.means, step.covariances
                pc = precision_cholesky(covs, self.covariance_type, data_dtype=X.dtype)
                if abs(lb - prev) < self.tol:
                    converged = True
                    break
            # scikit-learn's choice: a later try replaces one without a lower bound (-inf:
            # max_iter=0), so the last initialisation is kept, not the first
            if lb > best_lb or best_lb == -np.inf:
                best_lb = lb
                best = (w, mu, covs, pc, n_iter, converged, bounds)
        assert best is not None
        w, mu, covs, pc, n_iter, converged, bounds = best
        self.weights_, self.means_, self.precisions_cholesky_ = w, mu, pc
        if covs is None:  # max_iter == 0
            from asp_gmm.linalg import covariances_from_precision_cholesky

            covs = covariances_from_precision_cholesky(pc, self.covariance_type)
        self.covariances_ = covs
        self.precisions_ = _precisions(pc, self.covariance_type)
        self._cast_parameters(X.dtype)
        self.n_iter_, self.converged_ = n_iter, converged
        self._fitted_covariance_type = self.covariance_type   # for a later warm start
        self.lower_bound_, self.lower_bounds_ = _lower_bounds(best_lb, bounds, X.dtype)
        self.n_features_in_ = X.shape[1]
        self.comm_stats_ = engine.stats
        self.variant_ = engine.winner
        if not converged and self.max_iter > 0 and comm.Get_rank() == 0:
            from sklearn.exceptions import ConvergenceWarning

            warn("Best performing initialization did not converge. Try different init "
                 "parameters, or increase max_iter, tol, or check for degenerate data.",
                 ConvergenceWarning)
        return self

    def _cast_parameters(self, dtype: np.dtype) -> None:
        """The fitted arrays in the data's dtype, as the one-process estimator (and
        scikit-learn) keeps them: a float32 fit kept float64 attributes. EM ran in float64; a
        model that float32 cannot hold raises the one-process fit's ValueError (the model is
        the same on every rank, so every rank raises it)."""
        from asp_gmm.validation import check_representable

        check_representable(self, dtype)
        for name in _FITTED_ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name)).astype(dtype, copy=False))

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Collective: ``fit(X)``, then the labels of the local shard."""
        return self.fit(X).predict(X)

    # -- prediction (local shard) ------------------------------------------------------------------
    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """float64 whatever the fit's dtype, as the one-process E-step computes."""
        from asp_gmm import engine

        if len(X) == 0:
            return np.zeros((0, self.n_components))
        w, mu, pc = (np.asarray(getattr(self, n), dtype=np.float64)
                     for n in ("weights_", "means_", "precisions_cholesky_"))
        lp = engine.log_prob(X, mu, pc, self.covariance_type, options=self.asp_options)
        return lp + np.log(w)

    def _log_likelihoods(self, X: np.ndarray) -> np.ndarray:
        """float64 log-likelihood of each sample of the (validated) local shard."""
        from asp_gmm.reference import logsumexp_rows

        return logsumexp_rows(self._weighted_log_prob(X)) if len(X) else np.zeros(0)

    def _output_dtype(self, X: np.ndarray) -> np.dtype:
        """The one-process estimator's (scikit-learn's) dtype of ``predict_proba`` and
        ``score_samples``: float32 only for float32 X under a float32 fit."""
        return np.result_type(X.dtype, *(np.asarray(getattr(self, n)).dtype
                                         for n in ("weights_", "means_", "precisions_cholesky_")))

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood of each local sample (local: a call on one rank is fine)."""
        X = self._validate(X, fitting=False, collective=False)
        return self._log_likelihoods(X).astype(self._output_dtype(X), copy=False)

    def predict_proba(self, X: Any) -> np.ndarray:
        from asp_gmm.reference import logsumexp_rows

        X = self._validate(X, fitting=False, collective=False)
        wlp = self._weighted_log_prob(X)
        if len(X):
            wlp = np.exp(wlp - logsumexp_rows(wlp)[:, None])
        return wlp.astype(self._output_dtype(X), copy=False)

    def predict(self, X: Any) -> np.ndarray:
        X = self._validate(X, fitting=False, collective=False)
        return self._weighted_log_prob(X).argmax(axis=1)

    def _total_log_likelihood(self, X: Any) -> tuple[float, int]:
        """Collective: the summed log-likelihood of all ranks' samples, and their number.

        With no sample on any rank, every rank raises scikit-learn's ValueError for empty X
        (the mean was nan with a RuntimeWarning, ``bic`` -inf, ``aic`` a number). The reduced
        count is the same on every rank, so they all raise, and no rank is left waiting."""
        from mpi4py import MPI

        X = self._validate(X, fitting=False)
        s = self._log_likelihoods(X)
        tot = self._comm().allreduce(np.array([s.sum(), len(s)]), op=MPI.SUM)
        if tot[1] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape} on every rank) "
                             f"while a minimum of 1 is required by {type(self).__name__}.")
        return float(tot[0]), int(tot[1])

    def score(self, X: Any, y: Any = None) -> float:
        """Collective: mean log-likelihood over all ranks' samples."""
        total, n = self._total_log_likelihood(X)
        return total / n

    def _n_parameters(self) -> int:
        M, D = self.means_.shape
        cov = {"full": M * D * (D + 1) / 2, "diag": M * D, "tied": D * (D + 1) / 2,
               "spherical": M}[self.covariance_type]
        return int(cov + M * D + M - 1)

    def bic(self, X: Any) -> float:
        """Collective: Bayesian information criterion on all ranks' samples."""
        total, n = self._total_log_likelihood(X)
        return float(-2 * total + self._n_parameters() * np.log(n))

    def aic(self, X: Any) -> float:
        """Collective: Akaike information criterion on all ranks' samples."""
        total, _ = self._total_log_likelihood(X)
        return float(-2 * total + 2 * self._n_parameters())


def _agree_once(comm: Any, error: str | None) -> None:
    """Collective: raise ``error`` (this rank's failed check, or None) as a ValueError on every
    rank when any rank has one; its message once when every rank failed alike (a bad value
    given to all of them), else each failing rank's (:func:`asp_core.mpi.agree`)."""
    from asp_core.mpi import agree

    errors = comm.allgather(error)
    if all(e is None for e in errors):
        return
    if len(set(errors)) == 1:
        raise ValueError(error)
    agree(comm, error)


def _lower_bounds(best: float, bounds: list[float], dtype: np.dtype
                  ) -> tuple[float, list[float]]:
    """``lower_bound_`` and ``lower_bounds_`` as the one-process estimator's (scikit-learn's):
    NumPy scalars of the data's dtype (they were Python floats, float64 for float32 data),
    and the Python float ``-inf`` where no iteration ran."""
    scalar = np.dtype(dtype).type
    return (scalar(best) if bounds else best), [scalar(bound) for bound in bounds]


def _random_state(seed: Any) -> np.random.RandomState:
    """scikit-learn's ``check_random_state`` without importing scikit-learn."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def _precisions(pc: np.ndarray, cov: str) -> np.ndarray:
    if cov == "full":
        return np.einsum("kij,klj->kil", pc, pc)
    if cov == "tied":
        return pc @ pc.T
    return pc**2
