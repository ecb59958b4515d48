"""Each power equals repeated ``A @ x`` (rtol 1e-12) for every generated variant."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery
from asp_mpk.bases import chebyshev_coefs, newton_coefs
from asp_mpk.powers import MatrixPowers

MATRICES = {
    "poisson2d": lambda: gallery.poisson2d(40),
    "poisson3d": lambda: gallery.poisson3d(12),
    "elasticity": lambda: gallery.elasticity(12),
    "banded_spd": lambda: gallery.banded_spd(1500, bandwidth=4, seed=3),
    "variable": lambda: gallery.variable_poisson2d(40, seed=2),
    "unstructured_spd": lambda: gallery.unstructured_spd(1200, seed=2),
    "unstructured": lambda: gallery.unstructured(800, density=0.004, seed=1),
    "elasticity_perm": lambda: gallery.shuffle_nodes(gallery.elasticity(50), 2),
    "blocks3": lambda: sp.kron(gallery.banded_spd(400, bandwidth=4, seed=4),
                               np.array([[4.0, 1.0, 0.5], [1.0, 5.0, 1.0], [0.5, 1.0, 6.0]])
                               ).tocsr(),
}


def reference(A, xs, coefs, k, monomial=True):
    out = np.empty((xs.shape[0], k + 1, A.shape[0]), dtype=np.float64)
    for v, x in enumerate(xs):
        out[v, 0] = x
        for j in range(1, k + 1):
            y = A @ out[v, j - 1]
            if not monomial:
                y = coefs[0, j - 1] * y + coefs[1, j - 1] * out[v, j - 1]
                if j >= 2:
                    y = y + coefs[2, j - 1] * out[v, j - 2]
            out[v, j] = y
    return out


def assert_levels_close(got, ref, rtol):
    """Level by level, relative to the level's norm (the monomial basis grows fast)."""
    for j in range(ref.shape[-2]):
        g, r = got[..., j, :], ref[..., j, :]
        scale = np.max(np.abs(r)) or 1.0
        np.testing.assert_allclose(g / scale, r / scale, rtol=0, atol=rtol, err_msg=f"level {j}")


@pytest.fixture(autouse=True)
def _no_tuning(monkeypatch):
    """Default variant only (each tuned variant is another compile); tuning has its own test."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")


FAST = [("poisson2d", 5), ("unstructured_spd", 5), ("elasticity", 3), ("blocks3", 3),
        ("variable", 5)]
SLOW = [(name, k) for name in sorted(MATRICES) for k in (1, 5) if (name, k) not in FAST]


@requires_compiler
@pytest.mark.parametrize("name,k", FAST + [pytest.param(*c, marks=pytest.mark.slow)
                                          for c in SLOW])
def test_every_variant_matches_repeated_spmv(name, k):
    A = MATRICES[name]()
    x = np.random.default_rng(7).standard_normal(A.shape[0])
    ref = reference(A, x[None], None, k)
    mp = MatrixPowers(A, k, tune=False)
    variants = mp.variants()
    assert any(v.startswith("naive") for v in variants)
    if name != "unstructured":  # an expander-like graph: PA1 is (rightly) not proposed
        assert len(variants) >= 2
    coefs = np.zeros((3, k))
    coefs[0] = 1.0
    for vname, fn in variants.items():
        out = np.full((1, k + 1, A.shape[0]), np.nan)
        fn(x[None].copy(), out, coefs, None, "monomial")
        assert_levels_close(out, ref, 1e-12)


@requires_compiler
def test_powers_that_overflow_give_scipys_infinities():
    """Past 1e308 every variant gives SciPy's +inf, not nan: the zeros a DIA kernel stores
    where A has no entry would make 0 * inf = nan (the kernel reports the overflow and the
    call is redone by A's sparse products)."""
    T = sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], shape=(20, 20))
    A = (sp.kron(sp.eye(20), T) + sp.kron(T, sp.eye(20))).tocsr() * 1e60
    x = np.ones(A.shape[0])
    k = 8
    ref = reference(A, x[None], None, k)
    assert np.isposinf(ref[0, -3:]).all() and not np.isnan(ref).any()
    coefs = np.zeros((3, k))
    coefs[0] = 1.0
    variants = MatrixPowers(A, k, tune=False).variants()
    assert any(v.startswith("dia") for v in variants)
    for vname, fn in variants.items():
        out = np.empty((1, k + 1, A.shape[0]))
        fn(x[None].copy(), out, coefs, None, "monomial")
        assert not np.isnan(out).any(), vname
        np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref), err_msg=vname)


def test_explicit_zeros_are_dropped_as_the_guide_says_even_past_overflow():
    """The guide's promise: A's explicit zeros (stored, or left by cancelling duplicates) are
    dropped, so a level that overflowed gives the products of A without them, where SciPy's
    ``A @ x`` on A as given makes 0 * inf = nan (keeping them would cost every call)."""
    n = 50
    d = np.ones(n)
    d[-1] = 1e300
    rows, cols = np.r_[np.arange(n), 0, 1, 1], np.r_[np.arange(n), n - 1, n - 1, n - 1]
    A = sp.csr_matrix((np.r_[d, 0.0, 1.0, -1.0], (rows, cols)), shape=(n, n))
    x = np.full(n, 1e10)
    with np.errstate(all="ignore"):
        assert np.isnan((A @ (A @ x))[:2]).all()   # SciPy, on A as given
        canonical = A.copy()
        canonical.sum_duplicates()
        canonical.eliminate_zeros()
        V = asp_mpk.matrix_powers(A, x, 2)
        np.testing.assert_array_equal(V[2], canonical @ (canonical @ x))
    assert V[2][0] == V[2][1] == 1e10 and np.isposinf(V[2][-1])


@requires_compiler
@pytest.mark.parametrize("name", ["poisson2d", "unstructured_spd", "elasticity_perm",
                                  pytest.param("elasticity", marks=pytest.mark.slow)])
def test_recurrence_bases_and_fused_gram(name):
    A = MATRICES[name]()
    n, k = A.shape[0], 4
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((2, n))
    lmax = float(abs(A).sum(axis=1).max())
    coefs = chebyshev_coefs(0.0, lmax, k)
    ref = reference(A, xs, coefs, k, monomial=False)
    G_ref = ref.reshape(-1, n) @ ref.reshape(-1, n).T
    mp = MatrixPowers(A, k, tune=False)
    for vname, fn in mp.variants(nvec=2, basis="recurrence", gram=True).items():
        out = np.empty((2, k + 1, n))
        G = np.full_like(G_ref, np.nan)
        fn(xs.copy(), out, coefs, G, "recurrence")
        assert_levels_close(out, ref, 1e-12)
        np.testing.assert_allclose(G, G_ref, rtol=1e-11, atol=1e-11 * np.abs(G_ref).max())


@requires_compiler
def test_matrix_powers_public_api_bases():
    A = gallery.poisson2d(30)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    k = 6
    P = asp_mpk.matrix_powers(A, x, k)
    assert P.shape == (k + 1, A.shape[0])
    assert_levels_close(P[None], reference(A, x[None], None, k), 1e-12)
    shifts = [0.5, 7.5, 4.0, 2.0, 6.0, 1.0]
    N = asp_mpk.matrix_powers(A, x, k, basis="newton", shifts=shifts)
    assert_levels_close(N[None], reference(A, x[None], newton_coefs(shifts, k), k, False), 1e-12)
    C = asp_mpk.matrix_powers(A, x, k, basis="chebyshev", shifts=(0.0, 8.0))
    assert_levels_close(C[None], reference(A, x[None], chebyshev_coefs(0.0, 8.0, k), k, False),
                        1e-12)
    # automatic shifts/bounds (Lanczos): a Newton basis with Leja-ordered Ritz values stays
    # far better conditioned than the monomial one
    Na = asp_mpk.matrix_powers(A, x, k, basis="newton")
    Ca = asp_mpk.matrix_powers(A, x, k, basis="chebyshev")
    cond = [np.linalg.cond((B / np.linalg.norm(B, axis=1, keepdims=True)).T)
            for B in (P, Na, Ca)]
    assert cond[1] < cond[0] and cond[2] < cond[0]


@requires_compiler
def test_float32_and_2d_input_and_out():
    A = gallery.poisson2d(25).astype(np.float32)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, A.shape[0])).astype(np.float32)
    mp = MatrixPowers(A, 3)
    P = mp.powers(X)
    assert P.dtype == np.float32 and P.shape == (3, 4, A.shape[0])
    ref = reference(A.astype(np.float64), X.astype(np.float64), None, 3)
    assert_levels_close(P.astype(np.float64), ref, 1e-5)
    out = np.empty((4, A.shape[0]), dtype=np.float32)
    res = mp(X[0], out=out)
    assert res.base is out or res is out or np.shares_memory(res, out)
    np.testing.assert_array_equal(out, P[0])


@pytest.mark.parametrize("dtypes", [(np.float64, np.float32), (np.float32, np.float64)])
def test_several_vectors_of_another_dtype_than_a(dtypes):
    """A 2-D x of float32 under a float64 A was refused ("x must be a 1-D array") though a
    2-D float64 x, a float32 A and SciPy's ``A @ x`` all take it."""
    a_dtype, x_dtype = dtypes
    A = gallery.poisson2d(8).astype(a_dtype).tocsr()
    X = np.random.default_rng(1).standard_normal((2, A.shape[0])).astype(x_dtype)
    P = asp_mpk.matrix_powers(A, X, 3)
    assert P.shape == (2, 4, A.shape[0]) and P.dtype == np.float64   # as SciPy's A @ x
    for i in range(2):
        single = asp_mpk.matrix_powers(A, X[i], 3)
        assert single.dtype == P.dtype
        np.testing.assert_array_equal(P[i], single)
    ref = reference(A.astype(np.float64), X.astype(np.float64), None, 3)
    assert_levels_close(P, ref, 1e-5)


def test_dense_blocks_are_detected_and_proposed_as_bcsr():
    from asp_mpk.analysis import analyse, dense_block_sizes

    assert dense_block_sizes(MATRICES["blocks3"]())[0] == 3
    assert 2 in dense_block_sizes(gallery.elasticity(12))
    # scalar matrices, sparse blocks, and sizes that r does not divide: no BCSR
    assert dense_block_sizes(gallery.poisson2d(40)) == ()
    assert dense_block_sizes(gallery.unstructured_spd(1200, seed=2)) == ()
    odd = sp.kron(sp.identity(101), np.ones((2, 2))).tocsr()[:-1, :-1]
    assert 2 not in analyse(odd.tocsr()).bcsr
    mp = MatrixPowers(MATRICES["elasticity_perm"](), 4, tune=False)
    assert mp.structure.offsets is None
    names = list(mp.variants())
    assert any(v.startswith("bcsr2-") for v in names), names


@requires_compiler
@pytest.mark.parametrize("basis", ["monomial", "recurrence"])
def test_bcsr_float32_and_several_vectors(basis):
    A = MATRICES["blocks3"]().astype(np.float32)
    n, k = A.shape[0], 4
    xs = np.random.default_rng(5).standard_normal((3, n)).astype(np.float32)
    coefs = chebyshev_coefs(0.0, float(abs(A).sum(axis=1).max()), k)
    if basis == "monomial":
        coefs = np.zeros((3, k))
        coefs[0] = 1.0
    ref = reference(A.astype(np.float64), xs.astype(np.float64), coefs, k,
                    monomial=basis == "monomial")
    mp = MatrixPowers(A, k, tune=False)
    bcsr = {v: fn for v, fn in mp.variants(nvec=3, basis=basis).items() if v.startswith("bcsr3")}
    assert bcsr
    for fn in bcsr.values():
        out = np.full((3, k + 1, n), np.nan, dtype=np.float32)
        fn(xs.copy(), out, coefs, None, basis)
        assert_levels_close(out.astype(np.float64), ref, 1e-5)


@requires_compiler
def test_k_zero_and_spmv():
    A = gallery.unstructured(300, seed=4)
    x = np.random.default_rng(2).standard_normal(300)
    P = asp_mpk.matrix_powers(A, x, 0)
    assert P.shape == (1, 300)
    np.testing.assert_array_equal(P[0], x)
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-13, atol=1e-13)


@requires_compiler
def test_sparse_array_and_other_formats_accepted():
    A = gallery.poisson2d(20)
    x = np.linspace(-1, 1, A.shape[0])
    ref = reference(A, x[None], None, 3)
    for M in (sp.csr_array(A), A.tocsc(), A.tocoo(), sp.bsr_matrix(A), A.todia()):
        assert_levels_close(asp_mpk.matrix_powers(M, x, 3)[None], ref, 1e-12)


@requires_compiler
def test_scipy_platform_can_be_requested():
    A = gallery.poisson2d(20)
    x = np.random.default_rng(5).standard_normal(A.shape[0])
    mp = MatrixPowers(A, 4, options={"platform_selection": "scipy"})
    P = mp.powers(x)
    assert_levels_close(P[None], reference(A, x[None], None, 4), 1e-14)
    assert mp.variant is None  # the reference implementation, no compiled kernel


@requires_compiler
def test_tuning_picks_a_variant_and_reuses_it(monkeypatch):
    monkeypatch.setenv("ASP_AUTOTUNE", "once")
    A = gallery.poisson2d(60)
    mp = MatrixPowers(A, 4, tune=True)
    assert mp.variant is not None
    x = np.ones(A.shape[0])
    np.testing.assert_allclose(mp.powers(x)[4], np.linalg.matrix_power(A.toarray(), 4) @ x,
                               rtol=1e-12)


@requires_compiler
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(30, 120), density=st.floats(0.03, 0.2), k=st.integers(0, 5),
       seed=st.integers(0, 2**16), symmetric=st.booleans(), f32=st.booleans())
def test_property_random_sparse(n, density, k, seed, symmetric, f32):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=density, random_state=seed, format="csr")
    if symmetric:
        A = A + A.T
    A = (A + sp.identity(n)).tocsr()
    x = rng.uniform(-1, 1, n)
    dtype = np.float32 if f32 else np.float64
    P = asp_mpk.matrix_powers(A.astype(dtype), x.astype(dtype), k)
    assert P.shape == (k + 1, n) and P.dtype == dtype
    ref = reference(A.astype(dtype).astype(np.float64), x.astype(dtype)[None].astype(np.float64),
                    None, k)
    assert_levels_close(P[None].astype(np.float64), ref, 1e-5 if f32 else 1e-12)


@requires_compiler
@pytest.mark.parametrize("name", ["poisson2d", "banded_spd"])
def test_streaming_basis_gram_and_combine(name):
    """The recompute ("streaming") kernel used by s-step CG: Gram and combinations of V
    without storing V equal the stored-basis results."""
    A = MATRICES[name]()
    n, k = A.shape[0], 4
    rng = np.random.default_rng(9)
    xs = rng.standard_normal((2, n))
    coefs = chebyshev_coefs(0.0, float(abs(A).sum(axis=1).max()), k)
    ref = reference(A, xs, coefs, k, monomial=False).reshape(-1, n)
    C = rng.standard_normal((3, 2 * (k + 1)))
    mp = MatrixPowers(A, k, tune=False)
    kernels = [fn for fn in mp.variants(nvec=2, basis="recurrence", gram=True).values()
               if fn.can_stream]
    assert kernels
    for kern in kernels:
        G = np.empty((2 * (k + 1),) * 2)
        kern.stream(xs, coefs, gram=G)
        np.testing.assert_allclose(G, ref @ ref.T, rtol=1e-11, atol=1e-11 * np.abs(G).max())
        x0 = rng.standard_normal(n)
        xo, ro, po = x0.copy(), np.empty(n), np.empty(n)
        kern.stream(xs, coefs, C=C, xo=xo, ro=ro, po=po)
        want = C @ ref
        scale = np.abs(want).max()
        np.testing.assert_allclose(xo, x0 + want[0], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(ro, want[1], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(po, want[2], rtol=0, atol=1e-12 * scale)
        with pytest.raises(ValueError):
            kern.stream(xs, coefs, C=C, xo=xo, ro=xs[1], po=po)   # would alias the input


@requires_compiler
def test_kernels_follow_omp_num_threads(monkeypatch):
    """An MPI rank with OMP_NUM_THREADS=1 must not start a thread per core in every kernel."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from asp_mpk.kernels import CKernel

    built = MatrixPowers(gallery.poisson2d(300), 4, tune=False).variants()
    kernels = list(built.values())   # the backend binds the compiled kernel itself
    assert kernels and all(isinstance(k, CKernel) and k.name == name for name, k in built.items())
    assert all(k.nthreads == 1 for k in kernels)


def test_recycled_results_are_never_ones_the_caller_still_holds():
    from asp_mpk.recycle import MIN_BYTES, Recycler

    rec = Recycler()
    shape = (2, MIN_BYTES // 8)
    a = rec.empty(shape, np.float64)
    b = rec.empty(shape, np.float64)
    assert not np.shares_memory(a, b)          # both held
    view = a[1]
    del a
    c = rec.empty(shape, np.float64)           # a is still held through its view
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)
    address = c.ctypes.data
    del c
    d = rec.empty(shape, np.float64)           # a dropped result comes back
    assert d.ctypes.data == address and not np.shares_memory(d, b)
    assert rec.empty((3, 4), np.float64).shape == (3, 4)   # small ones are always fresh


def test_functional_results_stay_valid_across_calls():
    A = gallery.poisson2d(600)                 # results above the recycling threshold
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((2, A.shape[0]))
    V1 = asp_mpk.matrix_powers(A, x1, 2)
    keep = V1.copy()
    V2 = asp_mpk.matrix_powers(A, x2, 2)
    V3 = asp_mpk.matrix_powers(A, x1, 2)
    np.testing.assert_array_equal(V1, keep)    # held results are never reused
    assert not np.shares_memory(V1, V2) and not np.shares_memory(V2, V3)
    np.testing.assert_allclose(V2[2], A @ (A @ x2), rtol=1e-12, atol=1e-12)


@requires_compiler
def test_streaming_store_variants_match_and_come_first(monkeypatch):
    """A basis far larger than the L2 caches: the first DIA format's variants write it with
    streaming stores (one regular-store twin left to compare); every variant still equals
    repeated ``A @ x``, and x with inf or nan is a ValueError from each (dia kernels check x
    while they copy it)."""
    import importlib
    import platform

    size_blocks = importlib.import_module("asp_mpk.passes.size_blocks")
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        pytest.skip("streaming stores are proposed on x86 only")
    monkeypatch.setattr(size_blocks, "_hardware", lambda ctx: (256 << 10, 8 << 20, 2))
    A = gallery.poisson2d(300)               # not a small problem: several threads, blocks
    n, k = A.shape[0], 5
    x = np.random.default_rng(4).standard_normal(n)
    ref = reference(A, x[None], None, k)
    variants = MatrixPowers(A, k, tune=False).variants()
    names = list(variants)
    assert names[0].endswith("-nt") and variants[names[0]].nt
    assert names[0][:-3] in names      # its regular-store twin, for the tuner to compare
    coefs = np.zeros((3, k))
    coefs[0] = 1.0
    bad = x[None].copy()
    bad[0, n // 2] = np.nan
    for vname, fn in variants.items():
        out = np.full((1, k + 1, n), np.nan)
        fn(x[None].copy(), out, coefs, None, "monomial", check_x=True)
        assert_levels_close(out, ref, 1e-12)
        with pytest.raises(ValueError, match="non-finite"):
            fn(bad, out, coefs, None, "monomial", check_x=True)
    # no twins where the basis is read back (the fused Gram matrix of s-step CG)
    gram = MatrixPowers(A, k, tune=False).variants(nvec=2, basis="recurrence", gram=True)
    assert not any(v.endswith("-nt") for v in gram)


@requires_compiler
def test_out_arguments_and_tuned_fast_paths(monkeypatch):
    """``matrix_powers(..., out=)`` and ``spmv(..., out=)`` write into the caller's array; once
    tuned, ``MatrixPowers.powers`` calls the tuned kernel itself and ``spmv`` its product entry
    point; x with nan is still refused on those paths."""
    A = gallery.poisson2d(60)
    n = A.shape[0]
    x = np.random.default_rng(5).standard_normal(n)
    out = np.empty((4, n))
    res = asp_mpk.matrix_powers(A, x, 3, out=out)
    assert res is out
    assert_levels_close(out[None], reference(A, x[None], None, 3), 1e-12)
    with pytest.raises(ValueError, match="out must be"):
        asp_mpk.matrix_powers(A, x, 3, out=np.empty((3, n)))
    asp_mpk.matrix_powers(A, x, 3)                   # seen before: specialised now
    mp = asp_mpk.matrix.analysed(A).powers(3)
    assert mp.tuned_kernel(nvec=1, gram=False, basis="monomial") is not None   # tuning off
    y = np.empty(n)
    assert asp_mpk.spmv(A, x, out=y) is y
    np.testing.assert_allclose(y, A @ x, rtol=1e-13, atol=1e-13)
    kern = asp_mpk.matrix.analysed(A).powers(1).tuned_kernel(nvec=1, gram=False,
                                                              basis="monomial")
    assert kern is not None and kern.has_spmv
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="overlapping"):
        asp_mpk.spmv(A, x, out=x)
    bad = x.copy()
    bad[7] = np.inf
    for call in (lambda: asp_mpk.matrix_powers(A, bad, 3), lambda: mp.powers(bad),
                 lambda: asp_mpk.spmv(A, bad)):
        with pytest.raises(ValueError, match="non-finite"):
            call()


@requires_compiler
def test_a_symmetric_matrix_changed_in_place_to_an_unsymmetric_one_gives_its_own_powers():
    """The DIA kernels of a symmetric A read its lower diagonals from the upper ones; a value
    changed in place on one side only must be seen by the next functional call."""
    A = gallery.variable_poisson2d(40, seed=5)
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    default = next(iter(MatrixPowers(A, 4, tune=False).variants()))
    assert default.startswith("dia-c")  # what runs untuned: the mirrored diagonals
    assert_levels_close(asp_mpk.matrix_powers(A, x, 4), reference(A, x[None], None, 4)[0],
                        1e-12)
    A.data[A.indices < np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))] *= 1.5  # lower
    assert_levels_close(asp_mpk.matrix_powers(A, x, 4), reference(A, x[None], None, 4)[0],
                        1e-12)


@requires_compiler
@pytest.mark.parametrize("rows", [7, 300, 4096])
def test_wavefront_variants_match_repeated_spmv(monkeypatch, rows):
    """The "-wave" variants (each block swept with all k levels advancing together in sliding
    windows) give repeated ``A @ x``: monomial and three-term bases, two vectors, k = 1, 2, 3,
    7, steps of a few rows (windows slide every few steps, blocks smaller than a ghost zone)
    to more than a block; x with nan is refused and overflow gives SciPy's inf."""
    import importlib

    size_blocks = importlib.import_module("asp_mpk.passes.size_blocks")
    monkeypatch.setattr(size_blocks, "SMALL_WORK", 0)   # small test matrices get them too
    monkeypatch.setattr(size_blocks, "wave_rows", lambda halo: rows)
    rng = np.random.default_rng(rows)
    tri = sp.diags([rng.uniform(1, 2, 30000), rng.uniform(-1, 0, 29999),
                    rng.uniform(-1, 0, 29999)], [0, -1, 1]).tocsr()   # unsymmetric, H = 1
    for A in (gallery.variable_poisson2d(37, seed=1), gallery.poisson3d(13), tri):
        n = A.shape[0]
        xs = rng.standard_normal((2, n))
        for k in (1, 2, 3, 7):
            lmax = float(abs(A).sum(axis=1).max())
            coefs = chebyshev_coefs(0.0, lmax, k)
            mono = np.zeros((3, k))
            mono[0] = 1.0
            waves = {v: fn for v, fn in MatrixPowers(A, k, tune=False).variants(
                nvec=2, basis="recurrence").items() if "-wave" in v}
            assert waves and all(fn.wave == rows for fn in waves.values())
            for vname, fn in waves.items():
                for c, monomial in ((mono, True), (coefs, False)):
                    out = np.full((2, k + 1, n), np.nan)
                    fn(xs.copy(), out, c, None, "recurrence", check_x=True)
                    assert_levels_close(out, reference(A, xs, c, k, monomial), 1e-12)
                bad = xs.copy()
                bad[1, n - 1] = np.nan
                with pytest.raises(ValueError, match="non-finite"):
                    fn(bad, out, mono, None, "recurrence", check_x=True)
    T = sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], shape=(30, 30))
    big = (sp.kron(sp.eye(30), T) + sp.kron(T, sp.eye(30))).tocsr() * 1e60
    ones = np.ones((1, big.shape[0]))
    ref = reference(big, ones, None, 8)
    assert np.isposinf(ref[0, -2:]).all() and not np.isnan(ref).any()
    mono = np.zeros((3, 8))
    mono[0] = 1.0
    for vname, fn in MatrixPowers(big, 8, tune=False).variants().items():
        if "-wave" in vname:
            out = np.empty((1, 9, big.shape[0]))
            fn(ones.copy(), out, mono, None, "monomial")
            np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref), err_msg=vname)
            assert not np.isnan(out).any()


@requires_compiler
def test_objects_made_per_step_start_no_more_specialisations_than_cores(monkeypatch):
    """A ``MatrixPowers`` made per step (new coefficients each step) started a specialising
    thread per object, 1.2 ms of each call, and 900 of them waited at once for a core, each
    for an object dropped by its turn. Beyond one a core, an object's specialisation is
    started by a later call, if any."""
    import threading

    from asp_core.hardware import available_cpus

    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    n = 32
    base = gallery.poisson2d(n)
    x = np.random.default_rng(0).standard_normal(base.shape[0])
    most = 0
    for step in range(40):
        A = base * (1.0 + 0.01 * step)
        V = MatrixPowers(A, 3)(x)
        np.testing.assert_allclose(V[3], A @ (A @ (A @ x)), rtol=1e-12)
        most = max(most, sum(t.name == "asp-mpk-specialise" and t.is_alive()
                             for t in threading.enumerate()))
    assert most <= available_cpus()
