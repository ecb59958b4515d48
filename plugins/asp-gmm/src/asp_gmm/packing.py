"""Between NumPy parameters and the generated kernels' padded buffers.

``pack`` turns (weights, means, precision Cholesky factors) into the four read-only buffers a
kernel takes; ``finish_em_step`` turns the statistics vector a kernel writes (moments of
``x - shift``, see the template's header) into scikit-learn's new weights, means and
covariances. The shifted moments keep the second moments accurate when the data sit far from
the origin; the formulas below are exactly scikit-learn's in exact arithmetic.

Each component's moments are taken about its incoming mean, where the second moment's
cancellation is smallest.  A diagonal kernel is cheaper when every component shares one point
(its inner loop then broadcasts ``x - c`` instead of computing it per component), so
:func:`pack` gives all diagonal components the weighted mean of the means while each one's
squared distance from it stays within :data:`SHARED_SHIFT_SPREAD` of its variances: about
that point a component far from the others (a tight cluster beside one a million of its
widths away) lost its variance to cancellation, and the fit raised where scikit-learn's fits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from asp_gmm.layout import Layout
from asp_gmm.linalg import log_det_cholesky
from asp_gmm.reference import EMStep

__all__ = ["Packed", "SHARED_SHIFT_SPREAD", "finish_em_step", "pack", "zero_shift"]

LOG_2PI = float(np.log(2.0 * np.pi))
#: the largest squared distance, in variances, of a diagonal component's mean from a shared
#: shift: its second moment about it then loses at most about this many ulps to cancellation
SHARED_SHIFT_SPREAD = 1e3


class Packed(NamedTuple):
    pa: np.ndarray
    pb: np.ndarray
    pc: np.ndarray
    shift: np.ndarray


def pack(layout: Layout, weights: np.ndarray | None, means: np.ndarray,
         prec_chol: np.ndarray) -> Packed:
    """The kernel buffers for these parameters (``weights=None``: unweighted log-densities)."""
    M, D = layout.M, layout.D
    means = np.asarray(means, dtype=np.float64)
    prec_chol = np.asarray(prec_chol, dtype=np.float64)
    log_det = log_det_cholesky(prec_chol, layout.cov, D)
    cst = log_det - 0.5 * D * LOG_2PI
    if weights is not None:
        with np.errstate(divide="ignore"):
            cst = cst + np.log(np.asarray(weights, dtype=np.float64))
    if layout.cov == "full":
        DP = layout.DP
        L = np.zeros((M, DP, DP))
        L[:, :D, :D] = np.triu(prec_chol)
        c = np.zeros((M, DP))
        for k in range(M):
            c[k, :D] = means[k] @ prec_chol[k]
        shift = np.zeros((M, DP))
        shift[:, :D] = means
        return Packed(L, c, np.ascontiguousarray(cst, dtype=np.float64), shift)
    MP = layout.MP
    muT = np.zeros((D, MP))
    muT[:, :M] = means.T
    pT = np.zeros((D, MP))
    pT[:, :M] = prec_chol.T
    cpad = np.full(MP, -np.inf)
    cpad[:M] = cst
    w = np.full(M, 1.0 / M) if weights is None else np.asarray(weights, dtype=np.float64)
    shared = w @ means / max(w.sum(), 1e-300)
    shift = np.zeros((D, MP))
    with np.errstate(over="ignore", invalid="ignore"):
        spread = np.max(((means - shared) * prec_chol) ** 2, initial=0.0)
    if spread <= SHARED_SHIFT_SPREAD:
        shift[:] = shared[:, None]   # every lane, the padding too: the kernels compare rows
    else:
        shift[:, :M] = means.T
    return Packed(muT, pT, cpad, shift)


def zero_shift(layout: Layout) -> np.ndarray:
    """The shift buffer of moments about the origin (M x DP for full, D x MP for diag)."""
    return np.zeros((layout.M, layout.DP) if layout.cov == "full" else (layout.D, layout.MP))


def finish_em_step(layout: Layout, stats: np.ndarray, shift: np.ndarray, n_samples: int,
                   reg_covar: float, eps: float, weights_over: float | None = None) -> EMStep:
    """New parameters from a kernel's statistics (``eps``: machine epsilon of X's dtype).

    The weights are the counts over their sum (an EM iteration) or over ``weights_over``
    (scikit-learn's initialisation divides by the number of samples)."""
    M, D, MP = layout.M, layout.D, layout.MP
    s0 = stats[:M]
    s1 = stats[MP:MP + layout.s1_size]
    s2 = stats[MP + layout.s1_size:MP + layout.s1_size + layout.s2_size]
    log_prob_norm = float(stats[-1]) / n_samples
    nk = s0 + 10 * eps
    if layout.cov == "full":
        DP = layout.DP
        e = s1.reshape(M, DP)[:, :D]
        upper = s2.reshape(M, DP, DP)[:, :D, :D]
        S2 = np.triu(upper) + np.transpose(np.triu(upper, 1), (0, 2, 1))
        sh = shift[:, :D]
        means = sh * (s0 / nk)[:, None] + e / nk[:, None]
        delta = means - sh
        # each term is exactly symmetric, so the covariances are too
        cross = e[:, :, None] * delta[:, None, :] + delta[:, :, None] * e[:, None, :]
        outer = s0[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        cov = ((S2 - cross) + outer) / nk[:, None, None]
        idx = np.arange(D)
        cov[:, idx, idx] += reg_covar
    else:
        e = s1.reshape(D, MP)[:, :M].T
        q = s2.reshape(D, MP)[:, :M].T
        sh = shift[:, :M].T
        means = sh * (s0 / nk)[:, None] + e / nk[:, None]
        delta = means - sh
        # scikit-learn: sum(r x^2)/nk - mu^2 + reg; the same value written around the shift
        cov = ((q - 2.0 * e * delta + s0[:, None] * delta**2) / nk[:, None]
               + means**2 * ((10 * eps) / nk)[:, None] + reg_covar)
    return EMStep(log_prob_norm, nk / (weights_over or nk.sum()), means, cov)
