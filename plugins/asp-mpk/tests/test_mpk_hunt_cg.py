"""Regression tests from the bug hunt on ``asp_mpk.cg`` as a drop-in for SciPy's ``cg`` and on
the ``MatrixPowers`` object API (see /work/notes/hunt_mpk_cg.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery


@pytest.fixture(autouse=True)
def _no_tuning(monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")


@requires_compiler
@pytest.mark.parametrize("s", [None, 4])
@pytest.mark.parametrize("rtol", [1e-16, 1e-30])
def test_a_tolerance_below_rounding_does_not_make_x_diverge(s, rtol):
    """A tolerance the true residual cannot reach: the recursive residual kept shrinking, its
    replacement by ``b - A x`` kept the direction p at the old scale, and x diverged (residual
    1e153 or inf, where SciPy's cg stays at 1e-14).  Now x stays at the rounding level and
    info says the tolerance was not reached (or 0 if it was)."""
    A = gallery.poisson2d(10)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x, info = asp_mpk.cg(A, b, rtol=rtol, s=s, maxiter=400)
    res = np.linalg.norm(b - A @ x)
    assert np.isfinite(res) and res < 1e-12 * np.linalg.norm(b), res
    assert info in (0, 400)


def test_the_solution_dtype_is_scipys_whatever_x0s_dtype():
    """SciPy's cg returns the dtype of A and b (x0 is cast to it); a float64 x0 made asp's
    solution float64 for a float32 system."""
    import scipy.sparse.linalg as spla

    A = gallery.poisson2d(6).astype(np.float32)
    b = np.ones(A.shape[0], dtype=np.float32)
    x0 = np.zeros(A.shape[0])
    x_ref, _ = spla.cg(A, b, x0=x0)
    x, info = asp_mpk.cg(A, b, x0=x0)
    assert info == 0 and x.dtype == x_ref.dtype == np.float32


def test_x0_mb_starts_from_m_times_b_as_in_scipy():
    """SciPy accepts ``x0="Mb"`` (start from M @ b, or b without M); asp said "x0 has
    unsupported dtype <U2"."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    A = gallery.poisson2d(6)
    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    M = sp.diags(1.0 / A.diagonal())
    for kw in ({}, {"M": M}):
        x_ref, info_ref = spla.cg(A, b, x0="Mb", maxiter=1, **kw)
        x, info = asp_mpk.cg(A, b, x0="Mb", maxiter=1, **kw)
        assert info == info_ref == 1
        np.testing.assert_allclose(x, x_ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="'Mb'"):
        asp_mpk.cg(A, b, x0="bM")


@requires_compiler
def test_the_distributed_solver_does_not_diverge_below_rounding_either():
    """The same replacement without a restart in ``asp_mpk.distributed.cg`` (one rank): the
    residual grew to 1e60 with rtol=1e-20."""
    pytest.importorskip("mpi4py")
    from asp_mpk.distributed import cg

    A = gallery.poisson2d(10)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x, info, _ = cg(A, b, rtol=1e-20, s=4, maxiter=400)
    res = np.linalg.norm(b - A @ x)
    assert np.isfinite(res) and res < 1e-12 * np.linalg.norm(b), res
    assert info == 400


@pytest.mark.parametrize("s", [None, 1, 4])
def test_reaching_the_tolerance_on_the_last_allowed_iteration_returns_maxiter(s):
    """SciPy checks the residual before each iteration only, so a solve that reaches the
    tolerance on iteration ``maxiter`` returns ``info = maxiter`` (2-D Poisson 12², rtol=1e-8:
    39 iterations); asp checked convergence before ``it >= maxiter`` and returned 0."""
    import scipy.sparse.linalg as spla

    A = gallery.poisson2d(12)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    for maxiter in (38, 39, 40):
        _, info_ref = spla.cg(A, b, rtol=1e-8, maxiter=maxiter)
        _, info = asp_mpk.cg(A, b, rtol=1e-8, maxiter=maxiter, s=s)
        assert info == info_ref, (maxiter, info, info_ref)
    assert info_ref == 0   # 39 iterations is where the tolerance is met


def test_the_distributed_solver_returns_maxiter_as_scipy_too():
    """The same order of checks in ``asp_mpk.distributed.cg`` (one rank)."""
    pytest.importorskip("mpi4py")
    import scipy.sparse.linalg as spla

    from asp_mpk.distributed import cg

    A = gallery.poisson2d(12)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    for maxiter in (39, 40):
        _, info_ref = spla.cg(A, b, rtol=1e-8, maxiter=maxiter)
        _, info, _ = cg(A, b, rtol=1e-8, s=4, maxiter=maxiter)
        assert info == info_ref, (maxiter, info, info_ref)


def test_tolerances_and_x0_take_what_scipys_cg_takes():
    """SciPy's cg takes a 0-d array as rtol or atol and casts an integer or float16 x0 to the
    solve's dtype (the guide says so too); asp refused them with TypeErrors.  ``atol=None`` is
    SciPy's ValueError, naming atol."""
    import scipy.sparse.linalg as spla

    A = gallery.poisson2d(6)
    n = A.shape[0]
    b = np.random.default_rng(3).standard_normal(n)
    for kw in ({"rtol": np.array(1e-9)}, {"rtol": 0.0, "atol": np.float32(1e-7)},
               {"atol": np.array(1e-8), "rtol": np.array(0)},
               {"x0": np.arange(n), "maxiter": 3}, {"x0": np.ones(n, np.float16), "maxiter": 3},
               {"x0": [1] * n, "maxiter": 3}, {"b": np.arange(n)}, {"b": np.ones(n, bool)},
               {"b": [1] * n, "x0": np.arange(n)}):
        kw = {"b": b, **kw}   # an integer or boolean b too: SciPy casts it to float64
        x_ref, info_ref = spla.cg(A, **kw)
        x, info = asp_mpk.cg(A, **kw)
        assert info == info_ref and x.dtype == x_ref.dtype == np.float64, kw
        np.testing.assert_allclose(x, x_ref, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="atol must be a real number >= 0, got None"):
        asp_mpk.cg(A, b, atol=None)
    with pytest.raises(TypeError, match="rtol must be a real number, got bool"):
        asp_mpk.cg(A, b, rtol=np.array(True))
    with pytest.raises(TypeError, match="integer"):   # an integer A: convert it first
        asp_mpk.cg(A.astype(np.int64), b)


@requires_compiler
@pytest.mark.parametrize("s", [None, 4])
def test_a_float32_solution_is_checked_as_returned(s):
    """A float32 system is solved in float64 and x rounded to float32 on return: ``info`` was
    0 for rtol 1e-6 where the x returned had a true residual of 4.3e-5. The rounded x is
    checked: a tolerance float32 cannot hold is not reported reached, one it can hold is."""
    A = gallery.poisson2d(40).astype(np.float32)
    b = np.random.default_rng(0).random(A.shape[0]).astype(np.float32)
    wide = A.astype(np.float64)
    for rtol, reached in ((1e-7, False), (1e-3, True)):
        x, info = asp_mpk.cg(A, b, rtol=rtol, s=s, maxiter=2000)
        assert x.dtype == np.float32
        res = np.linalg.norm(b - wide @ x.astype(np.float64)) / np.linalg.norm(b)
        assert (info == 0) == reached == (res <= rtol), (rtol, info, res)
        assert info >= 0
