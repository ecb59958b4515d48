"""The s-step CG core (asp_mpk.sstep) on explicit bases: its s coefficient-space steps are
classical CG's s steps; negative curvature goes on as in SciPy, zero curvature is a breakdown,
and an exhausted Krylov space ends the block (shared by cg and distributed.cg)."""

from __future__ import annotations

import numpy as np
import pytest

from asp_mpk import gallery
from asp_mpk.bases import chebyshev_coefs
from asp_mpk.sstep import Interval, coefficient_steps, replace_residual, stacked_change_of_basis


def _basis(A, v, coefs, s):
    out = [v]
    for j in range(s):
        y = coefs[0, j] * (A @ out[-1]) + coefs[1, j] * out[-1]
        if j >= 1:
            y = y + coefs[2, j] * out[-2]
        out.append(y)
    return np.array(out)


def _classical(A, x, r, p, rr, steps):
    for _ in range(steps):
        q = A @ p
        alpha = rr / (p @ q)
        x, r = x + alpha * p, r - alpha * q
        rr_new = r @ r
        p, rr = r + rr_new / rr * p, rr_new
    return x, r, p


@pytest.mark.parametrize("s", [1, 4, 6])
def test_coefficient_steps_are_classical_cg_steps(s):
    A = gallery.poisson2d(12)
    rng = np.random.default_rng(s)
    b = rng.standard_normal(A.shape[0])
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    interval = Interval(0.0, 8.0)
    coefs = chebyshev_coefs(interval.lo, interval.hi, s)
    V = np.vstack([_basis(A, p, coefs, s), _basis(A, r, coefs, s)])
    alphas, betas = [], []
    st = coefficient_steps(V @ V.T, stacked_change_of_basis(coefs, s), float(r @ r), s, 0.0,
                           s, alphas, betas)
    assert st.done == s and not st.broke and len(alphas) == len(betas) == s
    xr, rr_, pr = _classical(A, x, r, p, float(r @ r), s)
    np.testing.assert_allclose(x + st.xc @ V, xr, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.rc @ V, rr_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.pc @ V, pr, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.rr, rr_ @ rr_, rtol=1e-8)


def test_budget_tolerance_and_negative_curvature():
    A = gallery.poisson2d(8)
    b = np.ones(A.shape[0])
    coefs = chebyshev_coefs(0.0, 8.0, 4)
    V = np.vstack([_basis(A, b, coefs, 4), _basis(A, b, coefs, 4)])
    G, B = V @ V.T, stacked_change_of_basis(coefs, 4)
    assert coefficient_steps(G, B, float(b @ b), 4, 0.0, 2, [], []).done == 2   # budget
    assert coefficient_steps(G, B, float(b @ b), 4, 1e9, 4, [], []).done == 1   # converged
    st = coefficient_steps(G, -B, float(b @ b), 4, 0.0, 4, [], [])              # p.Ap < 0
    assert not st.broke and st.done == 4                                          # as SciPy
    st = coefficient_steps(G, 0 * B, float(b @ b), 4, 0.0, 4, [], [])           # A p = 0
    assert st.broke and st.done == 0


def test_an_exhausted_krylov_space_ends_the_block():
    """A matrix with two distinct eigenvalues: CG is done after two steps, and the basis of
    s = 4 has rank 2. The block stops there instead of dividing rounding noise by rounding
    noise (which took the residual from 1e-16 to 1e20)."""
    A = np.diag(np.r_[[1.0] * 8, [2.0] * 16, [1.0] * 8])
    b = np.ones(32)
    coefs = chebyshev_coefs(0.0, 3.0, 4)
    V = np.vstack([_basis(A, b, coefs, 4), _basis(A, b, coefs, 4)])
    st = coefficient_steps(V @ V.T, stacked_change_of_basis(coefs, 4), float(b @ b), 4, 0.0,
                           4, [], [])
    assert not st.broke and st.done <= 3
    assert np.linalg.norm(b - A @ (st.xc @ V)) < 1e-12


def test_interval_follows_ritz_values_and_replacement_rule():
    iv = Interval(-1.0, 10.0)
    assert (iv.lo, iv.hi) == (0.0, 10.0)          # Gershgorin, clamped at 0 (maybe SPD)
    assert not iv.refresh([0.5], [])               # too few coefficients
    # CG on diag(1, 4): the Lanczos matrix from its coefficients has Ritz values 1 and 4
    A = np.diag([1.0, 4.0])
    r = np.ones(2)
    p, rr, alphas, betas = r.copy(), 2.0, [], []
    for _ in range(2):
        q = A @ p
        alpha = rr / (p @ q)
        r = r - alpha * q
        beta = (r @ r) / rr
        alphas.append(alpha)
        betas.append(beta)
        p, rr = r + beta * p, r @ r
    assert iv.refresh(alphas, betas)
    assert iv.lo == pytest.approx(0.9) and iv.hi == pytest.approx(4.08)
    assert not iv.refresh(alphas, betas)           # not doubled since
    assert replace_residual(1e-14, 1.0, 1e-20) and not replace_residual(1e-14, 1.0, 1.0)
