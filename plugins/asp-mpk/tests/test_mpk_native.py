"""The native plan builder agrees with its numpy fallback; matrices are recognised by checksum,
and a matrix changed in place is never served stale plans."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from pytest_asp import requires_compiler

import asp_mpk
from asp_mpk import gallery, native
from asp_mpk.analysis import analyse
from asp_mpk.matrix import analysed
from asp_mpk.partition import block_bounds, build_closures
from asp_mpk.validate import as_csr

needs_native = pytest.mark.skipif(native.planner() is None,
                                  reason="asp_mpk._planner was not built")

MATRICES = {
    "poisson2d": lambda: gallery.poisson2d(30),
    "poisson3d": lambda: gallery.poisson3d(9),
    "variable": lambda: gallery.variable_poisson2d(25, seed=4),
    "banded_spd": lambda: gallery.banded_spd(700, bandwidth=3, seed=1),
    "elasticity": lambda: gallery.elasticity(10),
    "unstructured": lambda: gallery.unstructured(500, density=0.01, seed=2),
    "unstructured_spd": lambda: gallery.unstructured_spd(600, seed=5),
    "float32": lambda: gallery.banded_spd(300, bandwidth=2, seed=6).astype(np.float32),
}


@pytest.fixture
def numpy_planner(monkeypatch):
    """Run the numpy fallbacks (as on a machine where the extension was not built)."""
    monkeypatch.setitem(native._STATE, "mod", None)


def _both(fn, monkeypatch):
    got = fn()
    monkeypatch.setitem(native._STATE, "mod", None)
    ref = fn()
    monkeypatch.undo()
    return got, ref


@needs_native
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_analysis_matches_numpy(name, monkeypatch):
    csr = as_csr(MATRICES[name]())
    got, ref = _both(lambda: analyse(csr, want_rcm=False), monkeypatch)
    for field in ("symmetric", "bandwidth", "offsets", "dia_fill", "dia_compressible", "bcsr"):
        assert getattr(got, field) == getattr(ref, field), field
    if got.offsets is not None:
        D, Dref = _both(lambda: native.dia_arrays(csr, got.offsets), monkeypatch)
        np.testing.assert_array_equal(D, Dref)


@needs_native
@pytest.mark.parametrize("name", ["poisson2d", "unstructured_spd", "unstructured", "elasticity"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("sym", [False, True])
def test_closures_match_numpy(name, k, sym, monkeypatch):
    csr = as_csr(MATRICES[name]())
    order = np.random.default_rng(k).permutation(csr.shape[0]).astype(np.int64)
    bounds = block_bounds(csr.shape[0], 5)
    got, ref = _both(lambda: build_closures(csr, order, bounds, k, sym=sym, max_copies=100),
                     monkeypatch)
    for key, arr in ref.arrays().items():
        np.testing.assert_array_equal(got.arrays()[key], arr, err_msg=key)
    assert got.redundancy == pytest.approx(ref.redundancy)


@needs_native
def test_permuted_bandwidth_matches_numpy(monkeypatch):
    csr = as_csr(MATRICES["unstructured_spd"]())
    perm = np.random.default_rng(0).permutation(csr.shape[0])
    got, ref = _both(lambda: native.permuted_bandwidth(csr, perm), monkeypatch)
    assert got == ref


def _bad_columns():
    return sp.csr_matrix((np.ones(3), np.array([0, 7, 1]), np.array([0, 1, 2, 3])),
                         shape=(3, 3))


@pytest.mark.parametrize("use_numpy", [False, True])
def test_out_of_range_column_is_a_value_error(use_numpy, monkeypatch):
    if use_numpy:
        monkeypatch.setitem(native._STATE, "mod", None)
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"column index 7 in row 1 .*outside 0\.\.2"):
        asp_mpk.matrix_powers(_bad_columns(), x, 2)
    with pytest.raises(ValueError, match="column index 7"):
        asp_mpk.cg(_bad_columns(), x)
    bad = sp.csr_matrix((np.ones(2), np.array([0, 1]), np.array([0, 2, 1, 2])), shape=(3, 3))
    with pytest.raises(ValueError, match="indptr decreases at row 1"):
        asp_mpk.spmv(bad, x)


def _check_either(indptr, indices, ncols, monkeypatch, threads):
    """check_csr's answer (canonical, or the error's message), natively on ``threads`` threads
    and by the numpy fallback."""
    def answer(fn):
        try:
            return fn()
        except ValueError as exc:
            return str(exc)

    mod = native.planner()
    got = answer(lambda: bool(mod.check_csr(indptr, indices, ncols, threads)["canonical"]))
    monkeypatch.setitem(native._STATE, "mod", None)
    ref = answer(lambda: native._check_csr(indptr, indices, ncols))
    monkeypatch.undo()
    return got, ref


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_structure_check_agrees_with_numpy(itype, threads, monkeypatch):
    """The native check splits rows between threads and into blocks of 4096: unsorted rows,
    duplicates and bad indices at and around those boundaries, and empty rows, are found as
    numpy finds them."""
    n = 300_000
    keep = np.ones(n)
    keep[4000:4200] = 0                                    # empty rows across a block boundary
    base = (sp.diags(keep) @ gallery.poisson2d(548)[:n, :n]).tocsr()
    base.eliminate_zeros()
    base.sort_indices()
    ip0, ix0 = base.indptr.astype(itype), base.indices.astype(itype)
    assert np.all(np.diff(ip0)[4000:4200] == 0)
    assert _check_either(ip0, ix0, n, monkeypatch, threads) == (True, True)
    for row in (1, 4095, 4096, 4200, n // 3, 2 * n // 3, n - 1):   # swap a row's first two
        ip, ix = ip0, ix0.copy()
        a = ip[row]
        ix[a], ix[a + 1] = ix[a + 1], ix[a]
        assert _check_either(ip, ix, n, monkeypatch, threads) == (False, False), row
        ix[a + 1] = ix[a]                                  # a duplicate
        assert _check_either(ip, ix, n, monkeypatch, threads) == (False, False), row
    for row, col in ((0, -1), (8192, n), (150_000, -7), (n - 1, n + 5)):
        ix = ix0.copy()
        ix[ip0[row + 1] - 1] = col
        got, ref = _check_either(ip0, ix, n, monkeypatch, threads)
        assert got == ref and f"column index {col} in row {row} " in got


@needs_native
def test_structure_check_reads_no_row_past_a_decrease(monkeypatch):
    """An indptr that jumps far past the end of indices and comes back is a decreasing indptr,
    found before any row is read (reading row 1 here would go 10⁹ entries out of bounds)."""
    ip = np.array([0, 1, 10**9, 3], dtype=np.int64)
    ix = np.array([0, 1, 2], dtype=np.int64)
    got, ref = _check_either(ip, ix, 3, monkeypatch, 2)
    assert got == ref == "invalid CSR structure: indptr decreases at row 2"


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_value_flags_agree_with_numpy(dtype, threads):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(1_000_003).astype(dtype)
    mod = native.planner()
    tiny = np.finfo(dtype).smallest_subnormal
    for where in (0, 262_143, 262_144, 700_001, a.size - 1):
        for value in (np.inf, -np.inf, np.nan, 0.0, -0.0, tiny, -tiny, np.finfo(dtype).max):
            b = a.copy()
            b[where] = value
            f = mod.value_flags(b, threads)
            assert (f["finite"], f["zeros"]) == (bool(np.all(np.isfinite(b))),
                                                 bool(np.any(b == 0))), (where, value)


def test_csc_with_bad_row_index_is_a_value_error():
    A = sp.csc_matrix((np.ones(3), np.array([0, 9, 1]), np.array([0, 1, 2, 3])), shape=(3, 3))
    with pytest.raises(ValueError, match="index 9"):
        asp_mpk.matrix_powers(A, np.ones(3), 1)


@pytest.mark.parametrize("use_numpy", [False, True])
def test_checksum_sees_small_changes(use_numpy, monkeypatch):
    if use_numpy:
        monkeypatch.setitem(native._STATE, "mod", None)
    a = np.random.default_rng(0).standard_normal(100_003)
    h = native.checksum(a)
    assert native.checksum(a.copy()) == h
    b = a.copy()
    b[50_000] = np.nextafter(b[50_000], 1.0)
    assert native.checksum(b) != h
    b = a.copy()
    b[[10, 99_000]] = b[[99_000, 10]]       # same values, other places
    assert native.checksum(b) != h
    assert native.checksum(a[:-1]) != h
    # blocks of 64 bytes A B B A rewritten as B A A B (linear position weights alone kept
    # the sum: values 1 and 2 swapped in place, or column indices of rows reordered)
    for dtype, per in ((np.float64, 8), (np.int32, 16), (np.float32, 16)):
        lo, hi = np.full(per, 1, dtype), np.full(per, 2, dtype)
        x = np.concatenate([lo, hi, hi, lo, np.arange(100, dtype=dtype)])
        y = np.concatenate([hi, lo, lo, hi, np.arange(100, dtype=dtype)])
        assert native.checksum(x) != native.checksum(y), dtype


@pytest.mark.parametrize("use_numpy", [False, True])
def test_values_swapped_in_place_are_a_new_matrix(use_numpy, monkeypatch):
    """Rows of 1s and 2s traded places: spmv and cg follow the new matrix (cg reported
    convergence with a residual of 0.79 when the change went unnoticed)."""
    if use_numpy:
        monkeypatch.setitem(native._STATE, "mod", None)
    A = sp.diags(np.r_[[1.0] * 8, [2.0] * 16, [1.0] * 8]).tocsr()
    b = np.ones(32)
    asp_mpk.spmv(A, b)
    asp_mpk.cg(A, b, rtol=1e-12)
    A.data[:] = 3.0 - A.data
    np.testing.assert_array_equal(asp_mpk.spmv(A, b), A @ b)
    x, info = asp_mpk.cg(A, b, rtol=1e-12)
    assert info == 0 and np.linalg.norm(A @ x - b) <= 1e-12 * np.linalg.norm(b)


def test_missing_extension_warns_once():
    code = ("import sys, warnings; sys.modules['asp_mpk._planner'] = None\n"
            "warnings.simplefilter('always')\n"
            "import numpy as np, asp_mpk\nfrom asp_mpk import gallery\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    A = gallery.poisson2d(12)\n"
            "    asp_mpk.MatrixPowers(A, 2); asp_mpk.MatrixPowers(2 * A, 3)\n"
            "print(sum('native plan builder' in str(x.message) for x in w))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "1"


def test_unchanged_matrix_is_not_analysed_again():
    A = gallery.poisson2d(20)
    m = analysed(A)
    assert analysed(A) is m
    assert analysed(A.copy()) is m            # same contents, another object
    assert analysed(A.tocoo()) is not m       # another format: its own entry
    B = A.copy()
    B.data[3] += 1.0
    assert analysed(B) is not m


@requires_compiler
@pytest.mark.parametrize("fmt", ["csr", "coo", "csc"])
def test_matrix_changed_in_place_gives_right_answers(fmt):
    A = gallery.variable_poisson2d(20, seed=1).asformat(fmt)
    x = np.random.default_rng(2).standard_normal(A.shape[0])

    def ref(M):
        return np.stack([x, M @ x, M @ (M @ x)])

    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), ref(A), rtol=1e-12)
    A.data *= 3.0                             # values changed in place
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), ref(A), rtol=1e-12)
    A.data[5] = -7.5                          # one value
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), ref(A), rtol=1e-12)
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    if fmt == "csr":                          # structure changed in place (same nnz)
        A.indices[A.indptr[3]] = (A.indices[A.indptr[3]] + 37) % A.shape[0]
        A.has_sorted_indices = False
        np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), ref(A), rtol=1e-12)
    b = np.ones(A.shape[0])
    xs, info = asp_mpk.cg(A.tocsr() + A.T.tocsr() + 50 * sp.identity(A.shape[0]), b,
                          rtol=1e-10)
    assert info == 0


@requires_compiler
def test_object_api_is_a_snapshot():
    A = gallery.poisson2d(15)
    x = np.random.default_rng(3).standard_normal(A.shape[0])
    mp = asp_mpk.MatrixPowers(A, 2)
    before = np.stack([x, A @ x, A @ (A @ x)])
    A.data *= 2.0
    np.testing.assert_allclose(mp(x), before, rtol=1e-12)
    x2, info = asp_mpk.cg(mp, np.ones(A.shape[0]), rtol=1e-10)   # cg reuses the object
    assert info == 0
    assert np.linalg.norm(mp.csr @ x2 - 1.0) <= 1e-10 * np.sqrt(A.shape[0])


def test_construction_compiles_nothing():
    A = gallery.poisson2d(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mp = asp_mpk.MatrixPowers(A, 4)
    assert mp.variant is None


@needs_native
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("basis", ["monomial", "recurrence"])
def test_sparse_products_match_the_reference(dtype, basis):
    A = gallery.variable_poisson2d(15, seed=3).astype(dtype)
    mp = asp_mpk.MatrixPowers(A, 4)
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((2, A.shape[0])).astype(dtype)
    coefs = rng.uniform(-1, 1, (3, 4))
    got, ref = (np.empty((2, 5, A.shape[0]), dtype=dtype) for _ in range(2))
    g_got, g_ref = np.empty((10, 10)), np.empty((10, 10))
    mp.sparse_products(xs, got, coefs, g_got, basis)
    mp._reference(xs, ref, coefs, g_ref, basis)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_allclose(g_got, g_ref, rtol=tol * 10)


@needs_native
@pytest.mark.parametrize("basis", ["monomial", "recurrence"])
def test_sparse_products_do_not_depend_on_the_thread_count(basis):
    """The first call runs them on every core, later ones on one less: each row's sum is one
    thread's, so the results are the same bits (a 100k-row matrix: several chunks each)."""
    A = gallery.banded_spd(100_000, 9, seed=2)
    mod = native.planner()
    xs = np.random.default_rng(3).standard_normal((2, A.shape[0]))
    coefs = np.random.default_rng(4).uniform(-1, 1, (3, 5))
    results = []
    for threads in (1, 2, 3, 8, 0):
        out = np.empty((2, 6, A.shape[0]))
        mod.csr_powers(A.indptr, A.indices, A.data, xs, out, coefs, basis == "monomial",
                       threads)
        results.append(out)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])
    ref = np.empty_like(results[0])
    asp_mpk.MatrixPowers(A, 5)._reference(xs, ref, coefs, None, basis)
    np.testing.assert_allclose(results[0], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@needs_native
def test_copies_are_new_equal_arrays():
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(3_000_017), rng.integers(0, 9, 1_500_001).astype(np.int32),
              np.arange(0), np.arange(12.0).reshape(3, 4)]
    copies = native.copies(*arrays)
    for a, c in zip(arrays, copies):
        assert c.dtype == a.dtype and c.shape == a.shape and c.flags.c_contiguous
        assert not np.shares_memory(a, c)
        np.testing.assert_array_equal(c, a)


def test_checksum_does_not_depend_on_threads_or_chunking():
    mod = native.planner()
    if mod is None:
        pytest.skip("the native plan builder is not built")
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(3_000_017), rng.integers(0, 9, 1_500_001).astype(np.int32),
              np.arange(0)]
    values = {mod.checksum(arrays, t) for t in (1, 2, 3, 8, 0)}
    assert len(values) == 1
    b = arrays[0].copy()
    b[-1] = -b[-1]                                   # last word of a later chunk
    assert mod.checksum([b, *arrays[1:]], 2) not in values
    # the same bytes split differently between arrays are another matrix
    x = arrays[0]
    assert mod.checksum([x[:1 << 17], x[1 << 17:]], 2) != mod.checksum([x[:1 << 18],
                                                                        x[1 << 18:]], 2)


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["poisson3d", "unstructured_spd", "elasticity"])
def test_native_cg_passes_equal_scipy_and_numpy(name, threads, monkeypatch):
    """The passes cg runs while its kernel compiles compute what SciPy's product and numpy do,
    for int32 and int64 indices and any thread count (rows split in fixed parts)."""
    from asp_mpk.cacg import _ScipyPasses

    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    base = as_csr(MATRICES[name]()).astype(np.float64)
    big = sp.block_diag([base] * (60_000 // base.shape[0] + 1), format="csr")  # split in 3
    for A in (big, sp.csr_matrix((big.data, big.indices.astype(np.int64),
                                  big.indptr.astype(np.int64)), shape=big.shape)):
        n = A.shape[0]
        rng = np.random.default_rng(n)
        p, x, r = rng.standard_normal((3, n))
        fast, ref = native.cg_passes(A), _ScipyPasses(A)
        q1, q2 = np.empty(n), np.empty(n)
        assert fast.cg_apply_dot(p, q1) == pytest.approx(ref.cg_apply_dot(p, q2), rel=1e-12)
        np.testing.assert_allclose(q1, q2, rtol=1e-13, atol=1e-13)
        x1, r1, x2, r2 = x.copy(), r.copy(), x.copy(), r.copy()
        assert fast.cg_update(0.3, x1, p, r1, q1) == pytest.approx(
            ref.cg_update(0.3, x2, p, r2, q2), rel=1e-12)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(r1, r2)
        fast.cg_direction(-0.7, r1, x1)
        ref.cg_direction(-0.7, r2, x2)
        np.testing.assert_allclose(x1, x2, rtol=1e-15)


@needs_native
def test_native_cg_passes_refuse_wrong_vectors():
    A = gallery.poisson2d(20)
    fast = native.cg_passes(A)
    n = A.shape[0]
    with pytest.raises(ValueError, match="p must be"):
        fast.cg_apply_dot(np.zeros(n - 1), np.zeros(n))
    with pytest.raises(ValueError, match="q must be a C-contiguous writeable"):
        q = np.zeros(n)
        q.flags.writeable = False
        fast.cg_apply_dot(np.zeros(n), q)
    with pytest.raises(ValueError, match="r must be"):
        fast.cg_update(0.1, np.zeros(n), np.zeros(n), np.zeros(n, np.float32), np.zeros(n))
    with pytest.raises(ValueError, match="p must be"):
        fast.cg_direction(0.1, np.zeros(n), np.zeros((2, n))[:, 0])
    assert native.cg_passes(A.astype(np.float32)) is None


@needs_native
def test_addresses_are_numpys_and_kernels_run_with_either(monkeypatch):
    a = np.arange(10.0)
    views = (a, a[3:], None, np.zeros((2, 3), dtype=np.int32)[1])
    expected = tuple(None if v is None else v.ctypes.data for v in views)
    assert native.address_function()(*views) == expected
    with pytest.raises(TypeError, match="numpy arrays or None"):
        native.address_function()([1.0])
    monkeypatch.setitem(native._STATE, "mod", None)
    assert native.address_function()(*views) == expected
    monkeypatch.setenv("ASP_MPK_COMPILE", "wait")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    A = gallery.variable_poisson2d(30, seed=2)      # kernels bound with numpy's addresses
    x = np.linspace(-1, 1, A.shape[0])
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-13)
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2)[2], A @ (A @ x), rtol=1e-12)


def test_doctor_reports_a_plan_builder_that_does_not_load(monkeypatch):
    """asp doctor asked whether the extension's file is there, not whether it loads: a build
    that cannot load (moved to a machine without the libgomp it links) was "[ok] native"
    while every call warned that the slow numpy plan builder runs."""
    import importlib

    from asp_mpk.plugin import asp_doctor_checks

    load = importlib.import_module

    def failing(name, *args):
        if name == "asp_mpk._planner":
            raise ImportError("libgomp.so.1: cannot open shared object file")
        return load(name, *args)
    monkeypatch.setattr(importlib, "import_module", failing)
    rows = {name: (ok, detail) for name, ok, detail in asp_doctor_checks()}
    ok, detail = rows["asp-mpk plan builder"]
    assert not ok and "libgomp.so.1" in detail


@needs_native
def test_plain_calls_leave_a_core_to_the_compile_of_their_kernel(monkeypatch):
    """The native CSR products of the calls made while the kernel compiled ran on every core:
    their threads spun while the compile held one, 50-100 ms a call of a 65,536-row matrix
    where SciPy took 0.7 (2 cores). They leave it a core now, and take every core again
    once it is done."""
    from asp_mpk.powers import MatrixPowers

    made = []   # for each call of a native CSR call: whether it leaves a core
    real = native.csr_powers_call

    def recording(csr, k, **kwargs):
        call = real(csr, k, **kwargs)
        lean = kwargs.get("leave_a_core", False)
        return lambda *args: made.append(lean) or call(*args)

    monkeypatch.setattr(native, "csr_powers_call", recording)
    A = gallery.poisson2d(16)
    x = np.random.default_rng(0).standard_normal(A.shape[0])
    ref = [x]
    for _ in range(3):
        ref.append(A @ ref[-1])
    mp = MatrixPowers(A, 3)
    monkeypatch.setattr(mp, "compiling", lambda **kind: True)
    monkeypatch.setattr(mp, "settling", lambda **kind: True)
    np.testing.assert_allclose(mp.powers(x), ref, rtol=1e-13)
    assert made[-1] is True
    monkeypatch.setattr(mp, "compiling", lambda **kind: False)
    np.testing.assert_allclose(mp.powers(x), ref, rtol=1e-13)
    assert made[-1] is False
