"""Malformed or unusual input to the public API (bug hunt): matrices whose arrays were changed
after construction in ways SciPy's own conversions do not survive, byte-swapped arrays, and
bases whose coefficients overflow.  Each must be a clear error naming the problem, or SciPy's
answer, never a crash or silently wrong values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import asp_mpk
from asp_mpk import gallery
from asp_mpk.powers import MatrixPowers


def _run(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: heap corruption there cannot take pytest down."""
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("offset", [2**32, -(2**63), 3 * 2**32])
def test_a_dia_offset_beyond_int32_matches_scipy(offset):
    """A DIA matrix whose offsets array was replaced by int64 values outside the matrix:
    SciPy's ``A @ x`` ignores those diagonals, but its ``tocsr`` cast them to int32 (2**32 and
    -2**63 became 0), wrote past the end of its arrays, and the call died of heap corruption
    or a segmentation fault.  The diagonals outside the matrix are dropped before conversion."""
    done = _run(f"""
        import numpy as np, scipy.sparse as sp
        import asp_mpk
        from asp_mpk import gallery
        A = sp.dia_matrix(gallery.poisson2d(5))
        A.offsets = A.offsets.astype(np.int64)
        A.offsets[0] = {offset}
        x = np.linspace(-1.0, 2.0, 25)
        want = A @ x
        assert np.allclose(asp_mpk.spmv(A, x), want, rtol=1e-14, atol=1e-14)
        V = asp_mpk.matrix_powers(A, x, 2)
        assert np.allclose(V[2], A @ want, rtol=1e-14, atol=1e-14)
        print("fine")
    """)
    assert done.returncode == 0 and "fine" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("change, message", [
    ("A.data[0] = [1.0] * 1000", "row 0 has 3 column indices in rows but 1000 values"),
    ("A.rows[0] = list(range(1000))", "row 0 has 1000 column indices in rows but 3 values"),
    ("A.rows = A.rows[:10]", r"rows must be an object array of one list per row, shape \(2500,\)"),
    ("A.rows[0] = None", "a list for each row"),
])
def test_a_lil_matrix_with_mismatched_rows_and_data_is_refused(change, message):
    """SciPy's LIL ``tocsr`` sizes its arrays by ``rows`` and fills them from ``rows`` and
    ``data`` unchecked: a longer list in data wrote past the end (``malloc(): corrupted top
    size``, the process aborted), a longer one in rows left values uninitialised (products
    off by hundreds, different from run to run), a shortened rows array was a segmentation
    fault.  Now a ValueError names the row."""
    done = _run(f"""
        import numpy as np, scipy.sparse as sp
        import asp_mpk
        from asp_mpk import gallery
        A = sp.lil_matrix(gallery.poisson2d(50))
        {change}
        for call in (lambda: asp_mpk.spmv(A, np.ones(2500)),
                     lambda: asp_mpk.matrix_powers(A, np.ones(2500), 2)):
            try:
                call()
            except ValueError as exc:
                print("refused:", exc)
            else:
                print("accepted")
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused: A (LIL)") for line in lines), \
        done.stdout
    assert all(re.search(message, line) for line in lines), done.stdout


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr"])
def test_byte_swapped_index_arrays_give_scipys_product(fmt):
    """Big-endian indptr and indices assigned after construction (as read from a file written
    elsewhere): SciPy's ``A @ x`` computes with them, but the native structure check read
    their raw bytes as native integers and refused A naming values it does not have
    ("indptr[-1] is 604045312 but indices has 292 entries")."""
    A = gallery.poisson2d(6).asformat(fmt)
    A.indices = A.indices.astype(">i4")
    A.indptr = A.indptr.astype(">i4")
    x = np.linspace(-1.0, 2.0, A.shape[0])
    want = A @ x
    np.testing.assert_allclose(asp_mpk.spmv(A, x), want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2)[2], A @ want, rtol=1e-13,
                               atol=1e-13)
    np.testing.assert_allclose(MatrixPowers(A, 1)(x)[1], want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr"])
@pytest.mark.parametrize("itype", [np.uint32, np.int16, np.uint8])
def test_index_arrays_of_other_integer_dtypes_give_scipys_product(fmt, itype):
    """uint32 or int16 indptr and indices assigned after construction: SciPy's ``A @ x``
    computes with them, but the native structure check raised "TypeError: indptr must be
    int32 or int64", naming neither A nor a fix."""
    A = gallery.poisson2d(6).asformat(fmt)
    if itype != np.uint8:   # SciPy's product refuses a uint8 indptr (not the indices)
        A.indptr = A.indptr.astype(itype)
    A.indices = A.indices.astype(itype)
    x = np.linspace(-1.0, 2.0, A.shape[0])
    want = A @ x
    np.testing.assert_allclose(asp_mpk.spmv(A, x), want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2)[2], A @ want, rtol=1e-13,
                               atol=1e-13)
    x_cg, info = asp_mpk.cg(A, want, rtol=1e-10)
    assert info == 0
    np.testing.assert_allclose(x_cg, x, rtol=1e-8, atol=1e-8)


def test_a_uint64_index_past_int64_is_a_structure_error():
    """A uint64 index no int64 can hold is out of range, not wrapped to a negative one."""
    A = gallery.poisson2d(4).tocsc()
    A.indices = A.indices.astype(np.uint64)
    A.indices[3] = 2**64 - 1
    with pytest.raises(ValueError, match=r"A \(CSC\) has an invalid CSC structure: indices "
                                         "holds 18446744073709551615"):
        asp_mpk.spmv(A, np.ones(16))


def test_byte_swapped_vectors_are_float64():
    """A '>f8' x, b or x0 is float64 (SciPy's ``A @ x`` takes it); it was refused with "x has
    dtype >f8; use float64 or float32".  A's own byte-swapped values, which scipy.sparse does
    not support, are refused with a message that says what is wrong with them."""
    A = gallery.poisson2d(6)
    n = A.shape[0]
    x = np.linspace(-1.0, 2.0, n)
    xb = x.astype(">f8")
    np.testing.assert_allclose(asp_mpk.spmv(A, xb), A @ x, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, xb, 2), asp_mpk.matrix_powers(A, x, 2),
                               rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(MatrixPowers(A, 2)(xb), asp_mpk.matrix_powers(A, x, 2),
                               rtol=1e-14, atol=1e-14)
    sol, info = asp_mpk.cg(A, xb, x0=np.zeros(n, ">f8"))
    assert info == 0 and sol.dtype == np.float64
    np.testing.assert_allclose(A @ sol, x, atol=1e-4 * np.linalg.norm(x))
    B = A.copy()
    B.data = B.data.astype(">f8")
    with pytest.raises(TypeError, match="non-native"):
        asp_mpk.spmv(B, x)


@pytest.mark.parametrize("fmt, attr", [("csr", "data"), ("csr", "indices"), ("csr", "indptr"),
                                       ("dia", "offsets")])
def test_a_list_assigned_as_a_matrix_array_is_named(fmt, attr):
    """``A.indices = list(...)`` after construction: the call failed with "AttributeError:
    'list' object has no attribute 'nbytes'" (or 'dtype') from asp's own bookkeeping."""
    A = gallery.poisson2d(6).asformat(fmt)
    setattr(A, attr, list(getattr(A, attr)))
    x = np.ones(36)
    for call in (lambda: asp_mpk.spmv(A, x), lambda: asp_mpk.matrix_powers(A, x, 2),
                 lambda: asp_mpk.cg(A, x), lambda: MatrixPowers(A, 2)):
        with pytest.raises(ValueError, match=f"{attr} is a list, not a numpy array"):
            call()


@pytest.mark.parametrize("dtype", [np.longdouble])
def test_an_unsupported_x_dtype_is_named_as_xs(dtype):
    """A longdouble x with a float64 A: the error said "A has dtype float128" (the product's
    dtype was tried as A's), naming an A the caller had made float64."""
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 here")
    A = gallery.poisson2d(4)
    x = np.ones(16, dtype=dtype)
    for call in (lambda: asp_mpk.spmv(A, x), lambda: asp_mpk.matrix_powers(A, x, 2)):
        with pytest.raises(TypeError, match=f"^x has dtype {np.dtype(dtype)}"):
            call()


@pytest.mark.parametrize("basis", ["newton", "chebyshev"])
def test_automatic_shifts_for_a_matrix_with_large_entries(basis):
    """Entries above ~1e154 (finite, and A @ x is too): the Lanczos run that picks the shifts
    overflowed, and the call failed with "shifts must be finite" or "Chebyshev bounds must be
    finite ... got (nan, nan)", naming shifts the caller never passed.  The Ritz values are
    now those of A scaled down, scaled back; the basis equals the one of A / 1e200 times the
    scale of each level."""
    A = gallery.poisson2d(5)
    x = np.linspace(-1.0, 2.0, 25) * 1e-100   # small: Newton's level 2 is 1e400 times x
    big = asp_mpk.matrix_powers(A * 1e200, x, 2, basis=basis)
    small = asp_mpk.matrix_powers(A, x, 2, basis=basis)
    assert np.all(np.isfinite(big))
    # Newton's level j is A^j-sized; Chebyshev's are scaled to the size of x
    scale = 1e200 if basis == "newton" else 1.0
    for j in range(3):
        np.testing.assert_allclose(big[j] / scale**j if j < 2 else big[j] / scale / scale,
                                   small[j], rtol=1e-8, atol=1e-108)


def test_a_chebyshev_interval_whose_coefficients_overflow_is_refused():
    """``shifts=(0, 1e-320)``: 1 / half-width overflowed and every vector after x was inf or
    nan, returned without a word; ``(0, 5e-324)`` was a ZeroDivisionError.  Bounds near the
    float64 limit whose coefficients are finite, ``(1e308, 1.7e308)``, overflowed in
    ``-2 c0 / d`` and now work."""
    A = gallery.poisson2d(4)
    x = np.ones(16)
    for shifts in ((0.0, 1e-320), (0.0, 5e-324)):
        with pytest.raises(ValueError, match="too narrow"):
            asp_mpk.matrix_powers(A, x, 2, basis="chebyshev", shifts=shifts)
    V = asp_mpk.matrix_powers(A, x, 3, basis="chebyshev", shifts=(1e308, 1.7e308))
    c0, d = 1.35e308, 0.35e308
    want = [x, (A @ x) / d - (c0 / d) * x]
    want.append(2 * ((A @ want[1]) / d - (c0 / d) * want[1]) - want[0])
    np.testing.assert_allclose(V[:3], want, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("view", ["strided", "reversed", "column"])
def test_a_strided_x_on_the_first_sighting_of_a_matrix(dtype, view):
    """The first call for a matrix's contents runs over its own arrays, and handed a strided x
    to the native products: "ValueError: xs must be C-contiguous" (the next call, with the
    matrix analysed, worked)."""
    import scipy.sparse as sp

    n = 37
    A = sp.random(n, n, density=0.2, format="csr", random_state=5, dtype=dtype) + \
        sp.eye(n, dtype=dtype, format="csr")
    base = np.random.default_rng(5).random((n, 3)).astype(dtype)
    x = {"strided": np.ascontiguousarray(base.T).reshape(-1)[::3], "reversed": base[::-1, 0],
         "column": base[:, 1]}[view]
    assert not x.flags.c_contiguous
    for _ in range(2):
        V = asp_mpk.matrix_powers(A, x, 3)
        np.testing.assert_allclose(V[3], A @ (A @ (A @ x)), rtol=1e-5)


def test_values_stored_past_the_last_row_are_ignored_as_scipy_does():
    """A CSR matrix whose arrays hold more than ``indptr[-1]`` entries (assigned after
    construction): SciPy ignores the slack, but a nan there failed the first call ("A has
    non-finite stored values") and not the later ones."""
    import scipy.sparse as sp

    n = 4
    A = sp.csr_matrix((np.ones(3), np.array([0, 1, 2]), np.array([0, 1, 2, 3, 3])), shape=(n, n))
    A.data = np.r_[A.data, np.nan]
    A.indices = np.r_[A.indices, 3]
    for _ in range(3):
        np.testing.assert_array_equal(asp_mpk.spmv(A, np.ones(n)), [1.0, 1.0, 1.0, 0.0])
        np.testing.assert_array_equal(asp_mpk.matrix_powers(A, np.ones(n), 2)[2],
                                      [1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("mode", ["background", "wait"])
def test_an_np_matrix_out_is_refused_as_such(monkeypatch, tmp_path, mode):
    """``out=np.asmatrix(...)`` of the right shape passed the checks and reached the kernels
    2-D (a matrix cannot be reshaped to 3-D): "csr_powers: xs must be (nvec, n) ...", "out must
    be an (nvec, k+1, n) array" or "out has shape (4, 40)", by the path taken."""
    import scipy.sparse as sp

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_MPK_COMPILE", mode)
    A = sp.csr_matrix(sp.random(40, 40, density=0.15, random_state=1) + sp.eye(40) * 4)
    x, k = np.ones(40), 3
    for call in (lambda out: asp_mpk.matrix_powers(A, x, k, out=out),
                 lambda out: MatrixPowers(A, k)(x, out=out)):
        with pytest.raises(ValueError, match="not an np.matrix"):
            call(np.asmatrix(np.zeros((k + 1, 40))))
        out = np.zeros((k + 1, 40))
        assert call(out) is out


def test_background_specialisations_wait_for_a_core_and_hold_no_dropped_object(monkeypatch,
                                                                                 tmp_path):
    """Each ``MatrixPowers`` first called started a specialisation thread at once (200 objects
    made in a loop: 200 threads, as many compilers), and the thread kept its object, with the
    matrix copy, alive until it had finished: at most one runs per core, and one whose object
    was dropped while it waited is given up."""
    import gc
    import weakref
    from contextlib import ExitStack

    from asp_core import background as pool
    from asp_core.hardware import available_cpus
    from asp_mpk import background
    from asp_mpk.gallery import poisson2d

    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ASP_MPK_COMPILE", "background")
    with ExitStack() as busy:
        for _ in range(available_cpus()):   # every core busy with other specialisations
            busy.enter_context(pool.specialising())
        A = poisson2d(30).tocsr()
        mp = MatrixPowers(A, 3)
        V = mp(np.ones(A.shape[0]))           # runs now, its specialisation waits for a core
        np.testing.assert_allclose(V[1], A @ np.ones(A.shape[0]))
        ref = weakref.ref(mp)
        threads = list(mp._pending.values())
        del mp
        gc.collect()
        assert ref() is None
        assert threads and all(t.is_alive() for t in threads)
    background.join_all()
    assert not any(t.is_alive() for t in threads)
