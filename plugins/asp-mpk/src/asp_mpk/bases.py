"""Polynomial bases for the Krylov vectors: monomial, Newton (Leja-ordered shifts), Chebyshev.

Every basis is a recurrence ``v[j+1] = alpha_j A v[j] + beta_j v[j] + gamma_j v[j-1]``, so the
generated kernels take three coefficient arrays and never depend on the basis.  The monomial
basis ``A^j x`` loses linear independence quickly in floating point; Newton with Leja-ordered
Ritz values and Chebyshev on estimated spectral bounds keep s-step methods stable (Hoemmen 2010,
Carson 2015).  Spectral information comes from a few Lanczos steps.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["monomial_coefs", "newton_coefs", "chebyshev_coefs", "leja_order", "lanczos_ritz",
           "change_of_basis", "basis_coefs"]


def monomial_coefs(k: int) -> np.ndarray:
    c = np.zeros((3, max(k, 1)))
    c[0, :k] = 1.0
    return c


def newton_coefs(shifts: Any, k: int, scale: float = 1.0) -> np.ndarray:
    """v[j+1] = (A - shifts[j]) v[j] / scale; shifts are cycled if fewer than k are given.
    ``scale``: about the capacity of the spectrum's interval (a quarter of its width), so the
    basis neither grows nor shrinks like ``|A|**j`` (s-step CG of a matrix of entries near
    1e10 overflowed its Gram matrix and reported a breakdown)."""
    s = np.asarray(shifts, dtype=np.complex128 if np.iscomplexobj(shifts) else np.float64)
    if s.ndim != 1 or (k > 0 and s.size == 0):
        raise ValueError("shifts must be a non-empty 1-D sequence of real numbers")
    if np.iscomplexobj(s):
        if np.any(s.imag != 0):
            raise ValueError("complex shifts are not supported (A is expected to be symmetric "
                             "or to have real Ritz values); pass real shifts")
        s = s.real
    if not np.all(np.isfinite(s)):
        raise ValueError("shifts must be finite")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    c = np.zeros((3, max(k, 1)))
    c[0, :k] = 1.0 / scale
    c[1, :k] = -np.resize(s, k) / scale
    return c


def chebyshev_coefs(lmin: float, lmax: float, k: int) -> np.ndarray:
    """Scaled Chebyshev polynomials T_j((A - c)/d) on [lmin, lmax]."""
    if not (np.isfinite(lmin) and np.isfinite(lmax)) or lmax <= lmin:
        raise ValueError(f"Chebyshev bounds must be finite with lmin < lmax, got ({lmin}, {lmax})")
    # halves first (exact, and no overflow for bounds near the float64 limit); numpy scalars:
    # a width that rounds to 0 (subnormal bounds) gives inf, not ZeroDivisionError
    c0, d = np.float64(0.5 * lmax + 0.5 * lmin), np.float64(0.5 * lmax - 0.5 * lmin)
    c = np.zeros((3, max(k, 1)))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if k >= 1:
            c[0, 0], c[1, 0] = 1.0 / d, -c0 / d
            c[0, 1:k], c[1, 1:k], c[2, 1:k] = 2.0 / d, -2.0 * (c0 / d), -1.0
    return c


def leja_order(points: Any) -> np.ndarray:
    """Leja ordering: start with the largest |z|, then maximise the product of distances."""
    z = np.asarray(points, dtype=np.float64).ravel()
    if z.size == 0:
        return z
    order = [int(np.argmax(np.abs(z)))]
    logd = np.zeros(z.size)
    for _ in range(z.size - 1):
        last = z[order[-1]]
        with np.errstate(divide="ignore"):
            logd += np.log(np.abs(z - last))
        logd[order] = -np.inf
        order.append(int(np.argmax(logd)))
    return z[order]


def lanczos_ritz(matvec: Callable[[np.ndarray], np.ndarray], n: int, steps: int, *,
                 start: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Ritz values of ``steps`` Lanczos steps (full reorthogonalisation; steps is small)."""
    steps = max(1, min(int(steps), n))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(n) if start is None or not np.any(start) else np.array(start, float)
    q /= np.linalg.norm(q)
    Q = [q]
    alpha, beta = [], []
    for j in range(steps):
        w = np.asarray(matvec(Q[-1]), dtype=np.float64)
        a = float(Q[-1] @ w)
        alpha.append(a)
        for qq in Q:  # full reorthogonalisation
            w -= (qq @ w) * qq
        b = float(np.linalg.norm(w))
        if j == steps - 1 or b <= 1e-12 * max(abs(a), 1.0):
            break
        beta.append(b)
        Q.append(w / b)
    T = np.diag(alpha) + np.diag(beta[:len(alpha) - 1], 1) + np.diag(beta[:len(alpha) - 1], -1)
    return np.linalg.eigvalsh(T)


def basis_coefs(basis: str, k: int, *, shifts: Any = None,
                ritz: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
    """(3, k) recurrence coefficients for ``basis``; ``ritz(m)`` supplies Ritz values."""
    if basis == "monomial":
        if shifts is not None:
            raise ValueError("shifts are only used with basis='newton' or 'chebyshev'")
        return monomial_coefs(k)
    if basis == "newton":
        if shifts is None:
            if ritz is None:
                raise ValueError("basis='newton' needs shifts")
            vals = ritz(max(k, 1))
            shifts = leja_order(vals)
        return newton_coefs(shifts, k)
    if basis == "chebyshev":
        if shifts is None:
            if ritz is None:
                raise ValueError("basis='chebyshev' needs bounds")
            vals = ritz(max(2 * k, 10))
            lo, hi = float(vals.min()), float(vals.max())
            width = hi - lo if hi > lo else max(abs(hi), 1.0)
            shifts = (lo - 0.05 * width, hi + 0.05 * width)
        sh = np.asarray(shifts, dtype=np.float64).ravel()
        if sh.size != 2:
            raise ValueError("for basis='chebyshev', shifts is the interval (lmin, lmax)")
        c = chebyshev_coefs(float(sh[0]), float(sh[1]), k)
        if not np.all(np.isfinite(c)):
            # an interval so narrow (next to its distance from 0) that 1/d or c0/d overflows:
            # every basis vector after the first would be inf or nan
            raise ValueError(f"Chebyshev interval ({sh[0]}, {sh[1]}) is too narrow for float64: "
                             "its scaled recurrence coefficients overflow; widen it")
        return c
    raise ValueError(f"unknown basis {basis!r}; expected 'monomial', 'newton' or 'chebyshev'")


def change_of_basis(coefs: np.ndarray, k: int) -> np.ndarray:
    """(k+1, k+1) matrix B with A V[:, :k] = V B[:, :k] for the basis V of ``coefs``.

    From v[j+1] = al_j A v[j] + be_j v[j] + ga_j v[j-1]:
    A v[j] = (v[j+1] - be_j v[j] - ga_j v[j-1]) / al_j.  The last column is zero.
    """
    B = np.zeros((k + 1, k + 1))
    for j in range(k):
        al, be, ga = coefs[0, j], coefs[1, j], coefs[2, j]
        B[j + 1, j] = 1.0 / al
        B[j, j] = -be / al
        if j >= 1:
            B[j - 1, j] = -ga / al
    return B
