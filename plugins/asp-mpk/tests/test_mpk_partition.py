"""Partitioning, ghost closures, DIA analysis and basis helpers (no compiler needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from asp_mpk import gallery
from asp_mpk.analysis import analyse, compress_diagonals, dia_arrays, pattern_hash
from asp_mpk.bases import change_of_basis, chebyshev_coefs, leja_order, newton_coefs
from asp_mpk.partition import block_bounds, build_closures, gather_rows
from asp_mpk.validate import as_csr


def check_closure(csr, order, bounds, k, plan):
    """R_k = owned block, R_{j-1} ⊇ R_j ∪ adj(R_j), prefixes, local CSR = A restricted."""
    n = csr.shape[0]
    for b in range(plan.nblocks):
        m = plan.meta[b, :k + 1]
        glob = plan.glob[plan.gofs[b]:plan.gofs[b + 1]]
        assert len(glob) == m[0] and len(np.unique(glob)) == len(glob)
        assert np.all(np.diff(m) <= 0)                                 # shrinking levels
        owned = np.sort(order[bounds[b]:bounds[b + 1]])
        np.testing.assert_array_equal(np.sort(glob[:m[k]]), owned)
        for j in range(k, 0, -1):                                      # R_{j-1} ⊇ adj(R_j)
            rows = glob[:m[j]]
            nbrs = csr.indices[gather_rows(csr.indptr.astype(np.int64), rows)]
            assert np.isin(nbrs, glob[:m[j - 1]]).all()
        rp = plan.rp[plan.rofs[b]:plan.rofs[b + 1]]
        local = np.zeros((len(rp) - 1, m[0]))
        for i in range(len(rp) - 1):
            for t in range(rp[i], rp[i + 1]):
                local[i, plan.ci[t]] += plan.va[t]
        dense = csr[glob[:len(rp) - 1]][:, glob].toarray()
        if plan.sym:
            dense = np.triu(dense)
        np.testing.assert_array_equal(local, dense)
    assert plan.redundancy >= 0 and n > 0


@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_closures_on_grid_and_graph(sym, k):
    for A in (gallery.poisson2d(12), gallery.unstructured_spd(300, seed=1)):
        csr = as_csr(A)
        order = np.random.default_rng(0).permutation(csr.shape[0]) if sym else \
            np.arange(csr.shape[0])
        bounds = block_bounds(csr.shape[0], 5)
        plan = build_closures(csr, order, bounds, k, sym=sym)
        check_closure(csr, order, bounds, k, plan)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), density=st.floats(0.02, 0.3), nblocks=st.integers(1, 7),
       k=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_closure_property_random(n, density, nblocks, k, seed):
    A = sp.random(n, n, density=density, random_state=seed, format="csr") + sp.identity(n)
    csr = as_csr(A)
    order = np.random.default_rng(seed).permutation(n)
    bounds = block_bounds(n, nblocks)
    plan = build_closures(csr, order, bounds, k)
    check_closure(csr, order, bounds, k, plan)


def test_closure_size_guard():
    from asp_mpk.partition import ClosureTooLarge

    A = as_csr(sp.random(400, 400, density=0.05, random_state=1, format="csr")
               + sp.identity(400))
    with pytest.raises(ClosureTooLarge):
        build_closures(A, np.arange(400), block_bounds(400, 20), 6, max_copies=2.0)


def test_block_bounds():
    b = block_bounds(10, 3)
    assert b[0] == 0 and b[-1] == 10 and len(b) == 4 and np.all(np.diff(b) > 0)
    assert list(block_bounds(3, 10)) == [0, 1, 2, 3]


def test_analysis_dia_and_compression():
    A = as_csr(gallery.poisson2d(10))
    s = analyse(A)
    assert s.offsets == (-10, -1, 0, 1, 10) and s.symmetric and s.bandwidth == 10
    assert s.dia_compressible == 5
    D = dia_arrays(A, s.offsets)
    kinds, F, M = compress_diagonals(D, s.offsets)
    assert [k[0] for k in kinds] == ["const", "mask", "const", "mask", "const"]
    assert float.fromhex(kinds[2][1]) == 4.0
    rebuilt = np.zeros_like(D)
    for d, kd in enumerate(kinds):
        if kd[0] == "const":
            lo, hi = max(0, -s.offsets[d]), min(10 * 10, 100 - s.offsets[d])
            rebuilt[d, lo:hi] = float.fromhex(kd[1])
        elif kd[0] == "mask":
            rebuilt[d] = M[kd[1]] * float.fromhex(kd[2])
        else:
            rebuilt[d] = F[kd[1]]
    np.testing.assert_array_equal(rebuilt, D)
    U = as_csr(gallery.unstructured_spd(200, seed=3))
    su = analyse(U)
    assert su.offsets is None and su.rcm_bandwidth is not None
    assert su.rcm_bandwidth < su.bandwidth
    assert pattern_hash(U) != pattern_hash(A)
    # values do not change the pattern hash
    U2 = U.copy()
    U2.data *= 2
    assert pattern_hash(U2) == pattern_hash(U)


def _rebuild(kinds, F, M, offsets, n):
    R = np.zeros((len(offsets), n))
    for d, (kd, o) in enumerate(zip(kinds, offsets)):
        lo, hi = max(0, -o), min(n, n - o)
        if kd[0] == "const":
            R[d, lo:hi] = float.fromhex(kd[1])
        elif kd[0] == "mask":
            R[d] = M[kd[1]] * float.fromhex(kd[2])
        elif kd[0] == "mirror":
            R[d, lo:hi] = F[kd[1], lo + kd[2]:hi + kd[2]]
        else:
            R[d, lo:hi] = F[kd[1], lo:hi]
    return R


def test_a_symmetric_matrix_keeps_only_its_upper_diagonals():
    A = as_csr(gallery.variable_poisson2d(12, seed=1))
    s = analyse(A)
    assert s.symmetric and s.dia_compressible == 0
    D = dia_arrays(A, s.offsets)
    kinds, F, M = compress_diagonals(D, s.offsets)
    assert [k[0] for k in kinds] == ["mirror", "mirror", "full", "full", "full"]
    assert F.shape == (3, A.shape[0]) and [k[2] for k in kinds[:2]] == [-12, -1]
    np.testing.assert_array_equal(_rebuild(kinds, F, M, s.offsets, A.shape[0]), D)
    # one value changed below the diagonal: that diagonal is stored again, nothing else changes
    B = A.tolil()
    B[7, 6] = 123.0
    B = as_csr(B.tocsr())
    DB = dia_arrays(B, s.offsets)
    kb, FB, MB = compress_diagonals(DB, s.offsets)
    assert [k[0] for k in kb] == ["mirror", "full", "full", "full", "full"]
    np.testing.assert_array_equal(_rebuild(kb, FB, MB, s.offsets, B.shape[0]), DB)


def test_leja_and_change_of_basis():
    pts = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    z = leja_order(pts)
    assert z[0] == 5.0 and z[1] == 1.0 and sorted(z) == list(pts)
    A = gallery.poisson2d(6).toarray()
    x = np.random.default_rng(0).standard_normal(36)
    for coefs in (newton_coefs([1.0, 7.0, 4.0], 3), chebyshev_coefs(0.0, 8.0, 3)):
        V = [x]
        for j in range(3):
            y = coefs[0, j] * (A @ V[-1]) + coefs[1, j] * V[-1]
            if j:
                y += coefs[2, j] * V[-2]
            V.append(y)
        V = np.array(V).T
        B = change_of_basis(coefs, 3)
        np.testing.assert_allclose(A @ V[:, :3], V @ B[:, :3], atol=1e-12)


def test_the_plan_cache_keeps_the_plans_of_a_bounded_number_of_matrices(monkeypatch):
    """Plans of matrices no longer in use were kept up to 4 GiB: a process going through new
    matrices (a time-stepping loop with new values each step) grew by their plans, without
    bound below that.  Only the most recently used matrices' plans stay."""
    from collections import OrderedDict

    from asp_mpk import plan

    monkeypatch.setattr(plan, "_CACHE", OrderedDict())
    A = gallery.poisson2d(10).tocsr()
    kept = plan._MAX_MATRICES
    for i in range(kept + 10):
        for nblocks in (1, 2):   # two variants' plans per matrix
            got = plan.get_plan(A, "pattern", f"values-{i}", {"format": "naive",
                                                              "nblocks": nblocks})
            assert np.array_equal(got.data, A.data)
    matrices = {key[:3] for key in plan._CACHE}
    assert len(matrices) == kept
    assert ("pattern", f"values-{kept + 9}", "float64") in matrices
    assert ("pattern", "values-0", "float64") not in matrices
    assert len(plan._CACHE) == 2 * kept


def test_matrices_dropped_from_the_analysis_cache_take_their_plans_along(monkeypatch):
    """Analysed copies were capped by count alone and their plans kept apart (for sixteen
    matrices, up to 4 GiB), and ``clear_matrices`` left the plans: a loop over new large
    matrices held some fifty times one matrix after the user had deleted them all. The
    copies are capped by bytes too, a dropped one's plans go with it, and
    ``clear_matrices`` drops every plan."""
    from asp_mpk import matrix, plan

    def plans():
        return {key[1] for key in plan._CACHE}

    def analysed_with_a_plan(i):
        A = gallery.poisson2d(12).tocsr()
        A.data = A.data * (1.0 + i)
        m = matrix.analysed(A)
        plan.get_plan(m.csr, m.pattern, m.values, {"format": "naive", "nblocks": 1})
        return m

    monkeypatch.setattr(matrix, "MAX_MATRICES", 2)
    first, second = analysed_with_a_plan(0), analysed_with_a_plan(1)
    # the native short ways of calls of a matrix (by id(A)) kept its copy past any cap
    matrix._remember(matrix._PRODUCTS, 1, (None, None, None, None, first))
    matrix._remember(matrix._POWERS, (1, 4), (None, None, SimpleNamespace(matrix=first)))
    third = analysed_with_a_plan(2)
    assert plans() == {second.values, third.values}
    assert not matrix._PRODUCTS and not matrix._POWERS
    # a plan of a dropped copy, or built while one was dropped (a background specialisation
    # still at work), is not kept
    plan.get_plan(first.csr, first.pattern, first.values, {"format": "naive", "nblocks": 2})
    assert plans() == {second.values, third.values}
    real = plan.NaivePlan

    def dropping_meanwhile(*args):
        plan.forget(first.csr, None)
        return real(*args)

    monkeypatch.setattr(plan, "NaivePlan", dropping_meanwhile)
    plan.get_plan(third.csr, third.pattern, third.values, {"format": "naive", "nblocks": 3})
    assert len(plan._CACHE) == 2
    monkeypatch.setattr(plan, "NaivePlan", real)
    size = matrix._csr_bytes(third)
    monkeypatch.setattr(plan, "kept_bytes", lambda: int(1.5 * size))
    fourth = analysed_with_a_plan(3)
    assert list(matrix._MATRICES.values()) == [fourth]
    assert plans() == {fourth.values}
    matrix.clear_matrices()
    assert not plan._CACHE and not plan._DIA
