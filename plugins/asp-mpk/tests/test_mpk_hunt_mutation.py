"""A matrix changed between calls, by another thread at the worst moment, still gives SciPy's
answers on every later call: nothing the functional API remembers about A (the analysed copy
under A's checksum, A's native spmv) may pair one contents' watch or key with another
contents' copy or kernel."""

from __future__ import annotations

import numpy as np
import pytest

import asp_mpk
from asp_mpk import gallery, matrix, powers, writewatch
from pytest_asp import requires_compiler


def _powers(A, x, k):
    """``[x, A x, ..., A^k x]`` by SciPy's products."""
    out = [x]
    for _ in range(k):
        out.append(A @ out[-1])
    return np.array(out)


@requires_compiler
def test_spmv_does_not_keep_the_old_kernel_under_a_new_contents_watch(monkeypatch):
    """``spmv`` remembers A's native product after its kernel ran.  When another thread wrote
    A and had it recognised afresh meanwhile, A's write watch is the new contents' one: paired
    with the kernel of the old contents, every later ``spmv(A, x)`` returned the old matrix's
    product, silently, until A was written again."""
    if writewatch.watcher() is None:
        pytest.skip("this system cannot watch writes (userfaultfd WP_ASYNC, Linux >= 6.7)")
    monkeypatch.setenv("ASP_AUTOTUNE", "off")        # the default variant is the winner
    A = gallery.variable_poisson2d(300, seed=11).tocsr()   # 5 MB of CSR arrays: watched
    x = np.random.default_rng(12).standard_normal(A.shape[0])
    real = powers.remember_product
    meanwhile = []

    def after_the_kernel(B, kern, *rest):
        if not meanwhile:        # another thread, between this call's kernel and its end
            meanwhile.append(1)
            A.data[:] *= 2.0
            asp_mpk.matrix_powers(A, x, 2)           # recognises A's new contents
        real(B, kern, *rest)

    monkeypatch.setattr(powers, "remember_product", after_the_kernel)
    for _ in range(4):
        asp_mpk.spmv(A, x)
    assert meanwhile, "spmv never remembered a native product"
    monkeypatch.setattr(powers, "remember_product", real)
    for _ in range(3):                               # the writer is done: A's product now
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
        y = np.empty_like(x)
        np.testing.assert_allclose(asp_mpk.spmv(A, x, out=y), A @ x, rtol=1e-12)


@pytest.mark.parametrize("case", ["watched", "small", "replaced"])
def test_a_write_while_a_first_call_copies_a_is_not_kept_for_the_old_contents(case,
                                                                              monkeypatch):
    """A first call checksums A, then copies it.  Another thread writing A (or replacing its
    data array) in between left a copy of the new contents under the old contents' key: once
    A held the old values again, ``matrix_powers``, ``spmv`` and ``cg`` computed with the new
    ones.  ``watched``: the write watch vouches for A between checksum and copy; ``small``:
    under the watch's threshold, checksummed again; ``replaced``: ``A.data`` is another
    array after the copy."""
    if case != "small" and writewatch.watcher() is None:
        pytest.skip("this system cannot watch writes (userfaultfd WP_ASYNC, Linux >= 6.7)")
    m = 40 if case == "small" else 300
    A = gallery.variable_poisson2d(m, seed=13).tocsr()
    assert (sum(a.nbytes for a in (A.data, A.indices, A.indptr)) >= writewatch.MIN_BYTES) \
        == (case != "small")
    x = np.random.default_rng(14).standard_normal(A.shape[0])
    old = A.data
    old_values = old.copy()
    real = matrix.as_csr

    def copy_meanwhile(B, **kw):     # another thread, between the checksum and the copy
        if B is A:
            if case == "replaced":
                A.data = 2.0 * old
            else:
                A.data[:] = 2.0 * old_values
        return real(B, **kw)

    monkeypatch.setattr(matrix, "as_csr", copy_meanwhile)
    racy = asp_mpk.matrix_powers(A, x, 2)            # either contents' powers: a race
    monkeypatch.setattr(matrix, "as_csr", real)
    assert np.allclose(racy[1], A @ x) or np.allclose(racy[1], 0.5 * (A @ x))
    np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), _powers(A, x, 2), rtol=1e-10)
    if case == "replaced":
        A.data = old                                 # the old values, back again
    else:
        A.data[:] = old_values
    assert np.array_equal(A.data, old_values)
    for _ in range(2):
        np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), _powers(A, x, 2),
                                   rtol=1e-10)
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-10)
