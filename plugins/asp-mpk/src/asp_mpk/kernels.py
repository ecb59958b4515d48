"""Generated C kernels: rendering the templates, compiling through the core, ctypes binding.

A bound kernel takes ``(xs, out, coefs, gram, basis)``: ``xs`` (nvec, n) starting vectors, ``out``
(nvec, k+1, n) result, ``coefs`` a (3, k) float64 array of basis recurrence coefficients
(alpha, beta, gamma) and ``gram`` an (m, m) float64 array or ``None``.  It checks shapes, dtypes
and contiguity itself before entering C, so a wrong call is a ``ValueError``, never a crash.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np

from asp_mpk import native
from asp_mpk.validate import check_finite, non_finite

__all__ = ["render_source", "CKernel", "C_TYPES"]

C_TYPES = {"float64": "double", "float32": "float"}

_i64 = ctypes.c_int64
_ptr = ctypes.c_void_p
_int = ctypes.c_int


def render_source(fmt: str, dtype: str, *, monomial: bool, offsets: tuple[int, ...] = (),
                  sym: bool = False, kinds: list[tuple] | None = None, block: int = 1) -> str:
    """C source of the ``fmt`` kernel ("dia", "csr" or "naive") for ``dtype``; ``block`` > 1
    makes the csr kernel work on ``block`` x ``block`` register blocks (BCSR)."""
    from asp_core.templates import render

    T = C_TYPES[dtype]
    if fmt == "dia":
        if kinds is None:
            kinds = [("full", d) for d in range(len(offsets))]
        return render("asp_mpk", "mpk_dia.c.mako", T=T, offsets=list(offsets), monomial=monomial,
                      kinds=list(kinds))
    if fmt == "csr":
        if block > 1 and sym:
            raise ValueError("symmetric storage is not implemented for BCSR")
        return render("asp_mpk", "mpk_csr.c.mako", T=T, monomial=monomial, sym=sym, R=block)
    if fmt == "naive":
        return render("asp_mpk", "naive.c.mako", T=T, monomial=monomial)
    raise ValueError(f"unknown kernel format {fmt!r}")


class CKernel:
    """A compiled matrix-powers variant bound to one plan (matrix data kept alive here)."""

    def __init__(self, lib: Any, fmt: str, plan: Any, *, n: int, k: int, dtype: str | np.dtype,
                 nthreads: int, ksplit: int, name: str, nt: bool = False, wave: int = 0,
                 exact: Callable[..., Any] | None = None) -> None:
        self.lib = lib
        self.fmt = fmt
        self.plan = plan
        self.n = n
        self.k = k
        self.dtype = np.dtype(dtype)
        self._nthreads = int(nthreads)
        #: threads of the whole-matrix passes (classical CG, spmv): all of them.  A variant's
        #: own count is the tuner's choice for its PA1 kernel (a "-t1" variant can win there
        #: on a busy machine); memory-bound passes on one thread made classical CG, timed
        #: with the tuned kernel's passes, look slower than s-step CG (3-D Poisson 100³)
        from asp_core.hardware import default_threads

        self._pass_threads = max(self._nthreads, default_threads())
        self.ksplit = int(ksplit) if ksplit else k
        self.name = name
        #: streaming stores for the basis (dia kernels; not with a Gram matrix, read back)
        self.nt = bool(nt) and fmt == "dia"
        #: rows per step of the wavefront sweep of each block (dia kernels; 0: PA1 blocks with
        #: redundant ghost zones)
        self.wave = int(wave) if fmt == "dia" else 0
        #: recomputes a call by A's sparse products (``(xs, out, coefs, gram, basis)``, SciPy's
        #: semantics) when a dia kernel reports an overflowed level: its stored zeros would
        #: turn inf into nan where A has no entry
        self._exact = exact
        cdll = lib.cdll
        if fmt == "dia":
            fn = cdll.mpk_dia
            fn.argtypes = [_i64, _ptr, _ptr, _i64, _ptr, _i64, _ptr, _ptr, _ptr, _ptr, _i64, _ptr,
                           _int, _ptr, _int, _i64, _ptr]
            self._spmv = cdll.spmv
            self._spmv.argtypes = [_i64, _ptr, _ptr, _ptr, _ptr, _int]
            self._stream = cdll.mpk_dia_stream
            self._stream.argtypes = [_i64, _ptr, _ptr, _i64, _ptr, _i64, _ptr, _ptr, _ptr, _i64,
                                     _ptr, _int, _ptr, _ptr, _ptr, _ptr, _ptr]
            self._stream.restype = _int
        elif fmt == "csr":
            fn = cdll.mpk_csr
            fn.argtypes = [_i64, _i64, _ptr, _i64, _ptr, _ptr, _ptr, _ptr, _i64, _ptr, _ptr, _ptr,
                           _ptr, _ptr, _ptr, _ptr, _int, _ptr]
            self._spmv = None
        else:
            fn = cdll.mpk_naive
            fn.argtypes = [_i64, _ptr, _ptr, _ptr, _i64, _ptr, _i64, _ptr, _ptr, _ptr, _ptr, _int,
                           _ptr]
            self._spmv = cdll.spmv
            self._spmv.argtypes = [_i64, _ptr, _ptr, _ptr, _ptr, _ptr, _int]
        fn.restype = _int
        self._fn = fn
        #: data addresses of a call's arrays, as one native call where the extension is built:
        #: ``a.ctypes.data`` costs µs per array right after a kernel has streamed the caches away
        self._addr = native.address_function()
        #: the matrix arguments of the whole-matrix entry points (the plan's arrays live as
        #: long as the kernel)
        self._whole = (self._addr(plan.dvals, plan.masks) if fmt == "dia" else
                       self._addr(plan.indptr, plan.indices, plan.data) if fmt == "naive"
                       else ())
        if fmt != "dia":
            self._stream = None
        self._cg: tuple[Any, ...] | None = None
        self._cg_dots: tuple[tuple, tuple[float, float]] = ((), (np.nan, np.nan))
        if fmt in ("dia", "naive"):
            dot, upd, dirn = cdll.cg_apply_dot, cdll.cg_update, cdll.cg_direction
            dap = cdll.cg_direction_apply
            mat = [_ptr, _ptr] if fmt == "dia" else [_ptr, _ptr, _ptr]
            dot.argtypes = [_i64, *mat, _ptr, _ptr, _int]
            dot.restype = ctypes.c_double
            upd.argtypes = [_i64, ctypes.c_double, _ptr, _ptr, _ptr, _ptr, _int]
            upd.restype = ctypes.c_double
            dirn.argtypes = [_i64, ctypes.c_double, _ptr, _ptr, _int]
            dirn.restype = None
            dap.argtypes = [_i64, *mat, ctypes.c_double, ctypes.c_double, _ptr, _ptr, _ptr, _ptr,
                           _int]
            dap.restype = ctypes.c_double
            steps = cdll.cg_steps
            steps.argtypes = [_i64, *mat, _ptr, _ptr, _ptr, _ptr, _i64, ctypes.c_double, _ptr,
                              _ptr, _ptr, _int]
            steps.restype = _i64
            self._cg = (dot, upd, dirn, dap, steps)
        self._combine = cdll.combine
        self._combine.argtypes = [_i64, _i64, _ptr, _i64, _i64, _ptr, _ptr, _ptr, _int]
        self._combine.restype = _int

    @property
    def nthreads(self) -> int:
        """Threads of the PA1 kernel (one on the thread that forked this process: its OpenMP
        workers stayed in the parent, see :func:`asp_mpk.native.omp_threads`)."""
        return native.omp_threads(self._nthreads)

    @property
    def pass_threads(self) -> int:
        """Threads of the whole-matrix passes (the same rule after a fork)."""
        return native.omp_threads(self._pass_threads)

    # -- checks ---------------------------------------------------------------------------------
    def _check(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray,
               gram: np.ndarray | None, k: int) -> None:
        n = self.n
        if not (isinstance(xs, np.ndarray) and xs.ndim == 2 and xs.shape[1] == n
                and xs.dtype == self.dtype and xs.flags.c_contiguous):
            raise ValueError(f"xs must be a C-contiguous ({'{nvec}'}, {n}) {self.dtype} array")
        nvec = xs.shape[0]
        if not (isinstance(out, np.ndarray) and out.shape == (nvec, k + 1, n)
                and out.dtype == self.dtype and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous ({nvec}, {k + 1}, {n}) "
                             f"{self.dtype} array")
        if not (coefs.shape == (3, max(k, 1)) and coefs.dtype == np.float64
                and coefs.flags.c_contiguous):
            raise ValueError(f"coefs must be a C-contiguous (3, {max(k, 1)}) float64 array")
        if gram is not None:
            m = nvec * (k + 1)
            if not (gram.shape == (m, m) and gram.dtype == np.float64
                    and gram.flags.c_contiguous and gram.flags.writeable):
                raise ValueError(f"gram must be a writeable C-contiguous ({m}, {m}) float64 "
                                 "array")
        if np.shares_memory(xs, out):
            raise ValueError("xs and out must not overlap")

    # -- calls ----------------------------------------------------------------------------------
    def _run(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray, gram: np.ndarray | None,
             k: int, basis: str, check_x: bool = False) -> None:
        """One pass of the kernel; ``check_x``: raise ``ValueError`` when ``xs`` holds a value
        that is not finite (dia kernels check during their copy of ``xs``, the others first)."""
        p = self.plan
        bad = ctypes.c_int(0)
        if check_x and self.fmt != "dia":
            check_finite(xs)
        al, be, ga = (coefs[0], coefs[1], coefs[2])
        al, be, ga = (np.ascontiguousarray(a) for a in (al, be, ga))
        nvec = xs.shape[0]
        pxs, pal, pbe, pga, pout, pgram = self._addr(xs, al, be, ga, out, gram)
        if self.fmt == "dia":
            rc = self._fn(self.n, *self._whole, nvec, pxs, k, pal, pbe, pga, pout,
                          len(p.bounds) - 1, *self._addr(p.bounds), self.nthreads, pgram,
                          int(self.nt and gram is None), self.wave,
                          ctypes.addressof(bad) if check_x else None)
        elif self.fmt == "csr":
            c = p.closures[k]
            rc = self._fn(self.n, nvec, pxs, k, pal, pbe, pga, pout, c.nblocks,
                          *self._addr(c.meta, c.gofs, c.glob, c.rofs, c.rp, c.ci, c.va),
                          self.nthreads, pgram)
        else:
            rc = self._fn(self.n, *self._whole, nvec, pxs, k, pal, pbe, pga, pout,
                          self.nthreads, pgram)
        if rc == -2:
            raise RuntimeError(f"matrix-powers variant {self.name}: its wavefront stalled "
                               "(an internal error; please report it)")
        if rc < 0:
            raise MemoryError("matrix-powers kernel could not allocate its work buffers")
        if bad.value:
            raise non_finite()
        if rc > 0 and self._exact is not None:
            self._exact(xs, out, coefs, gram, basis)

    def __call__(self, xs: np.ndarray, out: np.ndarray, coefs: np.ndarray,
                 gram: np.ndarray | None = None, basis: str = "monomial", *,
                 check_x: bool = False) -> np.ndarray:
        """The kernel's call (the backend binds this object itself): ``basis`` only names the
        call kind, the recurrence is in ``coefs``.  ``check_x``: ``ValueError`` when ``xs`` holds
        inf or nan (checked by a dia kernel as it copies ``xs``: no extra pass)."""
        k = out.shape[1] - 1 if isinstance(out, np.ndarray) and out.ndim == 3 else -1
        if k != self.k:
            raise ValueError(f"this kernel computes k={self.k} levels; out has shape "
                             f"{getattr(out, 'shape', None)}")
        self._check(xs, out, coefs, gram, k)
        ks = self.ksplit
        if ks <= 0 or ks >= k or gram is not None or \
                any(coefs[2, j] != 0.0 for j in range(ks, k, ks)):
            # one pass (three-term recurrences need two levels at a segment start: no split)
            self._run(xs, out, coefs, gram, k, basis, check_x)
            return out
        if check_x:
            check_finite(xs)
        # k-splitting: levels j0+1..j0+ks from level j0, ks at a time (shorter ghost zones,
        # less redundant work, at the price of reading the matrix once per segment)
        nvec = xs.shape[0]
        j0 = 0
        seg = None
        while j0 < k:
            kk = min(ks, k - j0)
            if seg is None or seg.shape[1] != kk + 1:
                seg = np.empty((nvec, kk + 1, self.n), dtype=self.dtype)
            start = np.ascontiguousarray(out[:, j0]) if j0 else xs
            sub = np.ascontiguousarray(coefs[:, j0:j0 + kk])
            self._run(start, seg, sub, None, kk, basis)
            out[:, j0 + 1:j0 + kk + 1] = seg[:, 1:]
            j0 += kk
        out[:, 0] = xs
        return out

    def combine(self, V: np.ndarray, C: np.ndarray, Y: list[np.ndarray],
                acc: list[bool]) -> None:
        """``Y[o] = (Y[o] if acc[o] else 0) + C[o] @ V`` in one threaded pass over ``V``."""
        m, n = V.shape
        q = len(Y)
        if not (V.dtype == self.dtype and V.flags.c_contiguous and n == self.n):
            raise ValueError(f"V must be a C-contiguous (m, {self.n}) {self.dtype} array")
        C = np.ascontiguousarray(C, dtype=np.float64)
        if C.shape != (q, m) or len(acc) != q:
            raise ValueError("C must have shape (len(Y), m) and acc len(Y) entries")
        for y in Y:
            if not (isinstance(y, np.ndarray) and y.shape == (n,) and y.dtype == self.dtype
                    and y.flags.c_contiguous) or np.shares_memory(y, V):
                raise ValueError(f"each Y must be a separate contiguous ({n},) {self.dtype} array")
        ptrs = (ctypes.c_void_p * q)(*[y.ctypes.data for y in Y])
        flags = np.asarray(acc, dtype=np.int32)
        self._combine(n, m, V.ctypes.data, n, q, C.ctypes.data, ctypes.addressof(ptrs),
                      flags.ctypes.data, self.nthreads)

    @property
    def can_stream(self) -> bool:
        """True when the kernel can recompute the basis instead of storing it (DIA)."""
        return self._stream is not None

    def stream(self, xs: np.ndarray, coefs: np.ndarray, *, gram: np.ndarray | None = None,
               C: np.ndarray | None = None, xo: np.ndarray | None = None,
               ro: np.ndarray | None = None, po: np.ndarray | None = None) -> None:
        """Basis of ``xs`` recomputed block by block: fill ``gram`` and/or apply ``C``
        (``xo += C[0] V``, ``ro = C[1] V``, ``po = C[2] V``) without storing V."""
        if self._stream is None:
            raise NotImplementedError("the streaming basis is implemented for DIA kernels")
        k, n = self.k, self.n
        if not (isinstance(xs, np.ndarray) and xs.ndim == 2 and xs.shape[1] == n
                and xs.dtype == self.dtype and xs.flags.c_contiguous):
            raise ValueError(f"xs must be a C-contiguous (nvec, {n}) {self.dtype} array")
        m = xs.shape[0] * (k + 1)
        if not (coefs.shape == (3, max(k, 1)) and coefs.dtype == np.float64
                and coefs.flags.c_contiguous):
            raise ValueError(f"coefs must be a C-contiguous (3, {max(k, 1)}) float64 array")
        if gram is not None and not (gram.shape == (m, m) and gram.dtype == np.float64
                                     and gram.flags.c_contiguous):
            raise ValueError(f"gram must be a C-contiguous ({m}, {m}) float64 array")
        if C is not None:
            C = np.ascontiguousarray(C, dtype=np.float64)
            if C.shape != (3, m):
                raise ValueError(f"C must have shape (3, {m})")
            for v in (xo, ro, po):
                if not (isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype == self.dtype
                        and v.flags.c_contiguous) or np.shares_memory(v, xs):
                    raise ValueError("xo, ro, po must be contiguous vectors not overlapping xs")
        p = self.plan
        al, be, ga = (np.ascontiguousarray(coefs[i]) for i in range(3))
        pxs, pal, pbe, pga, pbounds, pgram, pC, pxo, pro, ppo = self._addr(
            xs, al, be, ga, p.bounds, gram, C, xo, ro, po)
        rc = self._stream(n, *self._whole, xs.shape[0], pxs, k, pal, pbe, pga,
                          len(p.bounds) - 1, pbounds, self.nthreads, pgram, pC, pxo, pro, ppo)
        if rc != 0:
            raise MemoryError("matrix-powers kernel could not allocate its work buffers")

    @property
    def has_cg(self) -> bool:
        """True when the kernel holds the whole matrix and offers the fused CG passes."""
        return self._cg is not None

    def _cg_pass(self, i: int) -> Any:
        if self._cg is None:
            raise NotImplementedError("the fused CG passes are provided by dia and naive kernels")
        return self._cg[i]

    def _vectors(self, *vs: np.ndarray, distinct: str = "") -> None:
        """Check the CG vectors; with ``distinct`` (their names, for the error) also that no
        two overlap (the passes read one while writing another)."""
        for v in vs:
            if not (isinstance(v, np.ndarray) and v.shape == (self.n,) and v.dtype == self.dtype
                    and v.flags.c_contiguous):
                raise ValueError(f"CG vectors must be contiguous ({self.n},) {self.dtype} arrays")
        if distinct and any(np.shares_memory(a, b) for i, a in enumerate(vs) for b in vs[i + 1:]):
            raise ValueError(f"{distinct} must not overlap")

    def cg_apply_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        """``q = A p`` and ``p . q`` in one pass (fused CG pass 1)."""
        fn = self._cg_pass(0)
        self._vectors(p, q, distinct="p and q")
        return float(fn(self.n, *self._whole, *self._addr(p, q), self.pass_threads))

    def cg_update(self, alpha: float, x: np.ndarray | None, p: np.ndarray, r: np.ndarray,
                  q: np.ndarray) -> float:
        """``x += alpha p``, ``r -= alpha q``; returns ``r . r`` (fused CG pass 2).  ``x=None``
        leaves the x update to :meth:`cg_direction_apply`, which reads p anyway."""
        fn = self._cg_pass(1)
        self._vectors(p, r, q, *(() if x is None else (x,)))
        return float(fn(self.n, float(alpha), *self._addr(x, p, r, q), self.pass_threads))

    def cg_direction(self, beta: float, r: np.ndarray, p: np.ndarray) -> None:
        """``p = r + beta p`` (CG pass 3)."""
        fn = self._cg_pass(2)
        self._vectors(r, p)
        fn(self.n, float(beta), *self._addr(r, p), self.pass_threads)

    def cg_direction_apply(self, beta: float, r: np.ndarray, p: np.ndarray, q: np.ndarray,
                           x: np.ndarray | None = None, alpha: float = 0.0) -> float:
        """``x += alpha p`` (when x is given), then ``p = r + beta p`` and ``q = A r + beta q``,
        in one pass; returns ``p . q``.  When q held ``A p`` on entry it holds ``A p`` of the
        new p on return (fused CG pass: the next iteration's product, this one's direction)."""
        fn = self._cg_pass(3)
        vs = (r, p, q) if x is None else (r, p, q, x)
        self._vectors(*vs, distinct="r, p, q and x")
        return float(fn(self.n, *self._whole, float(alpha), float(beta),
                        *self._addr(x, r, p, q), self.pass_threads))

    def cg_steps(self, x: np.ndarray, p: np.ndarray, r: np.ndarray, q: np.ndarray, rr: float,
                 steps: int, tol: float, pq: float | None = None
                 ) -> tuple[int, float, list[float], list[float], bool, float | None]:
        """Up to ``steps`` classical CG iterations (two fused passes each) in one call, in
        place; stops once ``sqrt(r.r) < tol``.  ``pq``: ``p . q`` when q holds ``A p``, else
        None.  Returns what :func:`asp_mpk.cacg._classical_steps` does: (iterations done,
        r.r, alphas, betas, broke down, ``p . q`` of the new p or None)."""
        fn = self._cg_pass(4)
        self._vectors(x, p, r, q, distinct="x, p, r and q")
        steps = max(int(steps), 0)
        # r.q and q.q that the DIA kernels' one-pass iteration left (see _cg.c.mako), reused
        # when the caller continues with the same vectors: else a pass computes them again
        px, pr, pp, pq_ = self._addr(x, r, p, q)
        key = (pr, pq_, pq)
        dots = self._cg_dots[1] if pq is not None and self._cg_dots[0] == key else (np.nan,) * 2
        st = np.array([rr, np.nan if pq is None else pq, *dots])
        coefs = np.empty((2, max(steps, 1)))
        ret = int(fn(self.n, *self._whole, px, pr, pp, pq_, steps, float(tol),
                     *self._addr(st, coefs[0], coefs[1]), self.pass_threads))
        broke = ret < 0
        done = -ret - 1 if broke else ret
        pq_out = float(st[1])
        self._cg_dots = ((pr, pq_, pq_out), (float(st[2]), float(st[3])))
        return (done, float(st[0]), coefs[0, :done].tolist(), coefs[1, :done].tolist(), broke,
                pq_out if np.isfinite(pq_out) else None)

    def product_entry(self) -> tuple[int, tuple[int, ...]] | None:
        """The product entry point ``int spmv(n, <matrix>, x, y, threads)`` as its address and
        its matrix arguments (the plan's arrays, alive as long as this kernel), for a native
        caller (:func:`asp_mpk.matrix.remember_product`); None for kernels without one."""
        if self._spmv is None:
            return None
        address = ctypes.cast(self._spmv, ctypes.c_void_p).value
        assert address is not None
        return address, self._whole

    @property
    def has_spmv(self) -> bool:
        """True when the kernel holds the whole matrix and offers :meth:`spmv`."""
        return self._spmv is not None

    def spmv(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """y = A x with the kernel's matrix (dia and naive formats); ``ValueError`` when x
        holds inf or nan that reach y (the kernel checks y as it writes it, so a finite x costs
        no pass of its own)."""
        if self._spmv is None:
            raise NotImplementedError("spmv is provided by the dia and naive kernels")
        if self._spmv(self.n, *self._whole, *self._addr(x, y), self.pass_threads) \
                and not native.all_finite(x):
            raise non_finite()
        return y
