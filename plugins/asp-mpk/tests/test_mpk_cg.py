"""s-step CG: SciPy's contract, accuracy, iteration counts within 1.2x of SciPy's CG."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery
from asp_mpk.cacg import last_stats

SPD = {
    "poisson2d": lambda: gallery.poisson2d(48),
    "poisson3d": lambda: gallery.poisson3d(14),
    "elasticity": lambda: gallery.elasticity(14),
    "banded_spd": lambda: gallery.banded_spd(3000, bandwidth=3, seed=5),
    "unstructured_spd": lambda: gallery.unstructured_spd(2500, seed=6),
}


def scipy_iterations(A, b, **kw):
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.cg(A, b, callback=cb, **kw)
    return x, info, count[0]


@pytest.fixture(autouse=True)
def _no_tuning(monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "off")


@requires_compiler
@pytest.mark.parametrize("name", sorted(SPD))
@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
def test_reaches_rtol_within_1_2x_scipy_iterations(name, rtol):
    A = SPD[name]()
    b = np.random.default_rng(11).standard_normal(A.shape[0])
    _, info_ref, it_ref = scipy_iterations(A, b, rtol=rtol)
    assert info_ref == 0
    x, info = asp_mpk.cg(A, b, rtol=rtol)            # met the first time: over A's arrays
    st = last_stats()
    assert info == 0 and np.linalg.norm(b - A @ x) < rtol * np.linalg.norm(b)
    assert st.iterations <= 1.2 * it_ref + 1, (st.iterations, it_ref)
    assert sum(st.steps_by_mode.values()) == st.iterations
    x, info = asp_mpk.cg(A, b, rtol=rtol)            # analysed: s-step CG
    st = last_stats()
    assert info == 0
    assert st.method == "s-step" and st.s >= 2
    # a later solve of the same matrix may run all steps in whichever mode timed fastest
    assert st.outer >= 1 or st.steps_by_mode.get("classical", 0) == st.iterations
    assert np.linalg.norm(b - A @ x) < rtol * np.linalg.norm(b)
    assert st.iterations <= 1.2 * it_ref + 1, (st.iterations, it_ref)
    # classical CG races the s-step modes whatever the format (it runs first, as soon as the
    # kernel is there: steps before it are the interim "scipy" ones), over the kernel's fused
    # passes (DIA, naive) or the CSR arrays (a permuted 2-D Poisson matrix ran its s-step CG
    # at 0.3x SciPy's cg without that rival).  Raced, not necessarily run in this solve: on a
    # busy machine its two-thread passes timed 25x slower than the one-thread stored basis
    # (they waited for a descheduled thread), and the stored basis then ran every step.  Nor
    # necessarily timed: a step taken while asp-mpk still compiled in the background is not
    # recorded (on a busy CI machine none of this solve's steps was, and no mode had a time)
    if set(st.steps_by_mode) - {"scipy"}:
        assert "classical" in st.modes or "classical" in st.steps_by_mode, \
            (st.steps_by_mode, st.modes)
    assert sum(st.steps_by_mode.values()) == st.iterations


@requires_compiler
@pytest.mark.parametrize("name", ["poisson3d", "banded_spd"])
def test_classical_mode_when_it_is_the_fastest(name):
    """When classical CG timed fastest, every iteration runs in the fused passes, with SciPy's
    iteration count and accuracy; an explicit s keeps the s-step method."""
    from asp_mpk.cacg import _powers_for, choose_s
    from asp_mpk.cg_modes import ModeTimes
    from asp_mpk.validate import as_csr

    A = SPD[name]()
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    _, _, it_ref = scipy_iterations(A, b, rtol=1e-10)
    mp = _powers_for(as_csr(A), choose_s(A.shape[0], A.nnz))
    asp_mpk.cg(A, b, rtol=1e-10)                       # builds and tunes the kernel
    mp.cg_modes = ModeTimes()                          # as if classical had timed fastest
    for mode, seconds in (("stored", 1.0), ("stream", 1.0), ("classical", 0.0)):
        for _ in range(ModeTimes.SAMPLES):             # sampled enough: no more exploring
            mp.cg_modes.record(mode, seconds)
    x, info = asp_mpk.cg(A, b, rtol=1e-10)
    st = last_stats()
    assert info == 0 and st.steps_by_mode == {"classical": st.iterations}
    assert np.linalg.norm(b - A @ x) < 1e-10 * np.linalg.norm(b)
    assert abs(st.iterations - it_ref) <= 2
    x2, info2 = asp_mpk.cg(A, b, rtol=1e-10, s=4)
    assert info2 == 0 and "classical" not in last_stats().steps_by_mode


@requires_compiler
def test_fused_cg_passes_check_their_vectors():
    from asp_mpk.powers import MatrixPowers

    A = gallery.poisson2d(20)
    kern = MatrixPowers(A, 1, tune=False).variants()["naive-t1"]
    n = A.shape[0]
    p, q = np.random.default_rng(0).standard_normal((2, n))
    assert np.isclose(kern.cg_apply_dot(p, q), p @ (A @ p))
    np.testing.assert_allclose(q, A @ p, rtol=1e-14)
    with pytest.raises(ValueError, match="contiguous"):
        kern.cg_apply_dot(p[::2], q[::2])
    with pytest.raises(ValueError, match="contiguous"):
        kern.cg_update(1.0, p, q, p.astype(np.float32), q)
    with pytest.raises(ValueError, match="overlap"):
        kern.cg_apply_dot(p, p)


@requires_compiler
@pytest.mark.parametrize("variant", ["naive-t1", "dia"])
def test_fused_direction_pass_keeps_q_equal_to_a_p(variant):
    """The two-pass iteration: ``cg_update`` without x, then ``cg_direction_apply`` applies
    the x update, the new direction and q = A p (as A r + beta q) in one pass."""
    from asp_mpk.powers import MatrixPowers

    A = gallery.variable_poisson2d(30)
    built = MatrixPowers(A, 1, tune=False).variants()
    kern = built[next(v for v in built if v.startswith(variant))]
    n = A.shape[0]
    x, r, p = np.random.default_rng(1).standard_normal((3, n))
    q = A @ p
    x0, r0, p0 = x.copy(), r.copy(), p.copy()
    rr = kern.cg_update(0.25, None, p, r, q)
    np.testing.assert_allclose(r, r0 - 0.25 * q, rtol=1e-14)
    assert np.isclose(rr, r @ r) and np.array_equal(x, x0)
    pq = kern.cg_direction_apply(0.5, r, p, q, x, 0.25)
    np.testing.assert_allclose(x, x0 + 0.25 * p0, rtol=1e-14)
    np.testing.assert_allclose(p, r + 0.5 * p0, rtol=1e-14)
    np.testing.assert_allclose(q, A @ p, rtol=1e-12, atol=1e-12 * np.abs(q).max())
    assert np.isclose(pq, p @ q)
    with pytest.raises(ValueError, match="overlap"):
        kern.cg_direction_apply(0.5, r, p, p)


@requires_compiler
@pytest.mark.parametrize("basis", ["newton", "chebyshev"])
@pytest.mark.parametrize("s", [2, 5, 10])
def test_bases_and_s(basis, s):
    A = gallery.poisson2d(40)
    b = np.ones(A.shape[0])
    _, _, it_ref = scipy_iterations(A, b, rtol=1e-9)
    x, info = asp_mpk.cg(A, b, rtol=1e-9, s=s, basis=basis)
    assert info == 0
    assert np.linalg.norm(b - A @ x) < 1e-9 * np.linalg.norm(b)
    assert last_stats().iterations <= 1.2 * it_ref + 1


@requires_compiler
@pytest.mark.parametrize("scale", [1e10, 1e-10])
def test_newton_basis_of_a_matrix_with_large_or_small_entries(scale, monkeypatch):
    """The Newton basis was not scaled: ``(A - theta)**16 p`` of entries near 1e10 overflowed
    the Gram matrix, which s-step CG reported as a breakdown (info 16, residual 3e-3)."""
    monkeypatch.setenv("ASP_MPK_COMPILE", "wait")
    n = 400
    A = (sp.diags([-1.0, 2.1, -1.0], [-1, 0, 1], shape=(n, n)) * scale).tocsr()
    b = np.ones(n)
    asp_mpk.cg(A, b, rtol=1e-8, s=16, basis="newton")   # the first solve: classical CG
    x, info = asp_mpk.cg(A, b, rtol=1e-8, s=16, basis="newton")
    assert last_stats().method == "s-step"
    assert info == 0
    assert np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)


@requires_compiler
def test_x0_atol_callback_and_maxiter_like_scipy():
    A = gallery.poisson2d(30)
    rng = np.random.default_rng(2)
    b = rng.standard_normal(A.shape[0])
    x0 = rng.standard_normal(A.shape[0])
    x0_copy, b_copy = x0.copy(), b.copy()
    seen = []
    x, info = asp_mpk.cg(A, b, x0=x0, rtol=0.0, atol=1e-7, callback=lambda xk: seen.append(
        np.linalg.norm(b - A @ xk)))
    assert info == 0 and np.linalg.norm(b - A @ x) < 1e-7
    np.testing.assert_array_equal(x0, x0_copy)
    np.testing.assert_array_equal(b, b_copy)
    assert len(seen) == last_stats().iterations  # one call per iteration, with the iterate
    assert seen[-1] < 1e-6 and seen[0] > seen[-1]
    _, _, it_ref = scipy_iterations(A, b, x0=x0, rtol=0.0, atol=1e-7)
    assert len(seen) <= 1.2 * it_ref + 1
    # maxiter: not converged -> info is the number of iterations, like SciPy
    x5, info5 = asp_mpk.cg(A, b, rtol=1e-12, maxiter=5)
    _, info5_ref = spla.cg(A, b, rtol=1e-12, maxiter=5)
    assert info5 == info5_ref == 5
    # zero right-hand side: x = 0 and info 0, like SciPy
    xz, iz = asp_mpk.cg(A, np.zeros(A.shape[0]))
    assert iz == 0 and not xz.any()


@requires_compiler
def test_preconditioner_matches_scipy_pcg():
    A = gallery.elasticity(10)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    M = sp.diags(1.0 / A.diagonal())
    xr, ir, it_ref = scipy_iterations(A, b, rtol=1e-8, M=M)
    x, info = asp_mpk.cg(A, b, rtol=1e-8, M=M)
    assert info == ir == 0
    assert last_stats().method == "pcg"
    assert abs(last_stats().iterations - it_ref) <= 1
    np.testing.assert_allclose(x, xr, rtol=1e-6, atol=1e-10 * np.abs(xr).max())
    op = spla.LinearOperator(A.shape, matvec=lambda v: v / A.diagonal())
    x2, info2 = asp_mpk.cg(A, b, rtol=1e-8, M=op)
    assert info2 == 0 and np.linalg.norm(b - A @ x2) < 1e-8 * np.linalg.norm(b)


def test_a_preconditioner_orthogonal_to_the_residual_is_a_breakdown():
    """``r . M r == 0`` (a singular or indefinite M): the next step divided by it, a
    ZeroDivisionError where SciPy returns; reported as non-convergence (info > 0)."""
    x, info = asp_mpk.cg(sp.identity(2, format="csr"), np.ones(2),
                         M=sp.diags([1.0, -1.0]).tocsr(), maxiter=10)
    assert info > 0 and np.isfinite(x).all()
    A = gallery.poisson2d(15).tocsr()
    n = A.shape[0]
    b = np.random.default_rng(0).standard_normal(n)
    _, info_ref = spla.cg(A, b, M=sp.diags(np.r_[0.0, np.ones(n - 1)]).tocsr())
    x, info = asp_mpk.cg(A, b, M=sp.diags(np.r_[0.0, np.ones(n - 1)]).tocsr())
    assert info_ref > 0 and info > 0


@requires_compiler
def test_a_first_solve_handed_to_s_step_cg_goes_on_from_its_state(monkeypatch):
    """A first solve that runs past ``FIRST_SOLVE_SECONDS`` goes on in s-step CG from its
    CG state: restarted from x alone (p = r) it took 30 % more iterations than SciPy's and
    failed a ``maxiter`` SciPy met."""
    import types

    from asp_mpk import cacg

    A = gallery.poisson2d(60).tocsr()
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    _, _, it_ref = scipy_iterations(A, b, rtol=1e-8)
    now = [0.0]

    def clock():   # each reading 5 ms on: the first solve hands over after ten batches
        now[0] += 0.005
        return now[0]

    monkeypatch.setattr(cacg, "time", types.SimpleNamespace(perf_counter=clock))
    x, info = asp_mpk.cg(A, b, rtol=1e-8, maxiter=int(1.05 * it_ref) + 2)
    st = last_stats()
    assert st.method == "s-step"   # handed over
    assert info == 0, (st.iterations, it_ref, st.steps_by_mode)
    assert np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)


@pytest.mark.parametrize("size", [1e-170, 1e-160, 1e170])
def test_a_b_whose_norm_under_or_overflows_is_solved(size):
    """b near 1e-170 had a norm of 0 and x = 0 came back with info 0; near 1e-160 the
    true-residual check underflowed and an unconverged x (residual 5e-3) was reported as
    converged (SciPy does both). Solved scaled by a power of two, the callback sees x."""
    A = gallery.poisson2d(20).tocsr()
    b = np.ones(A.shape[0]) * size
    seen = []
    x, info = asp_mpk.cg(A, b, rtol=1e-5, callback=lambda xk: seen.append(xk.copy()))
    unit = asp_mpk.cg(A, np.ones(A.shape[0]), rtol=1e-5)[0]
    assert info == 0
    assert np.linalg.norm(A @ (x / size) - 1.0) < 1e-5 * np.linalg.norm(np.ones(A.shape[0]))
    np.testing.assert_allclose(x / size, unit, rtol=1e-4)   # both to rtol 1e-5
    np.testing.assert_array_equal(seen[-1], x)


def test_a_complex_preconditioner_is_refused():
    """A complex M was applied with its imaginary part dropped (a NumPy ComplexWarning) and
    the solve reported success; complex A, b and x0 were refused already."""
    A = gallery.poisson2d(10)
    b = np.ones(A.shape[0])
    with pytest.raises(TypeError, match="M has complex dtype complex128"):
        asp_mpk.cg(A, b, M=sp.diags(np.full(A.shape[0], 0.25 + 5j)))
    declared_real = spla.LinearOperator(A.shape, matvec=lambda v: (0.25 + 5j) * v,
                                        dtype=np.float64)
    for x0 in (None, "Mb"):
        with pytest.raises(TypeError, match="M returned complex values"):
            asp_mpk.cg(A, b, M=declared_real, x0=x0)


@requires_compiler
def test_not_spd_reports_through_info_like_scipy():
    n = 400
    rng = np.random.default_rng(4)
    d = np.concatenate([np.geomspace(0.1, 10, n // 2), -np.geomspace(0.1, 10, n // 2)])
    A = sp.diags(d) + 0.05 * sp.random(n, n, density=0.02, random_state=5)
    A = ((A + A.T) / 2).tocsr()  # symmetric indefinite
    b = rng.standard_normal(n)
    _, info_ref = spla.cg(A, b, rtol=1e-10, maxiter=30)
    x, info = asp_mpk.cg(A, b, rtol=1e-10, maxiter=30)
    assert info_ref > 0 and info > 0
    assert x.shape == (n,)
    # a zero curvature direction (singular A) is a breakdown, reported as non-convergence
    Z = sp.csr_matrix((n, n))
    xz, iz = asp_mpk.cg(Z + sp.diags(np.r_[np.zeros(n - 1), 1.0]), np.ones(n), maxiter=20)
    assert iz > 0


@requires_compiler
def test_float32_system_returns_float32():
    A = gallery.poisson2d(20).astype(np.float32)
    b = np.ones(A.shape[0], dtype=np.float32)
    x, info = asp_mpk.cg(A, b, rtol=1e-5)
    assert info == 0 and x.dtype == np.float32
    assert np.linalg.norm(b - A @ x) < 2e-5 * np.linalg.norm(b)


@requires_compiler
@pytest.mark.slow
def test_large_poisson3d_iterations():
    A = gallery.poisson3d(40)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    _, _, it_ref = scipy_iterations(A, b, rtol=1e-8)
    x, info = asp_mpk.cg(A, b, rtol=1e-8)
    assert info == 0 and last_stats().iterations <= 1.2 * it_ref


def test_a_mode_timed_slow_once_is_timed_again_and_wins():
    """The first sample of a mode can be slow (fresh pages, gcc running): it is sampled again
    and the fastest by its best sample runs from then on."""
    from asp_mpk.cg_modes import ModeTimes

    true = {"stored": 1.0, "stream": 3.0, "classical": 2.0}
    noisy_first = {"stored": 9.0}
    modes = ModeTimes()
    ran = []
    for _ in range(100):
        mode = modes.choose(list(true))
        ran.append(mode)
        modes.record(mode, noisy_first.pop(mode, true[mode]))
    assert set(ran[:3]) == set(true)                   # each timed once first
    assert min(modes.samples.values()) >= modes.SAMPLES
    assert ran[-50:] == ["stored"] * 50 and modes.best == true
    assert ran.count("stream") == modes.SAMPLES       # exploring costs a few steps


@requires_compiler
def test_modes_never_tried_are_explored_from_the_third_solve_one_per_solve():
    """A first and second solve run the default mode (classical, once the kernel is there)
    and pay for no exploration; from the third solve on, one untried mode per solve is timed."""
    from asp_mpk.cg_modes import ModeTimes

    A = gallery.poisson2d(61)                           # DIA: every mode is offered
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    asp_mpk.cg(A, b, rtol=1e-8)                         # met the first time: over A's arrays
    assert last_stats().method == "classical"
    ran = []
    for _ in range(ModeTimes.EXPLORE_FROM_SOLVE + 1):
        x, info = asp_mpk.cg(A, b, rtol=1e-8)
        assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
        ran.append(last_stats().steps_by_mode)
    for by_mode in ran[:ModeTimes.EXPLORE_FROM_SOLVE - 1]:
        assert "stream" not in by_mode and by_mode.get("stored", 0) <= last_stats().s
        assert by_mode.get("classical", 0) > 0
    assert set(last_stats().modes) == {"stored", "stream", "classical"}


@requires_compiler
@pytest.mark.parametrize("variant", ["naive-t1", "dia"])
def test_cg_steps_in_one_call_match_the_pass_by_pass_loop(variant):
    """``CKernel.cg_steps`` runs the classical loop in C; the same iterations pass by pass
    (the loop used with a callback) give the same coefficients and vectors; a matrix that is
    not positive definite goes on as in SciPy, and a zero curvature is a breakdown."""
    from asp_mpk.cacg import _classical_steps
    from asp_mpk.powers import MatrixPowers

    A = gallery.variable_poisson2d(30)
    built = MatrixPowers(A, 1, tune=False).variants()
    kern = built[next(v for v in built if v.startswith(variant))]
    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    runs = []
    for callback in (None, lambda xk: None):
        x, r, p, q = np.zeros(n), b.copy(), b.copy(), np.zeros(n)
        pq, rr, out = None, float(b @ b), []
        for _ in range(3):                                # q = A p carried between runs
            done, rr, al, be, broke, pq = _classical_steps(kern, x, p, r, q, rr, 8, 0.0,
                                                           callback, pq)
            assert done == 8 and not broke
            out += al + be
        runs.append((x, r, p, np.array(out)))
    for got, want in zip(runs[0], runs[1]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    neg = MatrixPowers(-A, 1, tune=False).variants()
    kneg = neg[next(v for v in neg if v.startswith(variant))]
    x, r, p, q = np.zeros(n), b.copy(), b.copy(), np.zeros(n)
    done, _, _, _, broke, _ = kneg.cg_steps(x, p, r, q, float(b @ b), 8, 0.0)
    assert (done, broke) == (8, False)
    x_pos, r, p, q = np.zeros(n), b.copy(), b.copy(), np.zeros(n)
    kern.cg_steps(x_pos, p, r, q, float(b @ b), 8, 0.0)
    np.testing.assert_allclose(-x, x_pos, rtol=1e-9, atol=1e-12)   # CG on -A: -x
    zero = MatrixPowers(sp.diags(np.r_[np.zeros(n - 1), 1.0]).tocsr(), 1, tune=False).variants()
    kzero = zero[next(v for v in zero if v.startswith("naive"))]
    x, r, p, q = np.zeros(n), b.copy(), b.copy(), np.zeros(n)
    p[-1] = r[-1] = 0.0                                   # a direction A maps to 0
    done, _, _, _, broke, pq = kzero.cg_steps(x, p, r, q, float(r @ r), 8, 0.0)
    assert (done, broke, pq) == (0, True, None)


@requires_compiler
@pytest.mark.parametrize("make", [lambda: gallery.variable_poisson2d(300),
                                  lambda: gallery.poisson2d(9000, 8)],
                         ids=["halo-under-a-chunk", "halo-over-a-chunk"])
def test_one_pass_iterations_match_the_two_pass_loop_across_chunks_and_threads(make):
    """The DIA kernels' one-pass iteration updates r a halo ahead of the product, each thread
    on its own rows: on matrices of several chunks per thread (halo of 300 rows, and of 9000
    rows, more than a chunk) it gives the two-pass loop's vectors and coefficients."""
    from asp_mpk.cacg import _classical_steps
    from asp_mpk.powers import MatrixPowers

    A = make()
    built = MatrixPowers(A, 1, tune=False).variants()
    kern = built[next(v for v in built if v.startswith("dia"))]
    n = A.shape[0]
    b = np.random.default_rng(3).standard_normal(n)
    runs = []
    for callback in (None, lambda xk: None):   # one call in C (one pass) / pass by pass
        x, r, p, q = np.zeros(n), b.copy(), b.copy(), np.zeros(n)
        pq, rr, out = None, float(b @ b), []
        for _ in range(3):
            done, rr, al, be, broke, pq = _classical_steps(kern, x, p, r, q, rr, 8, 0.0,
                                                           callback, pq)
            assert done == 8 and not broke
            out += al + be
        runs.append((x, r, p, q, np.array(out)))
    for got, want in zip(runs[0], runs[1]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(runs[0][3], A @ runs[0][2], rtol=1e-12,
                               atol=1e-12 * np.abs(runs[0][3]).max())


def test_samples_taken_while_compiling_are_not_kept():
    from asp_mpk.cg_modes import ModeTimes

    modes = ModeTimes()
    assert modes.choose(["stored", "classical"]) == "stored"
    modes.record("stored", 0.001, trusted=False)       # gcc was running: not believed
    assert modes.choose(["stored", "classical"]) == "classical"
    modes.record("classical", 2.0)
    assert modes.choose(["stored", "classical"]) == "stored"   # tried again
    modes.record("stored", 1.0)
    assert modes.best == {"stored": 1.0, "classical": 2.0}
    assert modes.choose(["stored", "classical"]) == "stored"


def test_tuning_steps_are_provisional_and_interleaved():
    """While the stored basis's variants are tuned (provisional samples), the faster mode runs
    and a tuning step comes every RETRY_AFTER outer steps, not on every step."""
    from asp_mpk.cg_modes import ModeTimes

    modes = ModeTimes()
    seq = []
    timed = {"stored": 2.5, "classical": 1.0}   # within GIVE_UP: tuning goes on
    for _ in range(6 * ModeTimes.RETRY_AFTER):
        mode = modes.choose(["stored", "classical"])
        seq.append(mode)
        modes.record(mode, timed[mode], final=mode != "stored")
    assert seq[:2] == ["stored", "classical"]
    tuning = seq[2:].count("stored")
    assert 3 <= tuning <= len(seq) // ModeTimes.RETRY_AFTER + 1
    assert modes.samples["stored"] == 0 and modes.best["stored"] == 2.5


def test_a_mode_far_slower_after_two_tries_is_given_up():
    """A rival still more than GIVE_UP times the fastest after two tries is not tried again
    (each try of it costs the solve that much); one slow first try is not enough."""
    from asp_mpk.cg_modes import ModeTimes

    modes = ModeTimes()
    seq = []
    for _ in range(10 * ModeTimes.RETRY_AFTER):
        mode = modes.choose(["stored", "classical"])
        seq.append(mode)
        modes.record(mode, {"stored": 3.5, "classical": 1.0}[mode], final=False)
    assert seq.count("stored") == ModeTimes.TRIES_BEFORE_GIVING_UP
    assert seq[-5 * ModeTimes.RETRY_AFTER:] == ["classical"] * (5 * ModeTimes.RETRY_AFTER)


def test_a_mode_hopelessly_slower_is_given_up_after_one_try():
    """A rival more than GIVE_UP_AT_ONCE times the fastest is not tried a second time."""
    from asp_mpk.cg_modes import ModeTimes

    modes = ModeTimes()
    seq = []
    slow = 1.5 * ModeTimes.GIVE_UP_AT_ONCE
    for _ in range(10 * ModeTimes.RETRY_AFTER):
        mode = modes.choose(["classical", "stored"])
        seq.append(mode)
        modes.record(mode, {"stored": slow, "classical": 1.0}[mode], final=False)
    assert seq.count("stored") == 1


def test_the_default_mode_is_not_given_up_on_one_slow_try():
    """The caller's default (classical CG, listed first) whose one try met a busy machine
    (its passes waited for a descheduled thread) is tried again, and wins once it is timed
    at its real speed: given up at once, the solver ran the slower mode for good."""
    from asp_mpk.cg_modes import ModeTimes

    modes = ModeTimes()
    modes.record("stored", 2.0)            # the stored basis, timed first (kernel cached)
    seq = []
    for _ in range(4 * ModeTimes.RETRY_AFTER):
        mode = modes.choose(["classical", "stored"])
        seq.append(mode)
        slow_once = mode == "classical" and "classical" not in seq[:-1]
        modes.record(mode, {"stored": 2.0, "classical": 1.5 * ModeTimes.GIVE_UP_AT_ONCE
                            * 2.0 if slow_once else 1.0}[mode])
    assert seq.count("classical") > 1 and seq[-1] == "classical"


@requires_compiler
def test_b_and_x0_are_left_unchanged():
    """b is read in place (no copy) and x0 copied: neither is written by the solve."""
    A = gallery.poisson2d(40)
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    x0 = np.ones(A.shape[0])
    b_in, x0_in = b.copy(), x0.copy()
    for _ in range(2):
        x, info = asp_mpk.cg(A, b, x0, rtol=1e-8)
        assert info == 0 and np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
        assert np.array_equal(b, b_in) and np.array_equal(x0, x0_in)


@requires_compiler
@pytest.mark.parametrize("budget", [1e9, 0.0])
def test_a_first_solve_runs_over_as_own_arrays_until_it_proves_long(budget, monkeypatch):
    """Contents met the first time are solved by classical CG over A's own arrays: nothing
    is copied, analysed or compiled for a solve that ends within ``FIRST_SOLVE_SECONDS``
    (a 256-row system took 9-40 ms, SciPy 1 ms).  A longer one (budget 0: at once) is
    analysed and goes on from its x as a later solve would; either way SciPy's contract."""
    from asp_mpk import cacg, matrix

    monkeypatch.setattr(cacg, "FIRST_SOLVE_SECONDS", budget)
    matrix.clear_matrices()
    A = gallery.poisson2d(40)
    b = np.random.default_rng(9).standard_normal(A.shape[0])
    _, _, it_ref = scipy_iterations(A, b, rtol=1e-10)
    seen = []
    x, info = asp_mpk.cg(A, b, rtol=1e-10, callback=lambda xk: seen.append(1))
    st = last_stats()
    assert info == 0 and np.linalg.norm(b - A @ x) < 1e-10 * np.linalg.norm(b)
    assert len(seen) == st.iterations == sum(st.steps_by_mode.values())
    assert st.iterations <= 1.2 * it_ref + 1
    assert st.method == ("classical" if budget else "s-step")
    assert bool(matrix._MATRICES) == (not budget)
    x, info = asp_mpk.cg(A.copy() * 2.0, b, rtol=1e-10, maxiter=5)
    assert info == 5 and last_stats().iterations == 5
