"""Analysed matrices, and how the functional API recognises one it has seen.

:class:`AnalysedMatrix` is a validated canonical copy of A with everything computed once per
matrix: the analysis, orderings, spectral bounds, and the :class:`~asp_mpk.powers.MatrixPowers`
objects (with their tuned kernels) for each depth k.  :func:`analysed` returns the one for a
user's matrix.  It recognises a matrix by the format, shape and dtype of its arrays plus a
position-dependent checksum of their bytes, computed natively at memory speed
(:func:`asp_mpk.native.checksum`, > 10 GB/s), and a matrix whose values or structure changed in
place since the last call is analysed afresh instead of reusing stale plans.  No copy,
validation or analysis happens on a hit.

Even at memory speed, reading A costs more than a compressed kernel that does not read A's
arrays at all, so arrays seen before (same buffers, shapes and dtypes) skip the checksum when
the operating system says none of their pages was written since it was taken
(:mod:`asp_mpk.writewatch`); where it cannot say, the checksum runs.

A matrix seen for the first time is checksummed, then copied; another thread writing it in
between would leave a copy of the new contents under the old contents' key.  So the copy is
kept only when the write watch (or, for small arrays, a second checksum) says A did not change
meanwhile.  Large arrays that cannot be watched are not read a second time for this: there a
write racing with a first call can still be served for the old contents later.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from asp_mpk import native, plan, writewatch
from asp_mpk.validate import as_csr, as_is
from asp_mpk.writewatch import Watched, watcher

if TYPE_CHECKING:
    from asp_mpk.powers import MatrixPowers

__all__ = ["AnalysedMatrix", "analysed", "seen_before", "explain_first_sighting", "vouched",
           "product", "remember_product", "powers_call", "remember_powers", "input_key",
           "clear_matrices"]

#: analysed matrices kept for the functional API (least recently used dropped first)
MAX_MATRICES = 8
#: arrays found written (or not watched) this many checks in a row are checksummed instead
#: of watched (after each watched write the next write to every page of it costs a page fault)
VOLATILE_STREAK = 2
#: ... and watched again on the checks of these streaks, and of every multiple of the last
REWATCH_STREAKS = (4, 8, 16, 32, 64)


class AnalysedMatrix:
    """A validated canonical CSR copy of A plus its analysis, shared by every depth k."""

    def __init__(self, csr: Any) -> None:
        self.csr = csr
        self.dtype = csr.dtype
        self.shape = csr.shape
        self.n = csr.shape[0]
        self._structure: Any = None
        self._structure_lock = threading.Lock()
        self._orders: dict[str, np.ndarray] = {}
        self._gershgorin: tuple[float, float] | None = None
        self._powers: dict[int, MatrixPowers] = {}
        self._lock = threading.Lock()
        #: the tuned k = 1 kernel with a product entry point, once :func:`asp_mpk.spmv` found it
        #: faster than the CSR product
        self.spmv_kernel: Any = None
        #: whether :func:`asp_mpk.spmv` runs the CSR product (:meth:`csr_product`) rather than
        #: the tuned kernel, as a race of the two decided (None: not raced yet)
        self.spmv_native: bool | None = None
        #: the CSR product :func:`asp_mpk.spmv` runs natively while that kernel is specialised
        #: (:meth:`csr_product`)
        self._csr_product: Any = None
        #: the :func:`input_key` of the contents this is a copy of (set by :func:`analysed`;
        #: None: not known), so that a write watch is only ever paired with this matrix's
        #: kernels while it vouches for those contents (:func:`remember_product`)
        self.key: tuple | None = None

    @property
    def values(self) -> str:
        """Fingerprint of the stored values (part of every specialisation key), made on first
        use: only the specialisation needs it.  Not ``functools.cached_property``: on Python
        3.11 that holds one lock for every matrix while it hashes (on a background thread), and
        a child forked meanwhile waited for that lock forever."""
        found: str | None = self.__dict__.get("_values")
        if found is None:
            from asp_mpk.analysis import values_hash

            found = self.__dict__["_values"] = values_hash(self.csr)
        return found

    @property
    def structure(self) -> Any:
        """The analysis (:func:`asp_mpk.analysis.analyse`), made on first use: only the
        specialisation needs it, and that runs in the background, so a first call goes from
        validation straight to the products."""
        if self._structure is None:
            from asp_mpk.analysis import analyse

            with self._structure_lock:
                if self._structure is None:
                    self._structure = analyse(self.csr)
        return self._structure

    @property
    def pattern(self) -> str:
        """Hash of the sparsity pattern (part of every specialisation key)."""
        return self.structure.pattern

    @property
    def values_vary(self) -> bool:
        """Whether this process has specialised matrices of this pattern with
        :data:`VARYING_AFTER` or more different values, this one counted (decided once per
        matrix): then constant values are not compiled into its kernels, which would take a
        compile, and a library kept loaded, for every matrix of a stream such as ``A * dt``
        with a new ``dt`` each step."""
        found: bool | None = self.__dict__.get("_values_vary")
        if found is None:
            found = self.__dict__["_values_vary"] = _values_vary(self.pattern, self.values)
        return found

    def order(self, kind: str, block: int = 1) -> np.ndarray:
        """Row ordering for the partitioner: ``natural`` or ``rcm``; of the block rows of the
        ``block`` x ``block`` BCSR view when ``block`` > 1."""
        with self._lock:
            key = f"{kind}/{block}"
            if key not in self._orders:
                nrows = self.n // block
                if kind == "rcm" and block == 1 and self.structure.rcm_order is not None:
                    self._orders[key] = self.structure.rcm_order
                elif kind == "rcm":
                    from scipy.sparse.csgraph import reverse_cuthill_mckee

                    from asp_mpk.plan import block_graph

                    graph = self.csr if block == 1 else block_graph(self.csr, block)[0]
                    perm = reverse_cuthill_mckee(graph, symmetric_mode=self.structure.symmetric)
                    self._orders[key] = np.asarray(perm, dtype=np.int64)
                else:
                    self._orders[key] = np.arange(nrows, dtype=np.int64)
            return self._orders[key]

    def gershgorin(self) -> tuple[float, float]:
        """Gershgorin bounds (lower, upper) of A's spectrum, computed once."""
        with self._lock:
            if self._gershgorin is None:
                d = self.csr.diagonal()
                rad = np.asarray(abs(self.csr).sum(axis=1)).ravel() - np.abs(d)
                self._gershgorin = (float(np.min(d - rad)), float(np.max(d + rad)))
            return self._gershgorin

    def csr_product(self) -> native.CSRProduct | None:
        """The :class:`~asp_mpk.native.CSRProduct` of this matrix (made once; None without
        the extension)."""
        if self._csr_product is None:
            self._csr_product = native.csr_product(self.csr)
        return self._csr_product

    def powers(self, k: int) -> MatrixPowers:
        """The :class:`MatrixPowers` object of depth ``k`` (created once; it keeps its tuned
        kernels, so later calls go straight to the winner)."""
        from asp_mpk.powers import SPECIALISE_AFTER_S, MatrixPowers

        mp = self._powers.get(k)   # a hit takes no lock: entries are only ever added
        if mp is None:
            mp = MatrixPowers(self, k, tune=False, specialise_after=SPECIALISE_AFTER_S)
            with self._lock:
                mp = self._powers.setdefault(k, mp)
        return mp


_LOCK = threading.Lock()
_MATRICES: OrderedDict[tuple, AnalysedMatrix] = OrderedDict()
#: contents met once by :func:`seen_before` and not analysed (their keys, the latest last)
_ONCE: OrderedDict[tuple, None] = OrderedDict()
#: different values seen with one sparsity pattern from which on they count as varying
VARYING_AFTER = 3
#: per sparsity pattern (the most recent few), the values fingerprints of its matrices
#: specialised so far, up to :data:`VARYING_AFTER` of them
_VALUES: OrderedDict[str, set[str]] = OrderedDict()


def _values_vary(pattern: str, values: str) -> bool:
    """Count ``values`` among the values seen with ``pattern``; whether they vary now (see
    :attr:`AnalysedMatrix.values_vary`)."""
    with _LOCK:
        seen = _VALUES.setdefault(pattern, set())
        _VALUES.move_to_end(pattern)
        if len(seen) < VARYING_AFTER:
            seen.add(values)
        while len(_VALUES) > 8 * MAX_MATRICES:
            _VALUES.popitem(last=False)
        return len(seen) >= VARYING_AFTER


#: the attributes that hold a sparse matrix of each format with flat arrays
_ARRAYS: dict[Any, tuple[str, ...]] = {
    "csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
    "bsr": ("data", "indices", "indptr"), "coo": ("data", "row", "col"),
    "dia": ("data", "offsets")}


def _arrays(A: Any, fmt: str | None = None) -> tuple[np.ndarray, ...] | None:
    """The arrays that hold a sparse matrix of a known format (None: lil, dok, ...); ``fmt``:
    ``A.format`` when the caller has read it (a property: it costs on a hot path)."""
    names = _ARRAYS.get(getattr(A, "format", None) if fmt is None else fmt)
    return None if names is None else tuple(getattr(A, name) for name in names)


def input_key(A: Any, dtype: Any = None) -> tuple | None:
    """Identity of a matrix's current contents converted to ``dtype`` (default: its own):
    format, shape, dtypes, array shapes and the checksum of the arrays' bytes (None for formats
    without flat arrays).  ``dtype=None`` and A's own dtype give the same key, so
    :func:`~asp_mpk.powers.matrix_powers` and :func:`~asp_mpk.cacg.cg` (which asks for
    float64) share one analysed matrix and its MatrixPowers objects."""
    arrays = _arrays(A)
    if arrays is None:
        return None
    target = np.dtype(A.dtype if dtype is None else dtype)
    return (A.format, A.shape, str(A.dtype), str(target),
            tuple((a.shape, a.dtype.str) for a in arrays), native.checksum(*arrays))


def analysed(A: Any, dtype: Any = None) -> AnalysedMatrix:
    """The :class:`AnalysedMatrix` of ``A`` (converted to ``dtype`` when given): reused while
    A's contents are unchanged, else validated, copied and analysed now."""
    m = _analysed(A, dtype, direct=False)
    assert m is not None, "only a direct look answers None"
    return m


def seen_before(A: Any) -> AnalysedMatrix | None:
    """:func:`analysed` of ``A``, or None the first time the functional API meets A's contents
    when A is a canonical CSR matrix its products can read as it is
    (:func:`~asp_mpk.validate.as_is`): the caller computes on A's own arrays, and nothing is
    copied, analysed or specialised; a second call with these contents analyses them.  A matrix
    used once (a product of each new matrix, or of values changed in place before each call)
    cost 0.2 ms of copies and set-up around 4 us of products on 256 rows."""
    return _analysed(A, None, direct=True)


def explain_first_sighting(call: str, A: Any) -> None:
    """Under ``asp explain``, a report for a call that ran over A's own arrays because its
    contents were met the first time (:func:`seen_before`): nothing was specialised, and the
    run printed "no kernel was specialised" without saying why."""
    from asp_core import recording

    if not recording.is_recording():
        return
    from asp_core.context import SpecializationContext

    ctx = SpecializationContext("mpk", None, key=("contents met the first time", A.shape),
                                kernel_name=call)
    ctx.decide("first sighting", "computed over A's own arrays, not specialised",
               reason="a matrix used once is not copied, analysed or compiled; the next call "
                      "with the same contents analyses it, and its kernel is specialised once "
                      "its calls have taken asp_mpk.powers.SPECIALISE_AFTER_S (cg: once a "
                      "solve takes asp_mpk.cacg.FIRST_SOLVE_SECONDS)")
    recording.add_context(ctx, call)


def _first_sighting(key: tuple) -> bool:
    """Whether contents ``key`` are met for the first time (remembered for the next look)."""
    with _LOCK:
        if key in _ONCE:
            del _ONCE[key]
            return False
        _ONCE[key] = None
        while len(_ONCE) > 2 * MAX_MATRICES:
            _ONCE.popitem(last=False)
    return True


def _analysed(A: Any, dtype: Any, *, direct: bool) -> AnalysedMatrix | None:
    if isinstance(A, AnalysedMatrix):
        if dtype is None or A.dtype == dtype:
            return A
        A = A.csr
    fmt = getattr(A, "format", None)
    arrays = _arrays(A, fmt)   # before the checksum: _copied_as_keyed compares them after
    key = _recognise(A, dtype, fmt, arrays)
    csr = None
    if key is None:   # lil, dok...: convert, then recognise the converted arrays (or raise
        csr = as_csr(A, dtype=dtype)  # the right error for what is not a sparse matrix)
        key = input_key(csr, dtype)
    assert key is not None, "a CSR matrix always has a key"
    with _LOCK:
        m = _MATRICES.get(key)
        if m is not None:
            _MATRICES.move_to_end(key)
            return m
    # first sighting before as_is: a second sighting's copy (as_csr) checks A anyway, and
    # as_is's two passes over it came on top
    if direct and fmt == "csr" and native.planner() is not None and _first_sighting(key) and \
            as_is(A):
        return None
    m = AnalysedMatrix(csr if csr is not None else as_csr(A, dtype=dtype))
    m.key = key
    if csr is None and not _copied_as_keyed(A, dtype, key, arrays):
        # A was written (or its arrays replaced) between the checksum and the copy, by another
        # thread: the copy may hold either contents, so it serves this call only.  Kept under
        # the key, it would answer for the old contents whenever A held them again
        m.key = None
        return m
    budget = plan.kept_bytes()
    dropped = []
    with _LOCK:
        _MATRICES[key] = m
        total = sum(_csr_bytes(a) for a in _MATRICES.values())
        while len(_MATRICES) > MAX_MATRICES or (total > budget and len(_MATRICES) > 1):
            old = _MATRICES.popitem(last=False)[1]
            total -= _csr_bytes(old)
            dropped.append(old)
    for old in dropped:
        _dropped(old)
    return m


def _csr_bytes(m: AnalysedMatrix) -> int:
    return int(m.csr.data.nbytes + m.csr.indices.nbytes + m.csr.indptr.nbytes)


def _dropped(m: AnalysedMatrix) -> None:
    """Let go of what else holds a matrix no longer kept: the native short ways of its
    matrices' calls (by ``id(A)``, they kept its copy past the byte cap), and its plans (none
    were made before its analysis and values fingerprint, which this does not compute)."""
    with _LOCK:
        for ident in [k for k, e in _PRODUCTS.items() if e[4] is m]:
            del _PRODUCTS[ident]
        for call in [k for k, e in _POWERS.items() if e[2].matrix is m]:
            del _POWERS[call]
    known = m._structure is not None and "_values" in m.__dict__
    plan.forget(m.csr, (m.pattern, m.values, str(m.dtype)) if known else None)


#: the native short way of :func:`asp_mpk.spmv` for watched matrices, by ``id(A)``: the watch
#: that vouches for A's arrays, the kernel, its ``asp_mpk._planner.Product``, what says
#: whether it still serves (None: as long as the watch holds) and the analysed matrix
_PRODUCTS: OrderedDict[int, tuple[Watched, Any, Any, Callable[[], bool] | None,
                                  AnalysedMatrix]] = OrderedDict()


#: the native short way of the functional :func:`asp_mpk.matrix_powers` (monomial, one plain
#: vector) of watched matrices while their kernel is specialised, by ``(id(A), k)``: the watch,
#: the extension's ``CSRPowers``, and the MatrixPowers object that says whether it serves
_POWERS: OrderedDict[tuple[int, int], tuple[Watched, Any, MatrixPowers]] = OrderedDict()


def _seen(A: Any) -> tuple[Any, tuple[np.ndarray, ...] | None, _Seen | None]:
    """A's format, arrays and the entry its arrays have as seen in their own dtype (None:
    not seen, or not a format with flat arrays)."""
    fmt = getattr(A, "format", None)
    arrays = _arrays(A, fmt)
    seen = None if arrays is None else _SEEN.get(_ident(fmt, A.shape, None, arrays))
    return fmt, arrays, seen


def _ident(fmt: Any, shape: tuple, dtype: Any, arrays: tuple[np.ndarray, ...]) -> tuple:
    """Where :data:`_SEEN` keeps the entry of these arrays as a matrix converted to ``dtype``
    (their ids: the entry's watch then checks buffers, layouts and contents)."""
    return (fmt, shape, None if dtype is None else np.dtype(dtype).str, *map(id, arrays))


def product(A: Any) -> Any:
    """The native spmv of ``A`` (:func:`remember_product`) while the watch behind it is
    current, else None.  It answers None itself whenever A is not the matrix it was made
    for, unchanged, or x and out are not the plain arrays it takes."""
    entry = _PRODUCTS.get(id(A))
    if entry is None or entry[0].generation != entry[0].owner.generation or \
            (entry[3] is not None and not entry[3]()):
        return None
    return entry[2]


def remember_product(A: Any, kern: Any, m: AnalysedMatrix,
                     until: Callable[[], bool] | None = None) -> None:
    """After ``A @ x`` by ``kern``, the tuned product kernel of ``m`` (the analysed matrix
    that call found for A): where A's arrays are watched, let the next :func:`asp_mpk.spmv`
    of A take one native call (checks, write check and kernel; see ``Product`` in
    ``_planner.cpp``) instead of the Python path.  ``until``: only while it answers True
    (``kern`` the CSR product that serves while A's kernel is specialised and its variants
    compile; then the Python path times them and remembers the winner).

    Only while A's watch vouches for the contents ``m`` was made from: another thread may have
    written A and had it recognised afresh since this call found ``m``, and A's watch is then
    the new contents' one; paired with the old kernel, every later spmv of A would return the
    old matrix's product."""
    watch = _watch_for(A, m)
    entry = kern.product_entry()
    mod = native.planner()
    if watch is None or entry is None or mod is None:
        return
    fmt, watched = watch
    known = _PRODUCTS.get(id(A))
    if known is not None and known[0] is watched and known[1] is kern and known[3] is until:
        return
    made = mod.Product(watched.check, type(A), _ARRAYS[fmt], A.shape, entry[0], entry[1],
                       kern.n, kern.dtype, kern.pass_threads, kern)
    _remember(_PRODUCTS, id(A), (watched, kern, made, until, m))


def _watch_for(A: Any, m: AnalysedMatrix) -> tuple[str, Watched] | None:
    """A's format and the write watch of its arrays, where that watch vouches for the contents
    ``m`` was made from (see :func:`remember_product`); else None."""
    fmt, _, seen = _seen(A)
    watched = None if seen is None else seen.watched
    if watched is None or watched.check is None or m.key is None:
        return None
    assert seen is not None
    return (fmt, watched) if _contents(seen.key) == _contents(m.key) else None


def _remember(table: OrderedDict, key: Any, entry: tuple) -> None:
    """``table[key] = entry``, the least recently remembered dropped beyond MAX_MATRICES."""
    with _LOCK:
        table[key] = entry
        while len(table) > MAX_MATRICES:
            table.popitem(last=False)


def powers_call(A: Any, k: int) -> tuple[Any, MatrixPowers] | None:
    """The native ``matrix_powers(A, x, k)`` of ``A`` (:func:`remember_powers`) while it
    serves, and the object whose results it recycles; else None.  The call answers None
    itself where A is not the matrix it was made for, unchanged, or x is not a plain finite
    vector of its dtype."""
    entry = _POWERS.get((id(A), k))
    if entry is None or entry[0].generation != entry[0].owner.generation or \
            not entry[2].native_serves():
        return None
    return entry[1], entry[2]


def remember_powers(A: Any, m: AnalysedMatrix, mp: MatrixPowers) -> None:
    """After ``matrix_powers(A, x, k)`` by ``mp`` (of ``m``, the analysed matrix that call
    found for A) while ``mp`` answers such calls natively (``mp.native_serves()``): where A's
    arrays are watched, let the next calls of A take one native call (checks, write check,
    products; ``CSRPowers`` in ``_planner.cpp``) as long as it does (see
    :func:`remember_product`)."""
    watch = _watch_for(A, m)
    if watch is None:
        return
    fmt, watched = watch
    known = _POWERS.get((id(A), mp.k))
    if known is not None and known[0] is watched:
        return
    made = native.csr_powers_call(m.csr, mp.k,
                                  watch=(watched.check, type(A), _ARRAYS[fmt], A.shape))
    if made is not None:
        _remember(_POWERS, (id(A), mp.k), (watched, made, mp))


def _contents(key: tuple) -> tuple:
    """An :func:`input_key` less the dtype it converts to: what A held, whatever the dtype its
    analysed matrix computes in."""
    return key[:3] + key[4:]


def _copied_as_keyed(A: Any, dtype: Any, key: tuple, arrays: tuple[np.ndarray, ...] | None
                     ) -> bool:
    """After :func:`analysed` copied A: whether A still holds the contents ``key`` was made
    from, in the ``arrays`` it had before (so the copy holds them too).  The write watch
    answers for watched arrays (microseconds); small arrays are checksummed again.  Large
    arrays that are not watched are not read a second time: a write by another thread
    between the checksum and the copy goes unnoticed there (see the module's docstring)."""
    now = _arrays(A)
    if arrays is None or now is None or len(now) != len(arrays) or A.shape != key[1] or \
            any(a is not b for a, b in zip(arrays, now)):
        return False
    seen = _SEEN.get(_ident(A.format, A.shape, dtype, arrays))
    if seen is not None and seen.watched is not None:
        return seen.key == key and seen.watched.owner.unchanged(seen.watched, arrays)
    if sum(a.nbytes for a in arrays) < writewatch.MIN_BYTES:
        return input_key(A, dtype) == key
    return True


def vouched(A: Any) -> AnalysedMatrix | None:
    """A's analysed matrix when the native write check alone vouches that A's arrays are the
    ones seen before and unchanged (no checksum, no Python scan); None: ask :func:`analysed`.
    What :func:`asp_mpk.spmv` tries first: it runs right after a kernel has streamed the caches
    away, where every Python call costs microseconds, so this is one call where
    :func:`analysed` makes six."""
    _, arrays, seen = _seen(A)
    watched = None if seen is None else seen.watched
    if seen is None or watched is None or watched.check is None or \
            watched.generation != watched.owner.generation or not watched.check.clean(arrays):
        return None
    seen.streak = 0
    with _LOCK:
        m = _MATRICES.get(seen.key)
        if m is not None:
            _MATRICES.move_to_end(seen.key)
    return m


def _watch_now(streak: int) -> bool:
    """Whether arrays found written (or not watched) ``streak`` checks in a row are watched on
    this one: below :data:`VOLATILE_STREAK`, then at :data:`REWATCH_STREAKS`.  Arrays written
    before every call, even with the bytes they held (``A.data[:] = values``), paid a new
    watch each call, dearer than the checksum alone (127 against 28 µs on a 256-row matrix);
    arrays that stopped being written are watched again within 64 calls."""
    last = REWATCH_STREAKS[-1]
    return streak < VOLATILE_STREAK or streak in REWATCH_STREAKS or streak % last == 0


class _Seen:
    """Arrays the functional API has checksummed: their content key; while they are watched,
    the write watch that vouches the key still holds; how many checks in a row found them
    changed (``streak``); and whether their memory can be watched at all."""

    def __init__(self, key: tuple, watched: Watched | None, streak: int,
                 watchable: bool) -> None:
        self.key, self.watched, self.streak, self.watchable = key, watched, streak, watchable


_SEEN: OrderedDict[tuple, _Seen] = OrderedDict()


def _recognise(A: Any, dtype: Any, fmt: Any, arrays: tuple[np.ndarray, ...] | None
               ) -> tuple | None:
    """:func:`input_key` of A (of format ``fmt``, held in ``arrays``), without the checksum
    when A's arrays are the ones seen before and no page of them was written since (see the
    module's docstring)."""
    if arrays is None:
        return None
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return None   # a list assigned as A.indices, say: as_csr names it
    ident = _ident(fmt, A.shape, dtype, arrays)
    seen = _SEEN.get(ident)
    if seen is not None and seen.watched is not None and seen.watched.owner.unchanged(
            seen.watched, arrays):
        seen.streak = 0
        return seen.key
    watch = watcher()
    if watch is None:
        return input_key(A, dtype)
    streak = 0 if seen is None else seen.streak + 1
    watchable = seen is None or seen.watchable
    watched = None
    if watchable and _watch_now(streak) and (
            seen is not None or sum(a.nbytes for a in arrays) >= writewatch.MIN_BYTES):
        # watch (again) before the checksum, so that a write from now on is seen
        watched = watch.watch(arrays)
        watchable = watched is not None   # file-backed or shared memory: never
    key = input_key(A, dtype)
    assert key is not None, "A has flat arrays"
    stale = []
    with _LOCK:   # first in, first out (a hit does not reorder: it takes no lock)
        previous = _SEEN.pop(ident, None)   # this call's entry, or another thread's newer one
        if previous is not None:
            stale.append(previous)
        _SEEN[ident] = _Seen(key, watched, streak, watchable)
        while len(_SEEN) > 2 * MAX_MATRICES:
            stale.append(_SEEN.popitem(last=False)[1])
    for old in stale:
        if old.watched is not None:
            old.watched.owner.release(old.watched)
    return key


def clear_matrices() -> None:
    """Forget every analysed matrix and the plans made of any (compiled code stays; kernels
    keep their own plans)."""
    plan.clear()
    with _LOCK:
        dropped = list(_MATRICES.values())
        _MATRICES.clear()
        _ONCE.clear()
        _PRODUCTS.clear()
        _POWERS.clear()
        _VALUES.clear()
        stale = list(_SEEN.values())
        _SEEN.clear()
    for old in stale:
        if old.watched is not None:
            old.watched.owner.release(old.watched)
    for m in dropped:
        _dropped(m)
