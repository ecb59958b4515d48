"""The s-step CG core shared by :func:`asp_mpk.cg` and :func:`asp_mpk.distributed.cg`.

An outer iteration builds the Krylov bases of p and r (``V = [P_0(A) p .. P_s(A) p,
P_0(A) r .. P_s(A) r]``) with one matrix-powers call and their Gram matrix ``G = VᵀV`` with one
reduction; s CG steps then run on coefficient vectors of length 2s+2, and x, r, p are rebuilt
from V.  The two solvers differ in where V lives (one process, or this rank's rows) and how the
reductions are made; the numerics are here, once:

- :class:`Interval`: the spectral interval the basis polynomials are built on (Gershgorin bounds
  at first, then the extreme Ritz values of the Lanczos matrix that CG's own coefficients
  define, refreshed as they double in number);
- :func:`stacked_change_of_basis`: ``B`` with ``A V = V B`` on the columns the steps use;
- :func:`coefficient_steps`: the s steps themselves, with one breakdown rule;
- :func:`replace_residual`: when the recursive residual must give way to ``b - A x``;
- :func:`restart_direction`: whether the direction p must start again from that true residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Interval", "Steps", "stacked_change_of_basis", "coefficient_steps",
           "replace_residual", "restart_direction", "lanczos_ritz", "ritz_bounds", "newton_shifts"]


def lanczos_ritz(alphas: list[float], betas: list[float]) -> np.ndarray | None:
    """Ritz values of the Lanczos tridiagonal built from CG's alpha_j, beta_j."""
    from scipy.linalg import eigvalsh_tridiagonal

    m = len(alphas)
    if m < 2:
        return None
    a = np.asarray(alphas)
    b = np.asarray(betas[:m - 1])
    with np.errstate(divide="ignore", invalid="ignore"):   # a zero alpha (a residual of
        diag = 1.0 / a                                     # exactly 0: rtol = atol = 0):
        diag[1:] += b / a[:-1]                             # no estimate, and no warning
        off = np.sqrt(np.abs(b)) / a[:-1]
    if not (np.all(np.isfinite(diag)) and np.all(np.isfinite(off))):
        return None
    return eigvalsh_tridiagonal(diag, off)


def ritz_bounds(alphas: list[float], betas: list[float]) -> tuple[float, float] | None:
    """Extreme Ritz values (spectral interval estimate for the Chebyshev basis)."""
    ev = lanczos_ritz(alphas, betas)
    return None if ev is None else (float(ev[0]), float(ev[-1]))


def newton_shifts(alphas: list[float], betas: list[float], s: int) -> np.ndarray | None:
    """s Ritz values spread over the spectrum, Leja-ordered (the Newton basis's shifts)."""
    from asp_mpk.bases import leja_order

    ev = lanczos_ritz(alphas, betas)
    if ev is None:
        return None
    idx = np.unique(np.linspace(0, len(ev) - 1, s).round().astype(int))
    return leja_order(ev[idx])


class Interval:
    """The interval ``[lo, hi]`` the basis polynomials are built on.

    Starts from A's Gershgorin bounds (``lo`` clamped to 0 for a matrix that may be SPD) and is
    replaced by the extreme Ritz values (10 % below the smallest, 2 % above the largest, never
    past Gershgorin) each time the number of CG coefficients doubles."""

    def __init__(self, lo_g: float, hi_g: float) -> None:
        self.lo_g, self.hi_g = float(lo_g), float(hi_g)
        self.lo = 0.0 if self.lo_g < 0 < self.hi_g or self.lo_g >= 0 else self.lo_g
        self.hi = self.hi_g if self.hi_g > self.lo else self.lo + 1.0
        self._refreshed_at = 0

    def refresh(self, alphas: list[float], betas: list[float]) -> bool:
        """Update from the coefficients so far when they doubled since the last update;
        True when the interval moved (a Newton basis then recomputes its shifts)."""
        if len(alphas) < 2 or len(alphas) < 2 * self._refreshed_at:
            return False
        self._refreshed_at = len(alphas)
        bounds = ritz_bounds(alphas, betas)
        if bounds is None or bounds[1] <= 0:
            return False
        lo = max(0.0, bounds[0] * 0.9) if self.lo_g >= 0 or bounds[0] > 0 else bounds[0]
        hi = min(bounds[1] * 1.02, self.hi_g) if self.hi_g > 0 else bounds[1] * 1.02
        self.lo, self.hi = lo, (hi if hi > lo else lo + abs(lo) + 1.0)
        return True


def stacked_change_of_basis(coefs: np.ndarray, s: int) -> np.ndarray:
    """``B`` (2s+2 square) with ``A V = V B`` on the first s columns of each of the two bases
    (the last column of each is zero: ``A P_s(A) v`` is outside the basis, and never needed)."""
    from asp_mpk.bases import change_of_basis

    Bs = change_of_basis(coefs, s)
    Bs[:, s] = 0.0
    m = 2 * (s + 1)
    B = np.zeros((m, m))
    B[:s + 1, :s + 1] = Bs
    B[s + 1:, s + 1:] = Bs
    return B


@dataclass
class Steps:
    """Outcome of :func:`coefficient_steps`: ``x += V xc``, ``r = V rc``, ``p = V pc``."""

    xc: np.ndarray
    rc: np.ndarray
    pc: np.ndarray
    done: int
    rr: float
    broke: bool


#: the relative rounding level of a quadratic form in the Gram matrix: below it (relative to
#: the same form on absolute values) the form carries no information
NOISE = 64 * float(np.finfo(np.float64).eps)


def coefficient_steps(G: np.ndarray, B: np.ndarray, rr: float, s: int, tol: float, budget: int,
                      alphas: list[float], betas: list[float],
                      on_step: Callable[[np.ndarray], object] | None = None) -> Steps:
    """Up to ``min(s, budget)`` CG steps in coefficient space (p = V pc, r = V rc), stopping
    early when ``sqrt(r.r) < tol``; appends each step's alpha and beta.

    The block also ends early when ``p.Ap`` or ``r.r`` falls to the rounding level of the basis
    (the Krylov space is exhausted: a matrix with few distinct eigenvalues, or a residual
    already at roundoff): the caller then rebuilds r from the basis and checks it.  Further
    steps would divide noise by noise (they took CG from a residual of 1e-16 to 1e20).
    Breakdown (``broke``) as SciPy's loop would meet it: ``p.Ap`` or ``r.r`` not finite, or
    ``p.Ap`` zero (at the rounding level) on the block's first step.  A negative ``p.Ap`` (A
    not positive definite) goes on, as in SciPy.  ``on_step(xc)`` runs after each step."""
    m = G.shape[0]
    Gabs = np.abs(G)
    pc = np.zeros(m)
    pc[0] = 1.0
    rc = np.zeros(m)
    rc[s + 1] = 1.0
    xc = np.zeros(m)
    done = 0
    for _ in range(min(s, budget)):
        Apc = B @ pc
        pAp = float(pc @ G @ Apc)
        if not np.isfinite(pAp):
            return Steps(xc, rc, pc, done, rr, True)
        if abs(pAp) <= NOISE * float(np.abs(pc) @ Gabs @ np.abs(Apc)):
            return Steps(xc, rc, pc, done, rr, done == 0)
        alpha = rr / pAp
        xc += alpha * pc
        rc -= alpha * Apc
        rr_new = float(rc @ G @ rc)
        if not np.isfinite(rr_new):
            return Steps(xc, rc, pc, done, rr, True)
        resolved = rr_new > NOISE * float(np.abs(rc) @ Gabs @ np.abs(rc))
        rr_new = max(rr_new, 0.0)
        beta = rr_new / rr if rr > 0 else 0.0
        pc = rc + beta * pc
        alphas.append(alpha)
        betas.append(beta)
        rr = rr_new
        done += 1
        if on_step is not None:
            on_step(xc)
        if np.sqrt(rr) < tol or not resolved:
            break
    return Steps(xc, rc, pc, done, rr, False)


def replace_residual(rr: float, since_replace: float, tol: float) -> bool:
    """Whether to replace the recursive residual by the true one: its norm fell a million-fold
    below the last true residual's without reaching the tolerance (from there on the two
    drift apart in floating point)."""
    nr = float(np.sqrt(rr))
    return nr < 1e-6 * since_replace and nr >= tol


#: a true residual that differs from the recursive one it replaces by more than this
#: fraction of its norm restarts the direction (:func:`restart_direction`)
RESTART_DRIFT = 0.1


def restart_direction(dd: float, rr_true: float) -> bool:
    """Whether a replaced residual must restart the direction (``p = r``) too; ``dd`` is
    ``|r_true - r|²`` (r the recursive residual it replaces), ``rr_true`` is ``|r_true|²``.

    p is conjugate to the recursive residual's history.  Once that residual has drifted away
    from ``b - A x`` (a tolerance under what rounding allows: the recursion keeps shrinking r
    while the true residual stays at the rounding level, as noise), the true r is unrelated to
    p: kept, p made ``alpha = r.r / p.Ap`` too large and CG no longer minimised anything, and
    x diverged (residual 1e153 or inf on 2-D Poisson 10² with rtol=1e-16, where SciPy's cg
    stays at 1e-14; even a recursive residual half the true one's norm did).  Residuals that
    agree (the replacements during a solve: to about 1e-9 there) keep p, and with it CG's
    conjugacy."""
    return dd > RESTART_DRIFT ** 2 * rr_true
