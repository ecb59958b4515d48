"""Write watching (userfaultfd write-protection, asynchronous) tells the functional API that a
matrix was not written since its checksum, and never misses a write: every way the bytes can
change is either seen or makes the watch decline."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest
import scipy.sparse as sp

import asp_mpk
from asp_mpk import gallery, matrix, writewatch
from asp_mpk.matrix import analysed, clear_matrices
from pytest_asp import requires_compiler

PAGE = mmap.PAGESIZE


@pytest.fixture
def watch():
    w = writewatch.watcher()
    if w is None:
        pytest.skip("this system cannot watch writes (userfaultfd WP_ASYNC, Linux >= 6.7)")
    return w


def _interior(a: np.ndarray, offset_pages: int) -> int:
    """Index of an element in the ``offset_pages``-th whole page inside ``a``."""
    first = -(-a.ctypes.data // PAGE) * PAGE
    return (first + offset_pages * PAGE - a.ctypes.data) // a.itemsize + 3


def test_no_write_means_unchanged_and_any_write_is_seen(watch):
    a = np.random.default_rng(0).random(3_000_000)
    b = np.arange(1_000_000, dtype=np.int32)
    watched = watch.watch((a, b))
    assert watched is not None and watched.pages
    assert watch.unchanged(watched, (a, b)) and watch.unchanged(watched, (a, b))
    rng = np.random.default_rng(1)
    npages = a.nbytes // PAGE - 1
    for trial in range(60):
        watched = watch.watch((a, b))
        i = _interior(a, int(rng.integers(0, npages)))
        if trial % 3 == 0:
            a[i] = a[i]                               # same value: still a write, still seen
        elif trial % 3 == 1:
            a[i:i + 2] += 1.0
        else:
            ctypes.memmove(a.ctypes.data + 8 * i, b"\x01" * 8, 8)
        assert not watch.unchanged(watched, (a, b))
    watched = watch.watch((a, b))
    b[_interior(b, 10)] += 1
    assert not watch.unchanged(watched, (a, b))


def test_partial_pages_at_the_ends_are_compared_byte_for_byte(watch):
    a = np.random.default_rng(0).random(600_000)
    for index in (0, 1, -1, -2):
        watched = watch.watch((a,))
        a[index] += 1.0
        assert not watch.unchanged(watched, (a,))
    watched = watch.watch((a,))
    small = np.arange(10.0)                           # no whole page at all: edges only
    w2 = watch.watch((small,))
    assert w2 is not None and not w2.pages and watch.unchanged(w2, (small,))
    small[4] = -1.0
    assert not watch.unchanged(w2, (small,))
    assert watch.unchanged(watched, (a,))


def test_other_arrays_or_a_changed_layout_are_not_the_watched_ones(watch):
    a = np.random.default_rng(0).random(1_000_000)
    watched = watch.watch((a,))
    assert watch.unchanged(watched, (a,))
    assert not watch.unchanged(watched, (a.copy(),))          # another buffer, same bytes
    assert not watch.unchanged(watched, (a.reshape(1000, 1000),))
    assert not watch.unchanged(watched, (a.view(np.int64),))  # same bytes, another dtype
    assert not watch.unchanged(watched, (a, a))
    assert watch.unchanged(watched, (a,))


def test_a_write_is_seen_by_every_entry_watching_the_array(watch):
    a = np.random.default_rng(0).random(2_000_000)
    first, second = watch.watch((a,)), watch.watch((a,))
    a[_interior(a, 5)] = 0.0
    assert not watch.unchanged(first, (a,))                 # this check protects the page again...
    assert not watch.unchanged(second, (a,))                # ...but the other entry still sees it
    again = watch.watch((a,))
    assert watch.unchanged(again, (a,))
    for w in (first, second, again):
        watch.release(w)


def test_memory_another_process_could_write_is_not_watched(watch, tmp_path):
    path = tmp_path / "m.bin"
    shared = np.memmap(path, dtype=np.float64, mode="w+", shape=(1_000_000,))
    private = np.memmap(path, dtype=np.float64, mode="c", shape=(1_000_000,))
    anon_shared = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_SHARED)
    for arr in (shared, private, np.frombuffer(anon_shared, dtype=np.float64)):
        assert watch.watch((arr,)) is None
    del shared, private


@pytest.fixture(params=["fast scan", "full scan"])
def scan(request, monkeypatch):
    """Both page checks of the native module: the kernel's written-pages fast path plus
    mincore (Linux 6.10 and later), and the full scan of every page's categories."""
    monkeypatch.setattr(writewatch, "FAST_SCAN", request.param == "fast scan")
    return request.param


@pytest.mark.parametrize("size", [PAGE, 2 << 20])
def test_pages_dropped_without_a_write_count_as_changed(watch, scan, size):
    """A dropped page reads as zeros: changed, though nothing wrote it.  2 MiB aligned is a
    whole huge page where the array has one: the kernel then clears its page-table entry,
    a hole that the fast scan of kernels without the 2026 fix reports as unwritten (the
    native check's mincore sees it)."""
    a = np.ones(4_000_000)                             # 32 MB: huge pages where the system has them
    watched = watch.watch((a,))
    assert watched.check is not None and watch.unchanged(watched, (a,))
    page = -(-(a.ctypes.data + 7 * PAGE) // size) * size
    assert page + size <= a.ctypes.data + a.nbytes
    assert ctypes.CDLL(None).madvise(ctypes.c_void_p(page), size, 4) == 0   # MADV_DONTNEED
    assert a[(page - a.ctypes.data) // 8 + 1] == 0.0
    assert not watched.check.clean((a,))
    assert not watch.unchanged(watched, (a,))


def test_memory_mapped_afresh_in_place_counts_as_changed(watch):
    """Freed and mapped again at the same address (zero pages, no write anywhere): the new
    mapping is not registered, so the scan refuses it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    size, rw, private_anon, fixed = 64 * PAGE, 3, 0x02 | 0x20, 0x10
    addr = libc.mmap(None, size, rw, private_anon, -1, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    try:
        a = np.ctypeslib.as_array((ctypes.c_double * (size // 8)).from_address(addr))
        a[:] = 1.0
        watched = watch.watch((a,))
        assert watched is not None and watch.unchanged(watched, (a,))
        assert libc.mmap(addr, size, rw, private_anon | fixed, -1, 0) == addr
        assert a[100] == 0.0 and not watch.unchanged(watched, (a,))
        watch.release(watched)
    finally:
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))


def test_release_unregisters_what_nothing_else_watches(watch):
    a = np.ones(1_000_000)
    w1, w2 = watch.watch((a,)), watch.watch((a,))
    ((pages, _),) = w1.pages
    users = pages.users                               # earlier tests' arrays may share it
    watch.release(w1)
    assert pages.users == users - 1 and watch.unchanged(w2, (a,))
    watch.release(w2)
    assert pages.users == users - 2
    assert ((pages.start, pages.end) in watch._ranges) == (pages.users > 0)


def test_a_forked_child_does_not_trust_its_parents_watch(watch):
    a = np.ones(2_000_000)
    watched = watch.watch((a,))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - the child reports through the pipe
        try:
            child = writewatch.watcher()
            ok = not watch.unchanged(watched, (a,))         # the parent's watch: not trusted
            if child is not None:
                mine = child.watch((a,))
                a[_interior(a, 3)] = 2.0
                ok = ok and mine is not None and not child.unchanged(mine, (a,))
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert watch.unchanged(watched, (a,))             # the child's write was to its own copy


def test_watching_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("ASP_MPK_WATCH_WRITES", "0")
    assert writewatch._open() is None


@pytest.fixture
def counted_checksums(monkeypatch):
    """The functional API's checksums of A (not the analysis's own)."""
    calls = []
    real = matrix.input_key

    def input_key(A, dtype=None):
        calls.append(A.format)
        return real(A, dtype)

    monkeypatch.setattr(matrix, "input_key", input_key)
    clear_matrices()
    yield calls
    clear_matrices()


def test_an_unchanged_watched_matrix_is_recognised_without_reading_it(watch, counted_checksums):
    A = gallery.poisson2d(300)                        # 3.6 MB of CSR arrays: watched
    m = analysed(A)
    assert counted_checksums == ["csr"]
    for _ in range(3):
        assert analysed(A) is m
    assert counted_checksums == ["csr"]               # no read of A on a hit
    A.data[A.nnz // 2] *= 1.0                         # written, same bytes: checksum, same entry
    assert analysed(A) is m and len(counted_checksums) == 2


@requires_compiler
def test_a_small_matrix_is_watched_from_its_second_call(watch, counted_checksums, monkeypatch):
    """Arrays under ``MIN_BYTES`` were checksummed on every call, in Python around the native
    checksum, which made ``spmv`` of a 256-row matrix cost 28 us where its kernel takes 2 and
    SciPy 4.  They are watched once seen again (a matrix used once pays no watch), and their
    writes are seen like a large matrix's."""
    tries = []
    real = writewatch.WriteWatch.watch
    monkeypatch.setattr(writewatch.WriteWatch, "watch",
                        lambda self, arrays: tries.append(1) or real(self, arrays))
    A = gallery.poisson2d(40)
    assert sum(a.nbytes for a in (A.data, A.indices, A.indptr)) < writewatch.MIN_BYTES
    x = np.random.default_rng(2).standard_normal(A.shape[0])
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert len(counted_checksums) == 1 and not tries   # seen once: not watched
    for _ in range(4):
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert len(counted_checksums) == 2 and len(tries) == 1
    for index in (A.nnz // 2, 0, -1):                 # inside a page, and in the partial ones
        A.data[index] += 1.0
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
        np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2)[2], A @ (A @ x), rtol=1e-12)


@requires_compiler
def test_a_watched_matrix_changed_in_place_gives_right_answers(watch, counted_checksums):
    A = gallery.variable_poisson2d(300, seed=1).tocsr()
    x = np.random.default_rng(2).standard_normal(A.shape[0])

    def check():
        ref = np.stack([x, A @ x, A @ (A @ x)])
        np.testing.assert_allclose(asp_mpk.matrix_powers(A, x, 2), ref, rtol=1e-12)
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)

    check()
    check()
    A.data[A.nnz // 3] = -7.5                         # one value inside the array
    check()
    A.data[-1] += 2.0                                 # in the partial page at its end
    check()
    row = 1000
    A.indices[A.indptr[row]] = (A.indices[A.indptr[row]] + 37) % A.shape[0]
    A.has_sorted_indices = False                      # structure changed in place
    check()
    reads = len(counted_checksums)
    check()
    assert len(counted_checksums) == reads            # unchanged again: watched, not read


@requires_compiler
@pytest.mark.parametrize("same_bytes", [False, True])
def test_a_matrix_written_before_every_call_is_checksummed_not_watched(
        watch, counted_checksums, monkeypatch, same_bytes):
    """Arrays written before each call are checksummed, and watched again only at the streaks
    of ``REWATCH_STREAKS``: a new watch each call cost more than the checksum, also when the
    bytes written were the ones there (``A.data[:] = values``: the checksum found the same
    contents, which watched them again at once).  Left alone, they are watched again within
    64 calls and read no more."""
    A = sp.csr_matrix(gallery.poisson2d(300))
    x = np.ones(A.shape[0])
    tries = []
    real = writewatch.WriteWatch.watch
    monkeypatch.setattr(writewatch.WriteWatch, "watch",
                        lambda self, arrays: tries.append(1) or real(self, arrays))
    i = _interior(A.data, 3)
    for step in range(40):
        A.data[i] = A.data[i] if same_bytes else A.data[i] + 1.0
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    from asp_mpk.matrix import _SEEN

    (seen,) = _SEEN.values()
    assert seen.watched is None                       # volatile: each write would fault
    assert len(counted_checksums) == 40
    assert len(tries) == 1 + len({1, 4, 8, 16, 32})   # the streaks it was watched at
    for _ in range(64):                               # left alone again: watched again
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    (seen,) = _SEEN.values()
    assert seen.watched is not None and len(counted_checksums) == 40 + 64 - 40 + 1


def test_memory_that_cannot_be_watched_is_not_tried_again(watch, counted_checksums,
                                                          tmp_path, monkeypatch):
    A = gallery.poisson2d(300).tocsr()
    data = np.memmap(tmp_path / "data.bin", dtype=A.dtype, mode="w+", shape=A.data.shape)
    data[:] = A.data
    A.data = data                                     # values in a shared file mapping
    tries = []
    real = writewatch.WriteWatch.watch
    monkeypatch.setattr(writewatch.WriteWatch, "watch",
                        lambda self, arrays: tries.append(1) or real(self, arrays))
    for _ in range(4):
        analysed(A)
    assert len(tries) == 1 and len(counted_checksums) == 4


@requires_compiler
def test_spmv_takes_the_short_way_and_still_sees_writes(watch, counted_checksums, monkeypatch):
    """Once spmv has its tuned kernel, a watched matrix goes the short way (``vouched``: the
    native check only, no checksum, no :func:`analysed`); a write in place still leads to the
    new matrix's product."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")        # the default variant is the winner
    A = gallery.variable_poisson2d(300, seed=3).tocsr()
    x = np.random.default_rng(4).standard_normal(A.shape[0])
    for _ in range(3):
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    m = analysed(A)
    assert m.spmv_kernel is not None and m.spmv_kernel.has_spmv
    slow = []
    monkeypatch.setattr(matrix, "_recognise",
                        lambda *args, real=matrix._recognise: slow.append(1) or real(*args))
    reads = len(counted_checksums)
    y = np.empty_like(x)
    assert asp_mpk.spmv(A, x, out=y) is y
    np.testing.assert_allclose(y, A @ x, rtol=1e-12)
    assert not slow and len(counted_checksums) == reads
    A.data[A.nnz // 2] = 11.0                         # a write: the short way declines
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert slow and analysed(A) is not m and len(counted_checksums) == reads + 1
    x32 = x.astype(np.float32)                        # x to convert: the checked way
    np.testing.assert_allclose(asp_mpk.spmv(A, x32), A @ x32.astype(np.float64), rtol=1e-6)


@requires_compiler
def test_spmv_checks_a_vouched_matrix_once_before_its_kernel_is_tuned(watch, monkeypatch):
    """Before spmv has a product kernel (compiling, or a winner without one), a matrix the
    native check vouched for is not checked a second time through :func:`analysed`."""
    A = gallery.poisson2d(300).tocsr()
    x = np.ones(A.shape[0])
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    m = analysed(A)
    monkeypatch.setattr(m, "spmv_kernel", None)
    monkeypatch.setattr(m.powers(1), "_winner", lambda *args: None)   # no product kernel
    slow = []
    monkeypatch.setattr(matrix, "_recognise",
                        lambda *args, real=matrix._recognise: slow.append(1) or real(*args))
    for _ in range(3):
        np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert not slow


def _native_spmv(A, x):
    """Call spmv until A's native short way exists (the tuned kernel compiles in the
    background), then return it."""
    import time

    from asp_mpk import background

    deadline = time.monotonic() + 120
    while matrix.product(A) is None and time.monotonic() < deadline:
        asp_mpk.spmv(A, x)
        if background.busy():
            time.sleep(0.02)
    fast = matrix.product(A)
    assert fast is not None, "no native spmv for a watched matrix with a tuned kernel"
    return fast


@requires_compiler
def test_spmv_of_a_watched_matrix_is_one_native_call(watch, monkeypatch):
    """Once A has its tuned product kernel, ``spmv(A, x)`` and ``spmv(A, x, out=y)`` are one
    native call (no Python-level lookup of A), with SciPy's result."""
    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    A = gallery.variable_poisson2d(300, seed=5).tocsr()
    x = np.random.default_rng(6).standard_normal(A.shape[0])
    _native_spmv(A, x)
    from asp_mpk import powers

    python_path = []
    monkeypatch.setattr(powers, "vouched",
                        lambda *args, real=powers.vouched: python_path.append(1) or real(*args))
    y = np.full_like(x, np.nan)
    assert asp_mpk.spmv(A, x, out=y) is y
    np.testing.assert_allclose(y, A @ x, rtol=1e-12)
    z = asp_mpk.spmv(A, x)
    assert z is not y and z.shape == x.shape and z.dtype == x.dtype
    np.testing.assert_allclose(z, A @ x, rtol=1e-12)
    assert not python_path


@requires_compiler
def test_the_native_spmv_leaves_what_it_cannot_take_to_the_python_path(watch, monkeypatch):
    """Another matrix type or shape over the same arrays, x or out that are not plain (n,)
    arrays of the kernel's dtype, out overlapping x, inf in x, A written in place: each gives
    exactly what the Python path gives (SciPy's result or its error)."""
    import scipy.sparse as sp

    monkeypatch.setenv("ASP_AUTOTUNE", "off")
    A = gallery.variable_poisson2d(300, seed=7).tocsr()
    n = A.shape[0]
    x = np.random.default_rng(8).standard_normal(n)
    fast = _native_spmv(A, x)
    declined = []

    def spy(B, xv, out):                              # A's native spmv, asked for every matrix
        y = fast(B, xv, out)
        declined.append(y is None)
        return y

    from asp_mpk import powers

    real_product = powers.product
    monkeypatch.setattr(powers, "product",            # while A's watch is current
                        lambda B: None if real_product(A) is None else spy)
    ref = A @ x
    strided = np.empty(2 * n)[::2]
    strided[:] = x
    np.testing.assert_allclose(asp_mpk.spmv(A, strided), ref, rtol=1e-12)
    np.testing.assert_allclose(asp_mpk.spmv(A, x[:, None]), ref[:, None], rtol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(asp_mpk.spmv(A, x32), A @ x32.astype(np.float64), rtol=1e-6)
    as_array = sp.csr_array((A.data, A.indices, A.indptr), shape=A.shape)   # same arrays
    np.testing.assert_allclose(asp_mpk.spmv(as_array, x), ref, rtol=1e-12)
    assert declined == [True] * 4                     # the csr_array: another type
    for bad in (x.copy(), np.empty(n, dtype=np.float32), np.empty(n + 1)):
        if bad.dtype == x.dtype and bad.shape == x.shape:
            bad.flags.writeable = False
        with pytest.raises(ValueError, match="out must be"):
            asp_mpk.spmv(A, x, out=bad)
    with pytest.raises(ValueError, match="out must be"):
        asp_mpk.spmv(A, x, out=x)                     # overlapping x
    assert declined == [True] * 8
    bad_x = x.copy()
    bad_x[5] = np.inf
    with pytest.raises(ValueError):
        asp_mpk.spmv(A, bad_x, out=np.empty(n))
    assert declined == [True] * 9                     # the product saw inf, then declined
    A.data[A.nnz // 2] = 3.25                         # written in place
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert declined == [True] * 10
    np.testing.assert_allclose(asp_mpk.spmv(A, x), A @ x, rtol=1e-12)
    assert declined == [True] * 10                    # the watch moved on: not asked again
    monkeypatch.setattr(powers, "product", real_product)
    renewed = _native_spmv(A, x)                      # A's new kernel, and its native spmv
    assert renewed is not fast
    np.testing.assert_allclose(renewed(A, x, None), A @ x, rtol=1e-12)
