"""scikit-learn's k-means initialisation of a Gaussian mixture, with its Lloyd passes compiled.

``init_params="kmeans"`` runs ``KMeans(n_clusters=M, n_init=1, random_state=rs).fit(X)`` and
keeps its labels; ``init_params="k-means++"`` runs ``kmeans_plusplus(X, M, random_state=rs)``.
The loops, the random draws and the decisions are scikit-learn's, in its order:

* k-means++ (``_kmeans_plusplus``): the first centre ``rs.choice(N, p=w / w.sum())``, then for
  each next one ``rs.uniform(size=trials) * potential`` searched in the cumulative sum of the
  squared distances, the candidate of least potential kept. The steps after the first centre
  run in one compiled ``kmeans_seed`` call (one parallel pass per step, the draws searched
  block by block: :func:`asp_gmm.reference.kmeans_seed`), their uniforms drawn in one call (the
  same numbers); while the library is still compiling, one NumPy step at a time
  (:func:`asp_gmm.reference.kmeans_seed_step`, scikit-learn's expressions);
* Lloyd (``_kmeans_single_lloyd``): on the data centred by its mean, at most 300 iterations,
  stopping when the labels repeat (strict convergence) or when the squared centre shift falls
  to ``1e-4`` times the mean variance of X; empty clusters take the samples farthest from
  their centres; after a non-strict stop the labels are recomputed from the final centres.
  Each pass runs as the compiled ``kmeans_assign`` kernel of the mixture's own library
  (:mod:`asp_gmm.engine`; while that library is still compiling in the background, as the
  NumPy pass of :mod:`asp_gmm.reference`). The compiled passes keep Hamerly's bounds between
  them (``bounds``, ``moved``) and skip the distances of samples whose label the bounds
  prove, with a margin for rounding; a sample whose two least distances lie within rounding
  of each other is labelled by the NumPy pass's own expression, and the clusters are summed
  in sample order by both, so the labels do not depend on which pass ran.

The random state is consumed exactly as scikit-learn consumes it, so a later initialisation
(``n_init > 1``) draws what scikit-learn's would. scikit-learn sums the clusters per thread
and computes its distances in chunks of another size, whose BLAS products round otherwise,
so where a decision rests on rounding the two can differ: a sample whose two nearest centres
are equal in exact arithmetic (common with integer-valued data) may go to the other one, and
the k-means from there to another local optimum. The compiled seeding sums the potentials
in another order than the NumPy steps, so on such data (candidates of equal potential, a draw
on the boundary between two samples) the centres it seeds can differ from those of the same
fit run while the library compiled: re-deciding those steps in NumPy cost the default fit
2.7x its time (N=200k D=16 M=32: seeding 32 ms compiled, 152 ms in NumPy), so it is not done.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asp_core.errors import warn

from asp_gmm import engine, reference
from asp_gmm.lowering import kmeans_trials
from asp_gmm.reference import KMeansAssignment, KMeansSeed

__all__ = ["kmeans_labels", "kmeans_plusplus_indices"]

#: scikit-learn's KMeans defaults, as GaussianMixture constructs it
MAX_ITER = 300
TOL = 1e-4


def _numpy_seed_step(X: np.ndarray, xx: np.ndarray, candidates: np.ndarray,
                     closest: np.ndarray, n_clusters: int, covariance_type: str,
                     options: dict[str, Any] | None, steps_left: int) -> KMeansSeed:
    """One seeding step in NumPy while the library compiles (``steps_left`` such steps
    foreseen, this one included: they decide when a deferred build starts)."""
    return engine.numpy_pass(reference.kmeans_seed_step, X, n_clusters, covariance_type,
                             options, X, xx, candidates, closest, n_clusters, covariance_type,
                             calls_left=steps_left)


def _assign(X: np.ndarray, centers: np.ndarray, covariance_type: str,
            options: dict[str, Any] | None, bounds: np.ndarray, moved: np.ndarray
            ) -> KMeansAssignment:
    """One Lloyd pass: compiled, or in NumPy while the library is not built (``bounds``,
    ``moved``: the state the compiled passes keep, :func:`asp_gmm.reference.kmeans_assign`)."""
    args = (X, centers, covariance_type, bounds, moved)
    if engine.compiled(X.shape[1], centers.shape[0], covariance_type, X.dtype, options):
        return engine.kmeans_assign(*args, options=options)
    return engine.numpy_pass(reference.kmeans_assign, X, centers.shape[0], covariance_type,
                             options, *args)


def _em_iteration_in_seed_steps(n_clusters: int, n_features: int, trials: int,
                                covariance_type: str) -> int:
    """One EM iteration's floating-point work over a seeding step's (2 D trials per sample):
    the seeding steps foresee the fit's NumPy time as the steps left plus one EM iteration
    (8 M D per sample for diag, about 2 M D (D + 1) for full), so a fit whose EM is heavy
    (full covariances) starts its build at the first step (:func:`asp_gmm.engine.while_compiling`)."""
    M, D = n_clusters, n_features
    per_sample = 2.0 * M * D * (D + 1) if covariance_type == "full" else 8.0 * M * D
    return int(round(per_sample / (2.0 * D * trials)))


def kmeans_plusplus_indices(X: np.ndarray, n_clusters: int, random_state: np.random.RandomState,
                            covariance_type: str, options: dict[str, Any] | None = None,
                            x_squared_norms: np.ndarray | None = None) -> np.ndarray:
    """The sample indices ``sklearn.cluster.kmeans_plusplus(X, n_clusters,
    random_state=random_state)`` returns, drawn from ``random_state`` as it draws them
    (``x_squared_norms``: the rows' squared norms, when the caller has them)."""
    N, D = X.shape
    trials = kmeans_trials(n_clusters)
    em = _em_iteration_in_seed_steps(n_clusters, D, trials, covariance_type)
    xx = np.einsum("ij,ij->i", X, X) if x_squared_norms is None else x_squared_norms
    weights = np.ones(N, dtype=X.dtype)
    first = random_state.choice(N, p=weights / weights.sum())
    indices = np.full(n_clusters, -1, dtype=np.int64)
    indices[0] = first
    step: KMeansSeed | None = None
    c = 1
    # one step at a time in NumPy while the library compiles in the background
    while c < n_clusters and not engine.compiled(D, n_clusters, covariance_type, X.dtype,
                                                 options):
        if step is None:  # the first centre's distances: all candidates the same sample
            step = _numpy_seed_step(X, xx, np.full(trials, first, dtype=np.int64),
                                    np.full(N, np.inf), n_clusters, covariance_type, options,
                                    n_clusters + em)
            continue
        candidates = reference.kmeans_seed_candidates(step, random_state.uniform(size=trials), N)
        step = _numpy_seed_step(X, xx, candidates, step.closest, n_clusters, covariance_type,
                                options, n_clusters - c + em)
        indices[c] = candidates[step.best]
        c += 1
    if c == n_clusters:
        return indices
    # the remaining steps in one compiled call, their draws made at once (the same numbers
    # as one draw of `trials` per step)
    uniforms = random_state.uniform(size=(n_clusters - c) * trials)
    closest = np.full(N, np.inf) if step is None else step.closest
    return engine.kmeans_seed(X, xx, indices, closest, uniforms, n_clusters, covariance_type,
                              options).indices


def _relocate_empty(X: np.ndarray, centers: np.ndarray, sums: np.ndarray, counts: np.ndarray,
                    labels: np.ndarray) -> None:
    """scikit-learn's ``_relocate_empty_clusters_dense``: each empty cluster takes one of the
    samples farthest from their centres (in place on ``sums`` and ``counts``)."""
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return
    distances = ((X - centers[labels]) ** 2).sum(axis=1)
    far = np.argpartition(distances, -empty.size)[:-empty.size - 1:-1]
    for new, i in zip(empty, far):
        old = labels[i]
        sums[old] -= X[i]
        sums[new] = X[i]
        counts[new] = 1.0
        counts[old] -= 1.0


def kmeans_labels(X: np.ndarray, n_clusters: int, random_state: np.random.RandomState,
                  covariance_type: str, options: dict[str, Any] | None = None) -> np.ndarray:
    """``KMeans(n_clusters, n_init=1, random_state=random_state).fit(X).labels_`` (int64)."""
    from sklearn.exceptions import ConvergenceWarning

    N, D = X.shape
    # the column means as np.einsum sums them (a third of X.mean(axis=0)'s time, the same
    # sequential sums)
    Xc = X - np.einsum("ij->j", X) / N
    xx = np.einsum("ij,ij->i", Xc, Xc)
    # np.mean(np.var(X, axis=0)) is the sum of the squared centred entries over N * D: the
    # seeding's squared row norms summed (rounded in another order, a tolerance only)
    tol = float(xx.sum()) / (N * D) * TOL
    centers = Xc[kmeans_plusplus_indices(Xc, n_clusters, random_state, covariance_type,
                                         options, xx)].astype(np.float64)
    labels_old = np.full(X.shape[0], -1, dtype=np.int64)
    strict = False
    # the compiled passes' bounds (none known yet) and each centre's move since the last pass
    bounds, moved = np.full((N, 3), -1.0), np.zeros(n_clusters)
    for _ in range(MAX_ITER):
        step = _assign(Xc, centers, covariance_type, options, bounds, moved)
        labels, sums, counts = step.labels, step.sums, step.counts
        _relocate_empty(Xc, centers, sums, counts, labels)
        new = sums * (1.0 / np.where(counts > 0, counts, 1.0))[:, np.newaxis]
        moves = (new - centers) ** 2
        shift = moves.sum()
        moved = np.sqrt(moves.sum(axis=1))
        centers = new
        if np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = _assign(Xc, centers, covariance_type, options, bounds, moved).labels
    distinct = int(np.count_nonzero(np.bincount(labels, minlength=n_clusters)))
    if distinct < n_clusters:
        warn(f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
             f"({n_clusters}). Possibly due to duplicate points in X.",
             ConvergenceWarning)
    return labels
