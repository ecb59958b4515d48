"""The public matrix-powers API: :class:`MatrixPowers`, :func:`matrix_powers`, :func:`spmv`.

``MatrixPowers(A, k)`` converts and analyses A once, and owns an ``asp_core.Dispatcher`` for the
``mpk`` specializer: the first call with a new (dtype, nvec, basis kind) runs the five phases,
later calls go straight to the compiled kernel.  The analysis is shared by every k
(:class:`asp_mpk.matrix.AnalysedMatrix`); with ``tune=True`` the constructor times the variants
right away on a random vector, else the first real calls time them.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from asp_mpk import background, native
from asp_mpk.bases import monomial_coefs
from asp_mpk.cg_modes import ModeTimes
from asp_mpk.matrix import (AnalysedMatrix, analysed, explain_first_sighting, powers_call,
                             product, remember_powers, remember_product, seen_before, vouched)
from asp_mpk.recycle import Recycler
from asp_mpk.validate import SUPPORTED_DTYPES, as_float, as_vector, check_finite, check_k

if TYPE_CHECKING:
    from asp_core import Dispatcher
    from asp_core.autotune import Tuning

__all__ = ["MatrixPowers", "matrix_powers", "spmv"]


class MatrixPowers:
    """The Krylov basis ``[x, P_1(A) x, ..., P_k(A) x]`` of a fixed sparse matrix.

    The object API: A is validated, copied and analysed when the object is made (a snapshot,
    as ``scipy.sparse.linalg.splu`` takes one: later changes to A are not seen), and every call
    goes straight to the tuned kernel (or, for a small matrix, to the native CSR products where
    they won the race against it: :meth:`_race`), with no check of A at all.  :func:`matrix_powers` is the
    functional form; it finds the object again by A's checksum.

    :param A: any ``scipy.sparse`` square matrix or array (float64 or float32).
    :param k: number of products (>= 0).
    :param tune: time the kernel variants now (default: no; the first calls time them).
    :param options: ``asp_core.Dispatcher`` options (e.g. ``{"platform_selection": "scipy"}``).
    :param specialise_after: seconds of calls, from the start of the first, after which the
        kernel is specialised in the background (0: from the first call, as an object made to
        be called again should; the functional API waits :data:`SPECIALISE_AFTER_S`).
    """

    def __init__(self, A: Any, k: int, *, tune: bool | None = None,
                 options: dict[str, Any] | None = None, specialise_after: float = 0.0) -> None:
        from asp_core import Dispatcher

        self.k = check_k(k)
        self.specialise_after = specialise_after
        #: when the first call of each kind whose specialisation waits for more calls started
        self._since: dict[tuple, float] = {}
        #: the native CSR call of plain calls (:meth:`_plain`), made at its first use, and
        #: whether it serves them once the kernel is tuned (None: not raced yet)
        self._csr_call: Any = None
        #: the same call leaving a core to the kernel's compile, for the calls made meanwhile
        self._csr_lean: Any = None
        self._native: bool | None = None
        self.matrix = analysed(A)
        self.csr = self.matrix.csr
        self.dtype = self.csr.dtype
        self.shape = self.csr.shape
        self.n = self.csr.shape[0]
        #: how fast :func:`asp_mpk.cg` runs s steps in each mode ("stored", "stream",
        #: "classical") on this matrix, measured by the solves and reused by later ones
        self.cg_modes = ModeTimes(explore_from_solve=ModeTimes.EXPLORE_FROM_SOLVE)
        #: the basis arrays of :func:`asp_mpk.cg`, reused by the next solve once one ends
        self.cg_workspace = Recycler(keep=1)
        self._lock = threading.Lock()
        self._outputs = Recycler()
        self._ready: set[tuple] = set()                 # call kinds served by the kernel
        self._tuned: set[tuple] = set()                 # ... by the tuned kernel
        self._winners: dict[tuple, Any] = {}            # ... and that kernel (no gram)
        self._pending: dict[tuple, threading.Thread] = {}
        self._planning: dict[tuple, threading.Thread] = {}   # candidates' plans being built
        self._dispatch = Dispatcher("mpk", self._reference, fallback=self._reference,
                                    instance=self, options=options or {},
                                    name=f"MatrixPowers(n={self.n}, k={self.k})")
        if tune:
            self.tune()

    @property
    def dispatcher(self) -> Dispatcher:
        """The core dispatcher of the ``mpk`` kernel on this matrix (called as ``(xs, out,
        coefs, gram, basis)``, see :meth:`run`), for runners that choose its variants
        themselves: :class:`asp_mpk.distributed.DistributedMatrixPowers` has every MPI rank
        agree on one (:class:`asp_core.collective.AgreedVariants`)."""
        return self._dispatch

    # -- used by the components -----------------------------------------------------------------
    @property
    def structure(self) -> Any:
        """The matrix analysis (computed on first use, see :attr:`AnalysedMatrix.structure`)."""
        return self.matrix.structure

    @property
    def pattern(self) -> str:
        """Hash of the sparsity pattern."""
        return self.matrix.pattern

    def order(self, kind: str, block: int = 1) -> np.ndarray:
        """Row ordering for the partitioner (see :meth:`AnalysedMatrix.order`)."""
        return self.matrix.order(kind, block)

    def gershgorin(self) -> tuple[float, float]:
        """Gershgorin bounds (lower, upper) of A's spectrum, computed once per matrix (s-step
        CG starts its basis from them)."""
        return self.matrix.gershgorin()

    @property
    def values(self) -> str:
        """The fingerprint of A's stored values (part of every specialisation key)."""
        return self.matrix.values

    def _reference(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray,
                   gram: np.ndarray | None = None, basis: str = "monomial") -> np.ndarray:
        """Pure SciPy semantics of the kernel (the fallback and the ``scipy`` platform)."""
        A = self.csr
        k = out.shape[1] - 1
        for v in range(xs.shape[0]):
            out[v, 0] = xs[v]
            for j in range(1, k + 1):
                y = A @ out[v, j - 1]
                if basis != "monomial":
                    y = coefs[0, j - 1] * y + coefs[1, j - 1] * out[v, j - 1]
                    if j >= 2:
                        y = y + coefs[2, j - 1] * out[v, j - 2]
                out[v, j] = y
        if gram is not None:
            V = out.reshape(-1, self.n).astype(np.float64)
            gram[...] = V @ V.T
        return out

    # -- calls ----------------------------------------------------------------------------------
    def run(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray, gram: np.ndarray | None,
            basis: str) -> np.ndarray:
        """Low-level call (arrays already validated and shaped); used by :func:`asp_mpk.cg`.

        While the kernel for this call kind is still being specialised in the background
        (see :meth:`prepare`), the call runs :meth:`sparse_products` (CSR products, as SciPy's
        ``A @ x``, on every core): the first calls cost what SciPy's would, never a compile.
        The first call of a kind computes before it starts the specialisation: nothing competes
        with it for a core or for the interpreter yet; and the calls of the first
        :attr:`specialise_after` seconds do not start it at all (:meth:`_due`)."""
        kind = {"nvec": xs.shape[0], "gram": gram is not None, "basis": basis}
        if self.first_of_kind(**kind):
            start = time.perf_counter()
            self.sparse_products(xs, out, coefs, gram, basis)
            if self._due((xs.shape[0], gram is not None, basis == "monomial"), start):
                self.prepare(**kind)   # starts the specialisation
            return out
        if self.prepare(**kind):
            fn = self._while_compiling(xs, out, coefs, gram, basis)
            return (fn or self._dispatch)(xs, out, coefs, gram, basis)
        return self.sparse_products(xs, out, coefs, gram, basis)

    def _while_compiling(self, *args: Any) -> Any:
        """While this call kind's variants are still to be timed and their siblings compile on
        :mod:`asp_core.background`, a variant already built (the first), else None: the tuner
        would build the variant it times next on the caller's path, waiting for its compile,
        and time it while gcc shares the cores.  Tuning resumes once the compiles are done."""
        from asp_mpk.components import signature

        kind = (args[0].shape[0], args[3] is not None, args[4] == "monomial")
        if kind in self._tuned:
            return None
        key = signature(args, {}, self)
        if self._dispatch.tuned(key) is not None:
            self._tuned.add(kind)
            return None
        if not self._preparing_variants(kind):
            return None
        tuning = self._dispatch.tuning(key)
        return next(iter(tuning.built.values()), None) if tuning is not None else None

    def sparse_products(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray,
                        gram: np.ndarray | None, basis: str) -> np.ndarray:
        """The kernel's call by A's sparse products: the plan builder's CSR products into
        ``out`` (SciPy's order of operations, no temporaries, on every core), else
        :meth:`_reference`.  What runs while the kernel compiles, and what redoes a call whose
        basis overflowed.  Every core even while gcc runs: a core left to the compile made
        the calls meanwhile 10-15 ms slower (2-D Poisson 1000², k = 8, two cores) and the
        tuned kernel came no sooner that anyone could measure."""
        from asp_mpk import native

        if not native.csr_powers(self.csr, xs, out, coefs, basis == "monomial"):
            return self._reference(xs, out, coefs, gram, basis)
        if gram is not None:
            V = out.reshape(-1, self.n).astype(np.float64, copy=False)
            gram[...] = V @ V.T
        return out

    def first_of_kind(self, *, nvec: int, gram: bool, basis: str) -> bool:
        """Whether no call of this kind has started its specialisation yet, and the next
        :meth:`prepare` will start one in the background (where a core is free for it)."""
        kind = (nvec, gram, basis == "monomial")
        return kind not in self._ready and kind not in self._pending and \
            _compile_in_background()

    def prepare(self, *, nvec: int, gram: bool, basis: str) -> bool:
        """Whether calls of this kind go to the specialised kernel now.  The first time a kind
        is seen this starts its specialisation (analysis → compile of the first variant) on a
        background thread and answers False until it is done; with ``ASP_MPK_COMPILE=wait``
        or ``ASP_MODE=strict`` (errors must reach the caller) it waits instead."""
        kind = (nvec, gram, basis == "monomial")
        if kind in self._ready:
            return True
        with self._lock:
            worker = self._pending.get(kind)
            if worker is None:
                if not _compile_in_background():
                    self._ready.add(kind)
                    return True
                if background.crowded(_SPECIALISE):   # a later call of this kind starts it
                    return False
                worker = background.start(_specialise_when_free, weakref.ref(self), nvec,
                                          gram, basis, name=_SPECIALISE)
                self._pending[kind] = worker
        if worker.is_alive():
            return False
        self._ready.add(kind)
        return True

    def _due(self, kind: tuple, start: float) -> bool:
        """Whether the calls of ``kind`` have run :attr:`specialise_after` seconds, from the
        start of the first (``start``: this call's, recorded if it is the first).

        The specialisation of a small matrix paid nothing back: its kernel ran at SciPy's
        speed, and its phases held the interpreter from the caller, so 10,000 products of
        a 256-row matrix took 30 % longer than SciPy's.  Calls that take this long in all
        (one call of a large matrix) pay for it."""
        if self.specialise_after <= 0:
            return True
        first = self._since.setdefault(kind, start)
        return time.perf_counter() - first >= self.specialise_after

    def _preparing_variants(self, kind: tuple) -> bool:
        """Whether variants this call kind's tuner will time are still compiling (or their
        plans being built): a timing taken now would share the cores with that work."""
        from asp_core import background as pool

        planning = self._planning.get(kind)
        return pool.busy() or (planning is not None and planning.is_alive())

    def settling(self, *, nvec: int, gram: bool, basis: str) -> bool:
        """Whether this call kind's kernel is not ready to be timed on calls yet: it is being
        specialised in the background, or its variants compile (:meth:`_while_compiling`)."""
        kind = (nvec, gram, basis == "monomial")
        worker = self._pending.get(kind)
        if worker is None:   # waiting for more calls (:meth:`_due`), else compiling at once
            first = self._since.get(kind)
            return first is not None and \
                time.perf_counter() - first < self.specialise_after
        return self.compiling(nvec=nvec, gram=gram, basis=basis)

    def compiling(self, *, nvec: int, gram: bool, basis: str) -> bool:
        """Whether this call kind's kernel is being specialised in the background, or its
        variants compile, now (:meth:`settling`, but not while it waits for more calls)."""
        kind = (nvec, gram, basis == "monomial")
        worker = self._pending.get(kind)
        return worker is not None and kind not in self._tuned and (
            worker.is_alive() or self._preparing_variants(kind))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background specialisations started so far; True when all finished."""
        for worker in list(self._pending.values()):
            worker.join(timeout)
        return not any(w.is_alive() for w in self._pending.values())

    def _specialise(self, nvec: int, gram: bool, basis: str) -> None:
        """One call of the dispatcher on zero vectors: specialises (and times the first
        variant); later real calls time the others, whose code compiles meanwhile."""
        xs = np.zeros((nvec, self.n), dtype=self.dtype)
        out = np.empty((nvec, self.k + 1, self.n), dtype=self.dtype)
        coefs = np.zeros((3, max(self.k, 1)))
        coefs[0, :self.k] = 1.0
        g = np.empty((nvec * (self.k + 1),) * 2) if gram else None
        self._dispatch(xs, out, coefs, g, basis)
        from asp_mpk.components import signature

        tuning = self._dispatch.tuning(signature((xs, out, coefs, g, basis), {}, self))
        if tuning is not None and len(tuning.candidates) > 1:
            self._planning[(nvec, gram, basis == "monomial")] = background.start(
                _plan_candidates, tuning, name="asp-mpk-plans")

    def powers(self, x: Any, *, basis: str = "monomial", shifts: Any = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """Array of shape (k+1, n) (or (nvec, k+1, n) for a 2-D ``x``) of basis vectors."""
        plain = basis == "monomial" and shifts is None and out is None and \
            type(x) is np.ndarray and x.dtype == self.dtype and x.shape == (self.n,) and \
            x.flags.c_contiguous
        if plain:
            V = self._plain(x)
            if V is not None:
                return V
        return self._general(x, basis, shifts, out)

    __call__ = powers

    def _general(self, x: Any, basis: str, shifts: Any, out: np.ndarray | None) -> np.ndarray:
        """:meth:`powers` of any x: the tuned kernel, else :meth:`run`."""
        from asp_mpk.bases import basis_coefs

        arr = as_vector(as_float(x, self.dtype), self.n, allow_2d=True, finite=False)
        wider = np.result_type(self.dtype, arr.dtype) if arr.dtype.kind == "f" else self.dtype
        if wider != self.dtype:   # SciPy's float32 A @ float64 x is float64: so are these
            return analysed(self.matrix, wider).powers(self.k).powers(
                arr, basis=basis, shifts=shifts, out=out)
        two_d = arr.ndim == 2
        # the kernel only reads xs: no copy when x already has the right layout
        xs = np.ascontiguousarray(arr if two_d else arr[None, :], dtype=self.dtype)
        if xs.shape[0] == 0:
            raise ValueError("x has no vectors")
        coefs = basis_coefs(basis, self.k, shifts=shifts, ritz=self._ritz)
        shape = (xs.shape[0], self.k + 1, self.n)
        if out is None:   # a result of an earlier call the caller has dropped, else a new one
            res = self._outputs.empty(shape, self.dtype)
        else:
            res, xs = _into(out, xs, shape, self.dtype, two_d)
        kind = "monomial" if basis == "monomial" else "recurrence"
        kern = self._winner(xs.shape[0], kind)
        if kern is not None:   # steady state: the winner, which checks x as it copies it
            kern(xs, res, coefs, None, kind, check_x=True)
        else:
            as_vector(xs, self.n, allow_2d=True)
            self.run(xs, res, coefs, None, kind)
        if out is not None:
            return out
        return res if two_d else res[0]

    def native_serves(self) -> bool:
        """Whether the monomial basis of one plain vector is the native CSR call's
        (:meth:`_plain`): while the kernel settles, or once the call won the race."""
        return self._native is True or (
            self._native is None and self.settling(nvec=1, gram=False, basis="monomial"))

    def result(self) -> np.ndarray:
        """A (k+1, n) array for a plain call's result: an earlier result nothing refers to
        any more, else a new one (a new 72 MB basis costs its first touch on every call)."""
        return self._outputs.empty((1, self.k + 1, self.n), self.dtype)[0]

    def _plain(self, x: np.ndarray) -> np.ndarray | None:
        """The monomial basis of a plain vector by the CSR products in one native call (the
        extension's ``CSRPowers``: SciPy's sums; the Python around them took 30 us a call
        against SciPy's 15, 256 rows, k = 4) while the kernel settles, and for good if that
        call wins the race against the tuned kernel (:meth:`_race`); None: the general path
        answers (the calls that time variants, those of a kernel that won)."""
        if self._native is False:
            return None
        if self._csr_call is None:
            self._csr_call = native.csr_powers_call(self.csr, self.k)
            if self._csr_call is None:   # no extension
                self._native = False
                return None
        if self._native is None:
            if self.compiling(nvec=1, gram=False, basis="monomial"):
                # every core's threads spun while the compile held one: 50-100 ms a call of a
                # 65,536-row matrix where SciPy took 0.7 (2 cores)
                if self._csr_lean is None:
                    self._csr_lean = native.csr_powers_call(self.csr, self.k, leave_a_core=True)
                return self._csr_lean(None, x, self.result())
            if not self.settling(nvec=1, gram=False, basis="monomial"):
                if self._winner(1, "monomial") is None:
                    return None
                self._race(x)
                if not self._native:
                    return None
        # None for inf or nan in x: the general path names it
        return self._csr_call(None, x, self.result())

    def _race(self, x: np.ndarray) -> None:
        """Once the kernel is tuned, time the native CSR call against the tuned kernel's
        call, as :meth:`powers` makes them, and keep the faster (:func:`race`).  For a small
        matrix the kernel's own time is not what decides: the Python around it took 20 us a
        call of a 256-row matrix, k = 4, where the native call took 7 and SciPy 14; nor is
        the kernel always faster for a large one: an unstructured matrix of 250,000 rows ran
        its tuned kernel (a symmetric format) at 1.6x the CSR products' time."""
        self._native = race(lambda: self._csr_call(None, x, self.result()),
                            lambda: self._general(x, "monomial", None, None))

    def tune(self) -> str | None:
        """Time every variant now (on a random vector); returns the chosen variant's name."""
        from asp_mpk.components import signature

        rng = np.random.default_rng(12345)
        xs = rng.standard_normal((1, self.n)).astype(self.dtype)
        out = np.empty((1, self.k + 1, self.n), dtype=self.dtype)
        coefs = np.zeros((3, max(self.k, 1)))
        coefs[0, :self.k] = 1.0
        args = (xs, out, coefs, None, "monomial")
        key = signature(args, {}, self)
        self._ready.add((1, False, True))
        for _ in range(64):
            self._dispatch(*args)
            if self._dispatch.tuning(key) is None:
                break   # tuned, or not specialisable (the SciPy fallback runs)
        return self.variant

    @property
    def variant(self) -> str | None:
        """Name of the bound variant for the monomial single-vector key (None before a call)."""
        from asp_mpk.kernels import CKernel

        d = self._dispatch
        for key in d.keys():   # asked in the order a key moves through: tuning, then tuned
            tuning = d.tuning(key)
            if tuning is not None:
                return tuning.winner
            fn = d.tuned(key)
            if isinstance(fn, CKernel):
                return fn.name
        return None

    def variants(self, *, nvec: int = 1, basis: str = "monomial", gram: bool = False,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every variant the pipeline proposes for this matrix, built (name -> callable with
        the kernel's arguments).  For tests and benchmarks; normal calls use the tuned one."""
        from asp_core import Dispatcher

        xs = np.zeros((nvec, self.n), dtype=self.dtype)
        out = np.zeros((nvec, self.k + 1, self.n), dtype=self.dtype)
        coefs = np.zeros((3, max(self.k, 1)))
        g = np.zeros((nvec * (self.k + 1),) * 2) if gram else None
        dispatch = self._dispatch if options is None else \
            Dispatcher("mpk", self._reference, instance=self, options=options)
        return dispatch.build_variants(xs, out, coefs, g, basis)

    def _winner(self, nvec: int, basis: str) -> Any:
        """:meth:`tuned_kernel` for calls without a Gram matrix, remembered once found, and
        not looked for before this call kind's specialisation is done (the lookup needs the
        analysis, which a first call must not wait for)."""
        kind = (nvec, False, basis == "monomial")
        kern = self._winners.get(kind)
        if kern is None and kind in self._ready:
            kern = self.tuned_kernel(nvec=nvec, gram=False, basis=basis)
            if kern is not None:
                self._winners[kind] = kern
        return kern

    def tuned_kernel(self, *, nvec: int, gram: bool, basis: str) -> Any:
        """The compiled kernel bound for this call kind once tuning has finished, else None."""
        from asp_mpk.kernels import CKernel

        key = (self.pattern, self.values, str(self.dtype), self.k, nvec, basis == "monomial",
               gram)
        fn = self._dispatch.tuned(key)
        return fn if isinstance(fn, CKernel) else None

    def bound_kernel(self, *, basis: str | None = None) -> Any:
        """A compiled :class:`~asp_mpk.kernels.CKernel` for this matrix if one is built (its
        ``combine``/``spmv`` helpers and CG passes are basis-independent), else None.
        ``basis``: only a kernel compiled for that basis ("monomial" or "recurrence"), as its
        powers and ``stream`` compute that basis only."""
        from asp_mpk.kernels import CKernel

        d = self._dispatch
        for key in d.keys():
            # the key is tuned_kernel's: its sixth item says "monomial"
            if basis is not None and isinstance(key, tuple) and key[5] != (basis == "monomial"):
                continue
            tuning = d.tuning(key)   # first: a key moves from tuning to tuned
            for built in tuning.built.values() if tuning is not None else ():
                if isinstance(built, CKernel):  # variants built while tuning
                    return built
            fn = d.tuned(key)
            if isinstance(fn, CKernel):
                return fn
        return None

    def _ritz(self, m: int) -> np.ndarray:
        from asp_mpk.bases import lanczos_ritz

        with np.errstate(over="ignore", invalid="ignore"):
            vals = lanczos_ritz(lambda v: self.csr @ v, self.n, m)
        if np.all(np.isfinite(vals)) or self.csr.nnz == 0:
            return vals
        # entries above ~1e154: the Lanczos norms overflowed (automatic shifts were inf or
        # nan, and the call failed naming shifts the caller never passed).  Ritz values scale
        # with A: those of A / s, times s
        scale = float(np.max(np.abs(self.csr.data)))
        scaled = self.csr * (1.0 / scale)
        return lanczos_ritz(lambda v: scaled @ v, self.n, m) * scale


#: seconds of calls of a matrix (from the start of the first) after which the functional API
#: specialises its kernel (see :meth:`MatrixPowers._due`)
SPECIALISE_AFTER_S = 0.1


def compile_choice() -> str:
    """``ASP_MPK_COMPILE``: ``background`` (default) serves calls with SciPy while the kernel
    compiles; ``wait`` compiles on the first call; another value is a ``ValueError``."""
    import os

    choice = os.environ.get("ASP_MPK_COMPILE", "background").strip().lower()
    if choice not in ("background", "wait"):
        raise ValueError(f"ASP_MPK_COMPILE must be 'background' or 'wait', got {choice!r}")
    return choice


def _compile_in_background() -> bool:
    """Whether to compile on a thread: ``ASP_MPK_COMPILE`` says ``background`` and
    ``ASP_MODE=strict`` (which always waits) is not set."""
    from asp_core import config

    return compile_choice() == "background" and config.mode() == "auto"


#: the name of the threads that specialise a call kind (:meth:`MatrixPowers.prepare`)
_SPECIALISE = "asp-mpk-specialise"


def _specialise_when_free(ref: weakref.ref[MatrixPowers], nvec: int, gram: bool,
                          basis: str) -> None:
    """:meth:`MatrixPowers._specialise`, once a core is free for it
    (:func:`asp_core.background.specialising`), unless the object was dropped meanwhile (no
    call will use it; at exit it still compiles, for the next process's cache): the thread
    holds the object only while it specialises it."""
    from asp_core.background import specialising

    with specialising():
        powers = ref()
        if powers is not None:
            powers._specialise(nvec, gram, basis)


def _plan_candidates(tuning: Tuning) -> None:
    """Build the plans of the candidates still to be timed (phase 4's ``materialise``) on a
    background thread, while calls run the variant already built (:meth:`MatrixPowers.run`):
    built on the call that times a candidate, a plan cost that call its time (a 2x2 BCSR
    conversion and PA1 closures: 0.5 s of one call on a 1M-row banded matrix).  At exit it
    stops after the plan it is building."""
    for name in tuning.candidates:
        if tuning.done or background.stopping():
            return
        tuning.prepare(name)


def _into(out: Any, xs: np.ndarray, shape: tuple[int, int, int], dtype: np.dtype, two_d: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """``out`` checked and seen as the (nvec, k+1, n) result, and ``xs`` (copied when it is a
    view of out: a basis continued from its last level, in place, while the kernels read x as
    they write out, and refuse overlapping arrays)."""
    want = shape if two_d else shape[1:]
    if not (isinstance(out, np.ndarray) and out.shape == want and out.dtype == dtype
            and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous {want} {dtype} array")
    if isinstance(out, np.matrix):   # always 2-D: no (nvec, k+1, n) view of it
        raise ValueError(f"out must be a {want} {dtype} ndarray, not an np.matrix "
                         "(np.asarray(out) is a view of it)")
    res = out.reshape(shape)
    return res, (xs.copy() if np.may_share_memory(xs, res) else xs)


def _direct(call: str, A: Any, xs: np.ndarray, res: np.ndarray) -> None:
    """``res[v] = [xs[v], A xs[v], ...]`` by CSR products over A's own arrays, for contents
    met the first time (:func:`~asp_mpk.matrix.seen_before`); xs is checked first, as the
    kernels check it.  ``call``: the public call's name, for ``asp explain``."""
    check_finite(xs)
    done = native.csr_powers(A, xs, res, monomial_coefs(res.shape[1] - 1), True)
    assert done, "seen_before answers None only where the extension is built"
    explain_first_sighting(call, A)


def matrix_powers(A: Any, x: Any, k: int, basis: str = "monomial", shifts: Any = None, *,
                  out: np.ndarray | None = None) -> np.ndarray:
    """``[x, P_1(A)x, ..., P_k(A)x]`` as an array of shape (k+1, n); SciPy-compatible inputs.

    ``basis``: ``"monomial"`` (A^j x), ``"newton"`` (products of (A - shifts[j]); Leja-ordered
    Ritz values when ``shifts`` is None) or ``"chebyshev"`` (scaled Chebyshev polynomials on the
    interval ``shifts = (lmin, lmax)``, estimated by Lanczos when None).
    The result has SciPy's dtype for ``A @ x``: A's, or x's when x is a wider float.
    ``out``: a C-contiguous array of the result's shape and dtype to write into (returned);
    without it a new array, or a result of an earlier call that nothing refers to any more.
    """
    k = check_k(k)
    if basis not in ("monomial", "newton", "chebyshev"):
        raise ValueError(f"unknown basis {basis!r}; expected 'monomial', 'newton' or 'chebyshev'")
    plain = basis == "monomial" and shifts is None and out is None
    fast = powers_call(A, k) if plain else None   # one native call while A's kernel settles
    if fast is not None:
        V = fast[0](A, x, fast[1].result())
        if V is not None:
            return V
    xa = np.asarray(as_float(x, getattr(A, "dtype", None)))   # once (a list converts at every look)
    m = vouched(A)   # no copy or analysis for a matrix seen before
    if m is None and basis == "monomial" and shifts is None and xa.ndim == 1 and \
            xa.dtype == getattr(A, "dtype", None):
        m = seen_before(A)
        if m is None:   # A's contents met for the first time: products over its own arrays
            n = A.shape[0]
            # the native products take C-contiguous rows (a strided x failed, at this call only)
            xs = np.ascontiguousarray(as_vector(xa, n, finite=False))[None, :]
            res, xs = (np.empty((1, k + 1, n), xa.dtype), xs) if out is None else \
                _into(out, xs, (1, k + 1, n), xa.dtype, False)
            _direct("matrix_powers", A, xs, res)
            return out if out is not None else res[0]
    if m is None or xa.dtype != m.dtype:
        m = _for_x(A, xa.dtype, m)
    mp = m.powers(k)
    if xa.dtype != mp.dtype:
        as_vector(xa, mp.n, allow_2d=True)  # validate before the conversion below
    V = mp.powers(xa.astype(mp.dtype, copy=False) if xa.dtype.kind == "f" else xa,
                  basis=basis, shifts=shifts, out=out)
    # while the object answers plain calls natively (:meth:`MatrixPowers._plain`), so do the
    # next calls of a watched A, without the Python that recognises A (8 us of a 256-row
    # matrix's call, half SciPy's time)
    if plain and fast is None and V.ndim == 2 and mp.native_serves():
        remember_powers(A, m, mp)
    return V


#: a native CSR call this many times the tuned kernel's loses the race at once (:func:`race`):
#: further rounds could not turn it, and each costs the caller that call
RACE_GIVE_UP = 2.0


def race(native_call: Callable[[], Any], tuned_call: Callable[[], Any]) -> bool:
    """Whether ``native_call`` (a native CSR call; None: declined, as for an x it does not
    take) is faster than ``tuned_call`` (the tuned kernel's), made as the public call makes
    them: the best of three each, alternating, unless a round finds the native call
    :data:`RACE_GIVE_UP` times slower or declining."""
    native_best = tuned_best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        done = native_call()
        native_best = min(native_best, time.perf_counter() - start)
        start = time.perf_counter()
        tuned_call()
        tuned_best = min(tuned_best, time.perf_counter() - start)
        if done is None or native_best > RACE_GIVE_UP * tuned_best:
            return False
    return native_best < tuned_best


def _spmv_race(m: AnalysedMatrix, mp: MatrixPowers, tuned: Any, xv: np.ndarray) -> bool:
    """Whether the CSR product beats ``tuned``, the tuned k = 1 kernel of ``m`` (``mp``'s), as
    :func:`spmv` runs them (:func:`race`): the product entry points, as the native call of a
    watched matrix makes them, or without one for the kernel its basis call.  The tuner times
    the generated variants against each other only: the winner for an unstructured matrix of
    250,000 rows, a symmetric format without a product entry point, ran spmv at 2.3 ms (SciPy
    2.2) where the CSR product takes 1.2."""
    csr = m.csr_product()
    if csr is None:
        return False
    y = np.empty(m.n, m.dtype)
    return race(_entry_call(csr, xv, y),
                _entry_call(tuned, xv, y) if tuned.has_spmv else (lambda: mp.powers(xv)))


def _entry_call(product: Any, x: np.ndarray, y: np.ndarray) -> Callable[[], int]:
    """``y = A x`` through ``product``'s product entry point (``int f(n, <matrix arrays>, x, y,
    threads)``), called as ``Product`` in ``_planner.cpp`` calls it (one thread on the thread
    that forked this process, see :func:`asp_mpk.native.omp_threads`)."""
    import ctypes

    address, arrays = product.product_entry()
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, *[ctypes.c_void_p] * (len(arrays) + 2),
                          ctypes.c_int)(address)
    args = (product.n, *arrays, x.ctypes.data, y.ctypes.data,
            native.omp_threads(product.pass_threads))
    return lambda: fn(*args)


def _for_x(A: Any, xdtype: np.dtype, m: AnalysedMatrix | None) -> AnalysedMatrix:
    """The analysed matrix a product with an x of ``xdtype`` computes in (``m``: A's own, when
    known): A's dtype, or x's when x is a wider float, as SciPy's ``float32 A @ float64 x`` is
    float64."""
    own = m if m is not None else analysed(A)
    wider = np.result_type(own.dtype, xdtype) if xdtype.kind == "f" else own.dtype
    if wider != own.dtype and wider in SUPPORTED_DTYPES:
        return analysed(A, wider)
    return own   # x's own check names a float16 or longdouble x (not A)


def spmv(A: Any, x: Any, *, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ x`` through the generated kernel, of SciPy's shape and dtype (x of shape (n, 1)
    gives (n, 1); a float64 x makes a float32 A's product float64); ``out``: a C-contiguous
    (n,) array of that dtype to write into (not overlapping x).  Once tuned, the k = 1 kernel's
    own product entry point runs (y = A x: x read, y written, nothing else); before that, the
    matrix-powers call."""
    fast = product(A)   # one native call for a watched matrix with its tuned kernel
    if fast is not None:
        y = fast(A, x, out)
        if y is not None:
            return y
    m = vouched(A)   # the short way for a matrix seen before (see its docs)
    x = as_float(x, getattr(A, "dtype", None))   # an integer x: SciPy's float product
    xdtype = x.dtype if type(x) is np.ndarray else np.asarray(x).dtype
    if m is None and xdtype == getattr(A, "dtype", None):
        m = seen_before(A)   # None: A's contents met for the first time
    elif m is None or xdtype != m.dtype:
        m = _for_x(A, xdtype, m)
    kern = mp = tuned = None
    if m is None:
        n, dtype = A.shape[0], xdtype
    else:
        kern = m.spmv_kernel
        if kern is None:   # vouched for but without a product kernel yet: no second check
            mp = m.powers(1)
            tuned = mp._winner(1, "monomial")
        sized: Any = kern if kern is not None else mp   # both know n and the dtype
        n, dtype = sized.n, sized.dtype
    column = False
    if type(x) is np.ndarray and x.dtype == dtype and x.shape == (n,) and x.flags.c_contiguous:
        xv = x   # the usual call: nothing to convert
    else:
        xv = np.ascontiguousarray(as_vector(x, n, finite=False), dtype=dtype)
        column = np.ndim(x) == 2   # (n, 1), as SciPy returns it
    if out is None:
        y = np.empty(n, dtype=dtype)
    elif not (isinstance(out, np.ndarray) and out.shape == (n,) and out.dtype == dtype
              and out.flags.c_contiguous and out.flags.writeable) or np.shares_memory(out, xv):
        raise ValueError(f"out must be a writeable C-contiguous ({n},) {dtype} array not "
                         "overlapping x")
    else:
        y = out
    if m is not None and tuned is not None:   # tuned, the race decides which product runs
        assert mp is not None
        if m.spmv_native is None:
            check_finite(xv)   # the race's calls would compute with it
            m.spmv_native = _spmv_race(m, mp, tuned, xv)
        if not m.spmv_native and tuned.has_spmv:
            kern = m.spmv_kernel = tuned
    if m is None:   # products over A's own arrays
        levels = np.empty((1, 2, n), dtype)
        _direct("spmv", A, xv[None, :], levels)
        y[...] = levels[0, 1]
    elif m.spmv_native:   # the CSR product won the race against the tuned kernel
        check_finite(xv)   # as the kernels check x (the native call declined it)
        levels = np.empty((1, 2, n), dtype)
        native.csr_powers(m.csr, xv[None, :], levels, monomial_coefs(1), True)
        y[...] = levels[0, 1]
        interim = m.csr_product()
        if fast is None and interim is not None:
            remember_product(A, interim, m)   # for good
    elif kern is not None:
        kern.spmv(xv, y)
        if fast is None:   # a current native path declined this call: it stays as it is
            remember_product(A, kern, m)
    else:
        assert mp is not None and m is not None
        y[...] = mp.powers(xv)[1]
        # until the kernel can be timed, the next calls of a watched A take one native call:
        # the CSR product (the Python path around it cost 6x SciPy's product; the first
        # variant built, run while gcc compiles the others, 4x)
        interim = m.csr_product() if fast is None and \
            mp.settling(nvec=1, gram=False, basis="monomial") else None
        if interim is not None:
            remember_product(A, interim, m,
                             until=partial(mp.settling, nvec=1, gram=False, basis="monomial"))
    return y[:, np.newaxis] if column and out is None else y
