"""The EM computation in NumPy: the semantics every compiled variant must reproduce.

These functions are the Python "kernels" handed to the core's Dispatcher: the frontend reads
their call signature to build the domain AST, and when no compiler is present (or the problem
is outside what the C/CUDA platforms accept) they run as they are. They follow scikit-learn's
``GaussianMixture`` step for step (log-sum-exp normalisation, ``10 * eps`` added to the
component counts, Cholesky factors of the precisions), so the NumPy engine is scikit-learn's
arithmetic to rounding (one exp serves the normaliser and the responsibilities, and terms
below the least normal double are zero: :func:`_exp_normal`) and the compiled engines match
it to rounding. float32 data are computed in float64, as the compiled kernels compute them
(scikit-learn computes in float32), with scikit-learn's ``10 * eps`` of float32: see
:func:`_in_float64`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from asp_gmm.linalg import log_det_cholesky

__all__ = ["E_STEP_OUTPUTS", "EMStep", "KMEANS_CHUNK", "KMeansAssignment", "KMeansSeed",
           "KMeansSeeding", "cluster_sums", "e_step", "em_step", "kmeans_assign",
           "kmeans_redecide", "kmeans_seed", "kmeans_seed_candidates", "kmeans_seed_step",
           "log_prob", "logsumexp_rows", "m_step"]


class EMStep(NamedTuple):
    """Result of one EM iteration started from the given parameters.

    ``log_prob_norm`` is the mean log-likelihood of X under the *incoming* parameters (what
    scikit-learn's lower bound reports); the other fields are the M-step's new parameters.
    """

    log_prob_norm: float
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


#: below this exponent exp() is subnormal or zero: those terms are taken as zero
#: (:func:`_exp_normal`)
_LEAST_NORMAL_EXP = float(np.log(np.finfo(np.float64).tiny))


def _exp_normal(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` in place, the terms below the least normal double (< 2.3e-308) zero.

    scikit-learn keeps them subnormal; on the order of 1e-308 they change no sum of
    responsibilities, but every product with a subnormal operand is slow: with them the
    M-step's ``resp.T @ X`` was 4.7x slower (N=20k D=64 M=16, a few % subnormal), and exp()
    of arguments that underflow 2-6x slower than of -inf."""
    np.copyto(a, -np.inf, where=a < _LEAST_NORMAL_EXP)
    return np.exp(a, out=a)


def _shifted_exp(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``exp(a - rowmax)`` with subnormal terms zero, the finite row maxima) of (N, M) ``a``."""
    amax = np.max(a, axis=1)
    amax = np.where(np.isfinite(amax), amax, 0.0)
    with np.errstate(invalid="ignore"):  # rows of -inf: -inf - 0 stays -inf
        return _exp_normal(a - amax[:, np.newaxis]), amax


def _in_float64(X: np.ndarray) -> tuple[np.ndarray, float]:
    """(X in float64, ``10 * eps`` of X's own dtype), what the EM steps compute with.

    The compiled kernels read float32 samples into double and add scikit-learn's ``10 * eps``
    of the data's dtype to the counts (:func:`asp_gmm.packing.finish_em_step`); the NumPy
    engine does the same, so a fit does not depend on which engine ran it. Squares and
    products in float32 had made the tied covariance of data 1000 from the origin wrong in
    its first digit, and the variances of collapsed components negative. float64 X is not
    copied."""
    return np.asarray(X, dtype=np.float64), 10 * float(np.finfo(X.dtype).eps)


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=1)) without overflow."""
    e, amax = _shifted_exp(a)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(e, axis=1)) + amax


def log_prob(X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray,
             covariance_type: str) -> np.ndarray:
    """Log-density of each sample under each component, shape (N, M) (not weighted), in
    float64 whatever X's dtype (:func:`_in_float64`)."""
    return _log_prob(np.asarray(X, dtype=np.float64), None, means, precisions_cholesky,
                     covariance_type)


def _log_prob(X: np.ndarray, X2: np.ndarray | None, means: np.ndarray,
              precisions_cholesky: np.ndarray, covariance_type: str) -> np.ndarray:
    """:func:`log_prob`; ``X2``: ``X**2`` when the caller has it (diag, spherical)."""
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    log_det = log_det_cholesky(precisions_cholesky, covariance_type, n_features)
    if covariance_type == "full":
        lp = np.empty((n_samples, n_components), dtype=X.dtype)
        for k in range(n_components):
            y = X @ precisions_cholesky[k] - means[k] @ precisions_cholesky[k]
            lp[:, k] = np.sum(np.square(y), axis=1)
    elif covariance_type == "tied":
        lp = np.empty((n_samples, n_components), dtype=X.dtype)
        for k in range(n_components):
            y = X @ precisions_cholesky - means[k] @ precisions_cholesky
            lp[:, k] = np.sum(np.square(y), axis=1)
    elif covariance_type == "diag":
        precisions = precisions_cholesky**2
        lp = (np.sum(means**2 * precisions, 1) - 2.0 * (X @ (means * precisions).T)
              + (X**2 if X2 is None else X2) @ precisions.T)
    else:
        precisions = precisions_cholesky**2
        lp = (np.sum(means**2, 1) * precisions - 2 * (X @ means.T * precisions)
              + np.outer((X**2 if X2 is None else X2).sum(axis=1), precisions))
    return -0.5 * (n_features * np.log(2 * np.pi) + lp) + log_det


def _gaussian_parameters(X: np.ndarray, resp: np.ndarray, reg_covar: float,
                         covariance_type: str, tiny: float, X2: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts, means, covariances) from float64 X; ``tiny`` (``10 * eps`` of the data's
    dtype) is added to the counts, as scikit-learn does (:func:`_in_float64`)."""
    nk = resp.sum(axis=0) + tiny
    means = (resp.T @ X) / nk[:, np.newaxis]
    n_components, n_features = means.shape
    if covariance_type == "full":
        cov = np.empty((n_components, n_features, n_features), dtype=X.dtype)
        for k in range(n_components):
            diff = X - means[k]
            cov[k] = ((resp[:, k] * diff.T) @ diff) / nk[k]
            cov[k].flat[:: n_features + 1] += reg_covar
    elif covariance_type == "tied":
        avg_x2 = X.T @ X
        avg_means2 = (nk * means.T) @ means
        cov = (avg_x2 - avg_means2) / nk.sum()
        cov.flat[:: n_features + 1] += reg_covar
    else:
        avg_x2 = (resp.T @ (X * X if X2 is None else X2)) / nk[:, np.newaxis]
        cov = avg_x2 - means**2 + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov


def em_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
            precisions_cholesky: np.ndarray, covariance_type: str, reg_covar: float) -> EMStep:
    """One EM iteration: E-step under the given parameters, then the M-step (diag and
    spherical square X once for both), in float64 whatever X's dtype (:func:`_in_float64`)."""
    X, tiny = _in_float64(X)
    X2 = X * X if covariance_type in ("diag", "spherical") else None
    weighted = _log_prob(X, X2, means, precisions_cholesky, covariance_type) + np.log(weights)
    # one exp for the normaliser and the responsibilities: exp(w - lse) = exp(w - max) / sum
    resp, amax = _shifted_exp(weighted)
    total = np.sum(resp, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_prob_norm = np.log(total) + amax
        resp *= (1.0 / total)[:, np.newaxis]
    nk, new_means, cov = _gaussian_parameters(X, resp, reg_covar, covariance_type, tiny, X2)
    return EMStep(float(np.mean(log_prob_norm)), nk / nk.sum(), new_means, cov)


#: what :func:`e_step` returns: the most probable component of each sample, the
#: responsibilities, the log-likelihood of each sample, or the mean log-likelihood
E_STEP_OUTPUTS = ("labels", "proba", "score_samples", "score")


def e_step(X: np.ndarray, weights: np.ndarray, means: np.ndarray,
           precisions_cholesky: np.ndarray, covariance_type: str, output: str
           ) -> np.ndarray | float:
    """The E-step under the given parameters, reduced to ``output`` (see
    :data:`E_STEP_OUTPUTS`): what ``predict``, ``predict_proba``, ``score_samples`` and
    ``score`` return."""
    with np.errstate(divide="ignore"):
        weighted = log_prob(X, means, precisions_cholesky, covariance_type) + np.log(weights)
    if output == "labels":
        return weighted.argmax(axis=1)
    lse = logsumexp_rows(weighted)
    if output == "score_samples":
        return lse
    if output == "score":
        return float(np.mean(lse))
    with np.errstate(under="ignore"):
        return np.exp(weighted - lse[:, np.newaxis])


def m_step(X: np.ndarray, resp: np.ndarray, n_components: int, covariance_type: str,
           reg_covar: float) -> EMStep:
    """The M-step from given responsibilities, as scikit-learn's initialisation does it.

    ``resp`` is either dense (N x M) or hard labels (N integers; -1 = no component, as for
    the samples ``random_from_data`` does not pick). The weights are the counts over N (not
    normalised: scikit-learn's initial weights of ``random_from_data`` sum to M/N);
    ``log_prob_norm`` is 0. Computed in float64 whatever X's dtype (:func:`_in_float64`).
    """
    X, tiny = _in_float64(X)
    if resp.ndim == 1:
        dense = np.zeros((X.shape[0], n_components), dtype=X.dtype)
        rows = np.flatnonzero(resp >= 0)
        dense[rows, resp[rows]] = 1.0
        resp = dense
    nk, means, cov = _gaussian_parameters(X, resp, reg_covar, covariance_type, tiny)
    return EMStep(0.0, nk / X.shape[0], means, cov)


class KMeansAssignment(NamedTuple):
    """One Lloyd assignment: each sample's nearest centre, and the clusters' sums and sizes."""

    labels: np.ndarray  # int64 (N,)
    sums: np.ndarray  # (M, D)
    counts: np.ndarray  # float64 (M,)


class KMeansSeed(NamedTuple):
    """One k-means++ seeding step: the chosen candidate and what it leaves."""

    best: int  # position in ``candidates``
    potential: float  # sum of ``closest`` once it is a centre
    closest: np.ndarray  # squared distance of each sample to its nearest centre
    cumulative: np.ndarray  # np.cumsum(closest): what the next step's draws search


class KMeansSeeding(NamedTuple):
    """The k-means++ seeding's result: every centre, and the distances they leave."""

    indices: np.ndarray  # int64 (M,): the centres' sample indices, in the order chosen
    closest: np.ndarray  # squared distance of each sample to its nearest centre


#: the samples whose Lloyd distances one BLAS product computes: a row's distances depend on
#: the shape of the product it is part of (OpenBLAS picks kernels by shape: a row computed
#: alone, or with 15 others, was rounded differently from the same row in a product of
#: 1000 rows), so every pass computes them in the same chunks
KMEANS_CHUNK = 4096


def _chunk_labels(X: np.ndarray, centers: np.ndarray, csq: np.ndarray, start: int
                  ) -> np.ndarray:
    """The labels of chunk ``start`` (a multiple of :data:`KMEANS_CHUNK`): least
    ``|c|^2 - 2 x.c``, scikit-learn's expression, the first on ties."""
    dist = csq + -2.0 * (X[start:start + KMEANS_CHUNK] @ centers.T)
    return np.argmin(dist, axis=1)


def cluster_sums(X: np.ndarray, labels: np.ndarray, n_clusters: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(sums (M, D), counts (M)) of the labelled samples as the compiled pass sums them: each
    chunk of :data:`KMEANS_CHUNK` samples summed in sample order from zero (the order of
    ``np.bincount``'s weights), the chunks' sums added in chunk order. A k-means then does not
    depend on which pass ran (sums rounded in another order give centres that differ in
    their last bits, and so other labels for samples tied between two centres). One
    bincount per feature of the transposed chunk: faster than the product with one-hot
    labels and than strided columns."""
    N, D = X.shape
    sums = np.zeros((n_clusters, D))
    for start in range(0, N, KMEANS_CHUNK):
        XT = np.ascontiguousarray(X[start:start + KMEANS_CHUNK].T)
        chunk = labels[start:start + KMEANS_CHUNK]
        for k in range(D):
            sums[:, k] += np.bincount(chunk, weights=XT[k], minlength=n_clusters)
    return sums, np.bincount(labels, minlength=n_clusters).astype(np.float64)


def kmeans_assign(X: np.ndarray, centers: np.ndarray, covariance_type: str,
                  bounds: np.ndarray, moved: np.ndarray) -> KMeansAssignment:
    """scikit-learn's Lloyd pass (``lloyd_iter_chunked_dense``) without its centre update:
    labels by least ``|c|^2 - 2 x.c`` (the first on ties), and per-cluster sums and counts
    (:func:`cluster_sums`).

    ``covariance_type`` only names the mixture the k-means initialises (the compiled kernel
    shares that mixture's library). ``bounds`` (N x 3) and ``moved`` (M) carry what the
    compiled pass keeps between the passes of one k-means to skip samples whose label cannot
    change (per sample: bounds on the distances to its centre and to the others, its label;
    how far each centre moved since): this pass computes every distance and marks the
    bounds unknown (label -1), so a compiled pass after it computes every distance too."""
    del moved  # what the compiled pass needs with the bounds
    bounds[:, 2] = -1.0
    N = X.shape[0]
    csq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(N, dtype=np.int64)
    for start in range(0, N, KMEANS_CHUNK):
        labels[start:start + KMEANS_CHUNK] = _chunk_labels(X, centers, csq, start)
    return KMeansAssignment(labels, *cluster_sums(X, labels, centers.shape[0]))


def kmeans_redecide(X: np.ndarray, centers: np.ndarray, labels: np.ndarray,
                    near: np.ndarray) -> bool:
    """Give the ``near`` samples (indices, ascending) the labels :func:`kmeans_assign`
    gives them, in place on ``labels``; whether any changed.

    The compiled pass rounds the distances otherwise (FMA dot products, another order), so
    where a sample's two least distances lie within rounding of each other (integer-valued
    data: exact ties in real arithmetic) its label could differ from this pass's, and a
    fit's result from whether the library had compiled yet. Those samples' chunks are
    computed again as this pass computes them (the same products: see
    :data:`KMEANS_CHUNK`)."""
    csq = np.einsum("ij,ij->i", centers, centers)
    changed = False
    for start in np.unique(near // KMEANS_CHUNK) * KMEANS_CHUNK:
        these = near[(near >= start) & (near < start + KMEANS_CHUNK)]
        new = _chunk_labels(X, centers, csq, int(start))[these - start]
        changed |= bool(np.any(new != labels[these]))
        labels[these] = new
    return changed


def kmeans_seed_step(X: np.ndarray, x_squared_norms: np.ndarray, candidates: np.ndarray,
                     closest: np.ndarray, n_components: int, covariance_type: str) -> KMeansSeed:
    """One step of scikit-learn's ``_kmeans_plusplus`` after the candidates are drawn, in its
    own NumPy expressions: the potential of each candidate, the first least one, and the
    squared distances to the nearest centre once it is added (``n_components`` and
    ``covariance_type`` name the mixture, as for :func:`kmeans_assign`)."""
    Y = X[candidates]
    dist = -2 * (Y @ X.T)
    dist += np.einsum("ij,ij->i", Y, Y)[:, np.newaxis]
    dist += x_squared_norms.reshape(1, -1)
    np.maximum(dist, 0, out=dist)
    np.minimum(closest, dist, out=dist)
    pots = dist @ np.ones(X.shape[0], dtype=X.dtype).reshape(-1, 1)
    best = int(np.argmin(pots))
    return KMeansSeed(best, float(pots[best, 0]), dist[best], np.cumsum(dist[best]))


def kmeans_seed_candidates(step: KMeansSeed, uniforms: np.ndarray, n_samples: int
                           ) -> np.ndarray:
    """scikit-learn's draw of the next centre's candidates after ``step``: ``uniforms`` times
    the potential, searched in the cumulative sum of the distances (int64 sample indices)."""
    candidates = np.searchsorted(step.cumulative, uniforms * step.potential)
    np.clip(candidates, None, n_samples - 1, out=candidates)
    return candidates.astype(np.int64, copy=False)


def kmeans_seed(X: np.ndarray, x_squared_norms: np.ndarray, indices: np.ndarray,
                closest: np.ndarray, uniforms: np.ndarray, n_components: int,
                covariance_type: str) -> KMeansSeeding:
    """The rest of scikit-learn's k-means++ seeding (``_kmeans_plusplus``) from its first
    ``c >= 1`` centres: ``indices`` holds their sample indices followed by ``-1`` (M in all);
    ``closest`` each sample's squared distance to the nearest of them (or of all but the last:
    ``inf`` for ``c = 1``); ``uniforms`` the ``(M - c) * trials`` draws of
    ``random_state.uniform`` the remaining steps take (``trials`` of them each, drawn in one
    call: the same numbers). Each step draws its candidates (:func:`kmeans_seed_candidates`)
    and keeps the one of least potential (:func:`kmeans_seed_step`)."""
    from asp_gmm.lowering import kmeans_trials

    trials = kmeans_trials(n_components)
    indices = np.array(indices, dtype=np.int64)
    c = int(np.count_nonzero(indices >= 0))
    # the last chosen centre's distances, whether or not closest has them already
    step = kmeans_seed_step(X, x_squared_norms, np.full(trials, indices[c - 1], dtype=np.int64),
                            closest, n_components, covariance_type)
    for s, k in enumerate(range(c, n_components)):
        candidates = kmeans_seed_candidates(step, uniforms[s * trials:(s + 1) * trials],
                                            X.shape[0])
        step = kmeans_seed_step(X, x_squared_norms, candidates, step.closest, n_components,
                                covariance_type)
        indices[k] = candidates[step.best]
    return KMeansSeeding(indices, step.closest)
