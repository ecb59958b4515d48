"""Bad input: clear TypeError/ValueError before native code runs, nothing mutated."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery
from asp_mpk.powers import MatrixPowers


@pytest.fixture
def A():
    return gallery.poisson2d(8)


def test_non_square(A):
    R = sp.random(5, 7, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="square"):
        asp_mpk.matrix_powers(R, np.ones(7), 2)
    with pytest.raises(ValueError, match="square"):
        asp_mpk.cg(R, np.ones(5))
    with pytest.raises(ValueError, match="square"):
        MatrixPowers(R, 2)


def test_shape_mismatch(A):
    with pytest.raises(ValueError, match="shape mismatch"):
        asp_mpk.matrix_powers(A, np.ones(A.shape[0] + 1), 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        asp_mpk.cg(A, np.ones(3))
    with pytest.raises(ValueError, match="shape mismatch"):
        asp_mpk.cg(A, np.ones(A.shape[0]), x0=np.ones(2))
    with pytest.raises(ValueError):
        asp_mpk.matrix_powers(A, np.ones((2, 2, A.shape[0])), 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        asp_mpk.cg(A, np.ones(A.shape[0]), M=sp.identity(3))


def test_k_invalid(A):
    x = np.ones(A.shape[0])
    with pytest.raises(ValueError, match="k must be >= 0"):
        asp_mpk.matrix_powers(A, x, -1)
    with pytest.raises(TypeError, match="integer"):
        asp_mpk.matrix_powers(A, x, 2.5)
    with pytest.raises(TypeError, match="integer"):
        MatrixPowers(A, True)
    # beyond a 64-bit integer: pybind11's conversion refused it, listing A's arrays
    for _ in range(2):   # a first sighting, then a matrix seen before
        with pytest.raises(ValueError, match="too large"):
            asp_mpk.matrix_powers(A, x, 10**20)
    with pytest.raises(ValueError, match="too large"):
        MatrixPowers(A, 10**20)


def test_non_finite(A):
    x = np.ones(A.shape[0])
    bad = A.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        asp_mpk.matrix_powers(bad, x, 2)
    bad.data[3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        asp_mpk.cg(bad, x)
    x2 = x.copy()
    x2[0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        asp_mpk.matrix_powers(A, x2, 2)
    with pytest.raises(ValueError, match="non-finite"):
        asp_mpk.cg(A, x2)


def test_integer_complex_and_dense_inputs(A):
    n = A.shape[0]
    with pytest.raises(TypeError, match="integer"):
        asp_mpk.matrix_powers(A.astype(np.int64), np.ones(n), 2)
    with pytest.raises(TypeError, match="integer"):
        asp_mpk.cg(A.astype(np.int64), np.ones(n))
    with pytest.raises(TypeError, match="complex"):
        asp_mpk.matrix_powers(A.astype(np.complex128), np.ones(n), 2)
    with pytest.raises(TypeError, match="scipy.sparse"):
        asp_mpk.matrix_powers(A.toarray(), np.ones(n), 2)
    with pytest.raises(TypeError, match="scipy.sparse"):
        asp_mpk.cg([[1.0]], [1.0])


def test_bad_options(A):
    n = A.shape[0]
    with pytest.raises(ValueError, match="basis"):
        asp_mpk.matrix_powers(A, np.ones(n), 2, basis="legendre")
    with pytest.raises(ValueError, match="shifts"):
        asp_mpk.matrix_powers(A, np.ones(n), 2, basis="monomial", shifts=[1.0])
    with pytest.raises(ValueError, match="Chebyshev"):
        asp_mpk.matrix_powers(A, np.ones(n), 2, basis="chebyshev", shifts=(3.0, 1.0))
    with pytest.raises(ValueError, match="complex shifts"):
        asp_mpk.matrix_powers(A, np.ones(n), 2, basis="newton", shifts=[1 + 1j, 1 - 1j])
    with pytest.raises(ValueError, match="rtol"):
        asp_mpk.cg(A, np.ones(n), rtol=-1.0)
    with pytest.raises(ValueError, match="maxiter"):
        asp_mpk.cg(A, np.ones(n), maxiter=-3)
    with pytest.raises(ValueError, match="s must be"):
        asp_mpk.cg(A, np.ones(n), s=0)
    with pytest.raises(TypeError, match="callback"):
        asp_mpk.cg(A, np.ones(n), callback=3)


def _corrupt(fmt, change):
    """A 50 x 50 matrix in ``fmt`` whose arrays were changed after it was built (SciPy checks
    them only then)."""
    n = 50
    if fmt == "bsr":
        M = sp.bsr_matrix(sp.eye(n), blocksize=(2, 2))
    else:
        M = (sp.random(n, n, density=0.1, random_state=1) + sp.eye(n)).asformat(fmt)
    change(M)
    return M


CORRUPTED = {
    "coo row outside": ("coo", lambda M: M.row.__setitem__(3, 10**6),
                        r"\(COO\) .*row index 1000000 \(entry 3\) is outside 0\.\.49"),
    "coo negative col": ("coo", lambda M: M.col.__setitem__(3, -5), "col index -5"),
    "coo short row": ("coo", lambda M: setattr(M, "row", M.row[:-5]), "differ"),
    "csc short data": ("csc", lambda M: setattr(M, "data", M.data[:-5]),
                       r"\(CSC\) .*data has \d+ entries"),
    "csc short indptr": ("csc", lambda M: setattr(M, "indptr", M.indptr[:-5]),
                         "indptr has 46 entries; its shape \\(50, 50\\) needs 51"),
    # worded for the format passed: a CSC's indices are row indices, in columns
    "csc bad row": ("csc", lambda M: M.indices.__setitem__(0, 77),
                    r"\(CSC\) has an invalid CSC structure: row index 77 in column 0 \(entry 0\)"),
    "csc decreasing indptr": ("csc", lambda M: M.indptr.__setitem__(4, 10**6),
                              "CSC structure: indptr decreases at column 4$"),
    "bsr indptr past the end": ("bsr", lambda M: M.indptr.__setitem__(3, 10**8),
                                r"\(BSR\) .*BSR structure: indptr decreases at block row 3$"),
    "bsr short data": ("bsr", lambda M: setattr(M, "data", M.data[:-2]), "data has"),
    "bsr bad block column": ("bsr", lambda M: M.indices.__setitem__(0, 999),
                             "block column index 999 in block row 0 "),
    "bsr flat data": ("bsr", lambda M: setattr(M, "data", M.data.reshape(-1)),
                      "wrong dimensions"),
    "dia offsets short": ("dia", lambda M: setattr(M, "offsets", M.offsets[:-1]),
                          r"\(DIA\) .*one row per offset"),
    "dia float offsets": ("dia", lambda M: setattr(M, "offsets", M.offsets.astype(float)),
                          "offsets has dtype float64"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTED))
def test_arrays_changed_after_construction(case):
    """SciPy's own conversions index with a matrix's arrays unchecked (a segmentation fault or
    silently wrong values when they were changed after construction): each is refused with a
    ValueError naming the problem before any conversion runs."""
    M = _corrupt(*CORRUPTED[case][:2])
    message = CORRUPTED[case][2]
    x = np.ones(50)
    for call in (lambda: asp_mpk.spmv(M, x), lambda: asp_mpk.matrix_powers(M, x, 2),
                 lambda: asp_mpk.cg(M, x), lambda: MatrixPowers(M, 2)):
        with pytest.raises(ValueError, match=message):
            call()


@requires_compiler
def test_read_only_out_is_refused(A):
    """``out`` backed by immutable memory (here a bytes object) is refused, before and after
    the kernels are tuned: the kernels would write into it."""
    from asp_mpk.matrix import analysed

    n = A.shape[0]
    x = np.ones(n)
    y = np.frombuffer(bytes(8 * n))
    V = np.frombuffer(bytes(8 * 4 * n)).reshape(4, n)
    for tuned in (False, True):
        if tuned:
            analysed(A).powers(1).tune()
            analysed(A).powers(3).tune()
        with pytest.raises(ValueError, match="out must be a writeable"):
            asp_mpk.spmv(A, x, out=y)
        with pytest.raises(ValueError, match="out must be a writeable"):
            asp_mpk.matrix_powers(A, x, 3, out=V)
        with pytest.raises(ValueError, match="out must be a writeable"):
            MatrixPowers(A, 3).powers(x, out=V)
    assert not np.any(y) and not np.any(V)


def test_kernel_call_checks_arrays(A):
    """The bound kernel refuses wrong shapes/dtypes/aliasing itself (no crash in C)."""
    mp = MatrixPowers(A, 3, tune=False)
    n = A.shape[0]
    coefs = np.zeros((3, 3))
    coefs[0] = 1
    for name, fn in mp.variants().items():
        xs = np.ones((1, n))
        with pytest.raises(ValueError):
            fn(xs, np.empty((1, 3, n)), coefs, None, "monomial")            # wrong k
        with pytest.raises(ValueError):
            fn(xs.astype(np.float32), np.empty((1, 4, n)), coefs, None, "monomial")
        with pytest.raises(ValueError):
            fn(xs, np.empty((1, 4, n))[:, :, ::1][..., ::-1], coefs, None, "monomial")
        with pytest.raises(ValueError):
            fn(xs, np.empty((1, 4, n)), coefs, np.empty((3, 3)), "monomial")  # gram shape
        buf = np.empty((1, 4, n))
        with pytest.raises(ValueError, match="overlap"):
            fn(buf[:, 0], buf, coefs, None, "monomial")


def test_nothing_mutated():
    A = gallery.unstructured(200, seed=3)
    A_before = A.copy()
    x = np.random.default_rng(0).standard_normal(200)
    x_before = x.copy()
    asp_mpk.matrix_powers(A, x, 4)
    asp_mpk.matrix_powers(A, x, 3, basis="chebyshev", shifts=(-2.0, 4.0))
    asp_mpk.spmv(A, x)
    S = gallery.poisson2d(12)
    S_before = S.copy()
    b = np.ones(S.shape[0])
    asp_mpk.cg(S, b)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(b, np.ones(S.shape[0]))
    for M, M0 in ((A, A_before), (S, S_before)):
        np.testing.assert_array_equal(M.data, M0.data)
        np.testing.assert_array_equal(M.indices, M0.indices)
        np.testing.assert_array_equal(M.indptr, M0.indptr)


def test_result_shape_and_dtype_follow_scipy():
    """``spmv`` of an (n, 1) x is (n, 1); a float64 x with a float32 matrix computes and
    returns float64 (x was rounded to float32), as SciPy's ``A @ x``."""
    A = gallery.poisson2d(6)
    A32 = A.astype(np.float32)
    x = np.random.default_rng(1).standard_normal(A.shape[0]) / 3
    assert asp_mpk.spmv(A, x[:, None]).shape == (A @ x[:, None]).shape == (A.shape[0], 1)
    for _ in range(2):   # the first call and the call that finds the matrix again
        y = asp_mpk.spmv(A32, x)
        assert y.dtype == (A32 @ x).dtype == np.float64
        np.testing.assert_allclose(y, A32 @ x, rtol=1e-14, atol=1e-14)
        V = asp_mpk.matrix_powers(A32, x, 2)
        assert V.dtype == np.float64
        np.testing.assert_allclose(V[2], A32 @ (A32 @ x), rtol=1e-13, atol=1e-13)
        assert asp_mpk.spmv(A32, x.astype(np.float32)).dtype == np.float32


def test_a_column_vector_for_matrix_powers_says_how_to_pass_it(A):
    """x of shape (n, 1) reads as n vectors of length 1 (vectors are rows): the error only
    said "rows must have length n"."""
    x = np.ones((A.shape[0], 1))
    with pytest.raises(ValueError, match=r"one vector per row \(a column vector: one vector is "
                                         r"x\.ravel\(\), several are rows\)"):
        asp_mpk.matrix_powers(A, x, 2)


def test_cg_to_a_zero_tolerance_warns_nothing_of_its_own():
    """rtol = atol = 0 cannot be met (info > 0: maxiter, or the iterations done when CG
    breaks down at the rounding level, where SciPy's x is NaN); the spectrum estimate divided
    by a zero step length there and leaked three RuntimeWarnings from asp_mpk's own code."""
    import warnings

    A = gallery.poisson2d(10)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, info = asp_mpk.cg(A, b, rtol=0)
    assert info > 0 and np.linalg.norm(A @ x - b) < 1e-8 * np.linalg.norm(b)
    assert not [w for w in caught if "asp_mpk" in w.filename], [str(w.message) for w in caught]


@pytest.mark.parametrize("call", ["spmv", "matrix_powers"])
def test_a_first_call_over_as_own_arrays_checks_what_the_analysis_checks(call):
    """Contents met the first time are computed over A's own arrays (no copy, no analysis):
    that call must refuse what the analysed path refuses, with the same errors, and compute
    what it computes."""
    from asp_mpk.matrix import clear_matrices

    def run(A, x, **kw):
        clear_matrices()                              # every call a first one
        if call == "spmv":
            return asp_mpk.spmv(A, x, **kw)
        return asp_mpk.matrix_powers(A, x, 2, **kw)[-1]

    A = gallery.poisson2d(8)
    x = np.linspace(-1.0, 1.0, A.shape[0])
    want = A @ x if call == "spmv" else A @ (A @ x)
    np.testing.assert_allclose(run(A, x), want, rtol=1e-13)
    A32 = A.astype(np.float32)
    got = run(A32, x.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    bad = A.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match="non-finite stored values"):
        run(bad, x)
    broken = A.copy()
    broken.indices[3] = 500
    with pytest.raises(ValueError, match="invalid CSR structure"):
        run(broken, x)
    with pytest.raises(ValueError, match="non-finite"):
        run(A, np.where(x > 0.5, np.inf, x))
    with pytest.raises(ValueError, match="out must be"):
        run(A, x, out=np.empty(3))
    unsorted = A.copy()
    unsorted.indices[:2] = unsorted.indices[1::-1]
    unsorted.data[:2] = unsorted.data[1::-1]
    unsorted.has_sorted_indices = False              # not as the copy holds it: analysed
    np.testing.assert_allclose(run(unsorted, x), want, rtol=1e-13)
    if call == "matrix_powers":
        clear_matrices()
        np.testing.assert_array_equal(asp_mpk.matrix_powers(A, x, 0), x[None])


@pytest.mark.parametrize("change", ["short data", "long data", "2-d data", "short indptr",
                                    "long indptr"])
@pytest.mark.parametrize("call", ["spmv", "matrix_powers", "cg"])
def test_csr_arrays_replaced_badly_are_refused_on_the_first_call_too(call, change):
    """A.data or A.indptr replaced after construction by an array of the wrong length (data not
    one value per column index, indptr not one entry per row and one): the first call, computed
    over A's own arrays, read past the end of a short data (a product of garbage, 1e224) or
    failed in the native product with a message about x and out, where the second call's copy
    refused it (SciPy's "indices and data should have the same size", "index pointer size");
    the third, a first sighting again, did as the first; cg's first solve raised a TypeError
    of its native passes."""
    from asp_mpk.matrix import clear_matrices

    A = gallery.poisson2d(8)
    if change.endswith("data"):
        A.data = {"short": A.data[:-5].copy(), "long": np.r_[A.data, 1.0],
                  "2-d": np.c_[A.data, A.data]}[change.split()[0]]
        match = "invalid CSR structure: data has shape"
    else:
        A.indptr = A.indptr[:-1].copy() if change == "short indptr" else \
            np.r_[A.indptr, A.indptr[-1]]
        match = r"invalid CSR structure: indptr has \d+ entries; its shape \(64, 64\) needs 65"
    x = np.ones(A.shape[0])
    clear_matrices()
    for _ in range(3):
        with pytest.raises(ValueError, match=match):
            if call == "spmv":
                asp_mpk.spmv(A, x)
            elif call == "matrix_powers":
                asp_mpk.matrix_powers(A, x, 2)
            else:
                asp_mpk.cg(A, x)


@pytest.mark.parametrize("maxiter", [np.array(3), np.int32(3), 3])
def test_cg_takes_maxiter_as_scipy_takes_it(maxiter):
    """``maxiter=np.array(5)`` (a 0-d array, as a config file or a sweep gives it) was refused
    where SciPy takes anything an index can be; a bool, a float or a negative count still are."""
    import scipy.sparse.linalg as spla

    A = asp_mpk.gallery.poisson2d(12)
    b = np.ones(A.shape[0])
    x, info = asp_mpk.cg(A, b, maxiter=maxiter, rtol=1e-14)
    want, want_info = spla.cg(A, b, maxiter=maxiter, rtol=1e-14)
    assert info == want_info == 3
    for bad in (True, 3.0, -1, np.array([3])):
        with pytest.raises(ValueError, match="maxiter must be a non-negative integer"):
            asp_mpk.cg(A, b, maxiter=bad)


@pytest.mark.parametrize("a_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_dtype", [np.int64, np.int16, np.uint8, np.bool_, np.float16])
def test_an_integer_boolean_or_float16_x_gives_scipys_product(A, a_dtype, x_dtype):
    """SciPy's ``A @ x`` takes such an x (float64 for a float64 A or an int64 x, float32 for
    a float32 A and a narrower x); spmv, matrix_powers and MatrixPowers refused it with a
    TypeError ("integer/boolean dtype")."""
    A = A.astype(a_dtype)
    x = (np.arange(A.shape[0]) % 3).astype(x_dtype)
    y, want = asp_mpk.spmv(A, x), A @ x
    assert y.dtype == want.dtype
    np.testing.assert_allclose(y, want, rtol=1e-6)
    for V in (asp_mpk.matrix_powers(A, x, 2), asp_mpk.MatrixPowers(A, 2)(x)):
        assert V.dtype == want.dtype
        np.testing.assert_allclose(V[2], A @ want, rtol=1e-5)
