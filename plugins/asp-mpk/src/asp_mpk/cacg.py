"""s-step (communication-avoiding) conjugate gradients over the matrix-powers kernel.

Each outer iteration computes, with ONE call of the PA1 kernel, the Krylov bases of p and r
(a Chebyshev basis on estimated spectral bounds by default, or Newton with Leja-ordered Ritz
shifts) together with their Gram matrix G = VᵀV (fused: each block's vectors are still in cache).
The s CG steps then run on short coefficient vectors (size 2s+2) using only G and the change
of basis B (A V = V B), and x, r, p are rebuilt with one BLAS product.  Per s steps the matrix
is read once and the vectors a handful of times, instead of s times each in classical CG.

Accuracy: the first outer iteration uses the interval [0, Gershgorin bound]; afterwards the
interval comes from the Ritz values of the Lanczos matrix assembled from the CG coefficients
(the CG steps *are* Lanczos steps).  Convergence claims are checked against the true residual
``b - A x``; a stale recursive residual is replaced by the true one (residual replacement), so
the final accuracy matches classical CG.  Semantics and return values follow
``scipy.sparse.linalg.cg``: stop when ``||r|| < max(atol, rtol ||b||)``; ``info = 0`` on success,
else the number of iterations done (also on breakdown: ``p.Ap`` zero or a value not finite; a
negative ``p.Ap``, A not positive definite, goes on as in SciPy).
"""

from __future__ import annotations

import math
import operator
import threading
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from asp_mpk.validate import as_start

__all__ = ["cg", "choose_s", "CGStats"]


class CGStats:
    """Counters of the last :func:`cg` call in this thread (for tests and benchmarks)."""

    def __init__(self) -> None:
        self.iterations = 0
        self.outer = 0
        self.replacements = 0
        self.s = 0
        self.basis = ""
        self.method = ""
        self.modes: dict[str, float] = {}          # seconds of one s-iteration step per mode
        self.steps_by_mode: dict[str, int] = {}    # CG iterations done in each mode
        self.seconds: dict[str, float] = {"powers": 0.0, "combine": 0.0, "inner": 0.0,
                                          "classical": 0.0}


_local = threading.local()


def last_stats() -> CGStats:
    return getattr(_local, "stats", CGStats())


def choose_s(n: int, nnz: int) -> int:
    """Default s: deep enough to amortise the matrix read, small enough for a stable basis."""
    if n < 2000:
        return 4
    return 8


def _powers_for(A: Any, s: int) -> Any:
    """The float64 MatrixPowers object of depth s for A (an AnalysedMatrix, a MatrixPowers or a
    scipy.sparse matrix, recognised by its checksum)."""
    from asp_mpk.matrix import analysed
    from asp_mpk.powers import MatrixPowers

    if isinstance(A, MatrixPowers):
        A = A.matrix
    return analysed(A, np.float64).powers(s)


def _power_of_two_scale(b: Any) -> float:
    """1.0, or the power of two near ``b``'s largest entry when its squares would under- or
    overflow a norm (anything the solve's checks refuse: 1.0, they report it)."""
    try:
        arr = np.asarray(b)
        if arr.dtype.kind != "f" or not arr.size:
            return 1.0
        with np.errstate(all="ignore"):
            peak = float(np.max(np.abs(arr)))
    except (TypeError, ValueError):
        return 1.0
    if not math.isfinite(peak) or peak == 0.0 or 2.0 ** -450 <= peak <= 2.0 ** 450:
        return 1.0
    return 2.0 ** math.frexp(peak)[1]


def _check_tols(rtol: Any, atol: Any) -> tuple[float, float]:
    """``(rtol, atol)`` as floats, taken as SciPy's ``cg`` takes them: a real number or a 0-d
    array of one; ``atol=None`` is a ``ValueError``, as SciPy's."""
    return _tol("rtol", rtol), _tol("atol", atol)


def _tol(name: str, v: Any) -> float:
    if v is None and name == "atol":
        raise ValueError("atol must be a real number >= 0, got None")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]                  # its scalar (a boolean one is refused below)
    if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    return float(v)


def _count(maxiter: Any) -> int:
    """``maxiter`` as SciPy takes it: anything an index can be (a 0-d integer array too), not
    a bool, at least 0."""
    try:
        count = -1 if isinstance(maxiter, bool) else operator.index(maxiter)
    except TypeError:
        count = -1
    if count < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    return count


def cg(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
       maxiter: int | None = None, M: Any = None, callback: Callable[[np.ndarray], Any] | None
       = None, s: int | None = None, basis: str = "chebyshev") -> tuple[np.ndarray, int]:
    """Solve ``A x = b`` for symmetric positive definite sparse ``A``; SciPy's ``cg`` contract.

    Without ``M`` this is s-step CG over the PA1 matrix-powers kernel (``s`` chosen when None;
    ``basis`` "chebyshev" or "newton").  With ``s=None`` the solver also times s iterations of
    classical CG in two fused generated passes (three native passes over the CSR arrays for
    formats without them) and keeps whichever is faster on this machine
    (the s-step Gram matrix costs O(s²) flops per row: where memory is fast next to the cores,
    classical CG wins; ``last_stats().steps_by_mode`` says what ran).  With a preconditioner
    ``M`` (matrix, array or ``LinearOperator`` approximating A⁻¹) it is classical
    preconditioned CG with the generated SpMV.  ``callback(xk)`` is called after every
    iteration, as SciPy does (with s-step CG this rebuilds x at each step, which costs one pass
    over the basis).

    A float64 matrix whose contents are met for the first time (without ``M`` or ``s``) is
    solved by classical CG over its own arrays in the native passes; only a solve that runs
    longer than :data:`FIRST_SOLVE_SECONDS` analyses it and goes on from its CG state, as a
    later solve of it runs.

    A ``b`` whose norm would under- or overflow (entries beyond about 1e±135) is solved scaled
    by a power of two (exact): b near 1e-170 had a norm of 0, and x = 0 came back as converged.
    """
    from asp_core import background

    from asp_mpk.matrix import analysed, explain_first_sighting, seen_before
    from asp_mpk.powers import MatrixPowers

    if (scale := _power_of_two_scale(b)) != 1.0:
        rtol, atol = _check_tols(rtol, atol)
        inner = callback if callback is None or not callable(callback) else \
            (lambda xk: callback(xk * scale))   # the caller sees x, not x / scale
        start = x0 if x0 is None or isinstance(x0, str) else np.asarray(x0) / scale
        x, info = cg(A, np.asarray(b) / scale, start, rtol=rtol, atol=atol / scale,
                     maxiter=maxiter, M=M, callback=inner, s=s, basis=basis)
        return (x * scale).astype(x.dtype, copy=False), info
    # the whole call is the time the user sees (recognising A too, which a loaded machine
    # made last longer than the idle gap): the other formats compile between solves
    with background.foreground():
        mat = A.matrix if isinstance(A, MatrixPowers) else A
        # contents met the first time, unpreconditioned with the default s: solved over A's
        # own arrays until the solve proves long (see _first_solve)
        first = M is None and s is None and getattr(mat, "dtype", None) == np.float64
        m = seen_before(mat) if first else analysed(mat, np.float64)
        csr: Any
        if m is None:
            csr = mat
        else:
            first = False
            csr = m.csr
        n = csr.shape[0]
        bv = as_start(b, n, name="b")   # an integer b is cast to float64, as SciPy casts it
        # SciPy's dtype: A's and b's (x0 is cast to it, its own dtype does not widen the result)
        out_dtype = np.result_type(A.dtype, bv.dtype)
        if isinstance(x0, str):   # SciPy's make_system: x0="Mb" starts from M @ b (b without M)
            if x0 != "Mb":
                raise ValueError("x0 must be an array, None or 'Mb' (start from M @ b), got "
                                 f"{x0!r}")
            x0 = bv if M is None else _precondition(_preconditioner(M, n),
                                                    np.asarray(bv, np.float64))
        if x0 is not None:
            x0v = as_start(x0, n)
        rtol, atol = _check_tols(rtol, atol)
        maxiter = n * 10 if maxiter is None else _count(maxiter)
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or not 1 <= s <= 32):
            raise ValueError(f"s must be an integer in 1..32, got {s!r}")
        if basis not in ("chebyshev", "newton"):
            raise ValueError(f"basis must be 'chebyshev' or 'newton', got {basis!r}")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        bvec = np.ascontiguousarray(bv, dtype=np.float64)   # only read, as SciPy reads b
        x = np.zeros(n) if x0 is None else np.array(x0v, dtype=np.float64)
        stats = CGStats()
        _local.stats = stats
        bnrm2 = float(np.linalg.norm(bvec))
        if bnrm2 == 0.0:
            return np.zeros(n, dtype=out_dtype) if x0 is None else bvec.astype(out_dtype), 0
        tol = max(atol, rtol * bnrm2)
        if first:
            stats.method = "classical"
            done, info, state = _first_solve(csr, bvec, x, tol, int(maxiter), callback, stats)
            if info >= 0:
                explain_first_sighting("cg", csr)
                return _as_returned(x, out_dtype, csr, bvec, tol, info, stats)
            stats.method = "s-step"
            m = analysed(mat, np.float64)   # a long solve: analysed, specialised, continued
            x, info = _sstep(m, bvec, x, tol, int(maxiter) - done, callback,
                             choose_s(n, csr.nnz), basis, stats, allow_classical=True,
                             start=state)
            stats.iterations += done
            return _as_returned(x, out_dtype, csr, bvec, tol, info + done if info else 0,
                                stats)
        assert m is not None
        if M is not None:
            stats.method = "pcg"
            x, info = _pcg(m, bvec, x, tol, int(maxiter), M, callback, stats)
        else:
            stats.method = "s-step"
            x, info = _sstep(m, bvec, x, tol, int(maxiter), callback,
                             int(s) if s is not None else choose_s(n, csr.nnz), basis, stats,
                             allow_classical=s is None)
        return _as_returned(x, out_dtype, m.csr, bvec, tol, info, stats)


def _as_returned(x: np.ndarray, dtype: np.dtype, csr: Any, b: np.ndarray, tol: float,
                 info: int, stats: CGStats) -> tuple[np.ndarray, int]:
    """``(x, info)`` as :func:`cg` returns them: ``x`` in SciPy's dtype, and ``info`` 0 only
    where that ``x`` meets the tolerance. The solve runs in float64; rounded to float32 its
    answer could miss it (4.3e-05 for rtol 1e-6, reported converged), so the returned ``x``
    is checked again: a tolerance float32 cannot hold ends with ``info > 0`` (the iterations
    run), as the guide says."""
    out = x.astype(dtype, copy=False)
    if info == 0 and out is not x and \
            np.linalg.norm(b - csr @ out.astype(np.float64)) > tol:
        return out, max(1, stats.iterations)
    return out, info


#: seconds a solve with contents met the first time runs over A's own arrays before they are
#: analysed and their kernel compiled (the solve then goes on from its CG state).  A compile takes
#: hundreds of milliseconds: a solve shorter than that never waits for its kernel, and paid
#: the copy, the analysis and a compile competing with it for the cores (a 256-row system
#: took 9-40 ms where SciPy takes 1).
FIRST_SOLVE_SECONDS = 0.05


class CGState(NamedTuple):
    """Where classical CG stands: an s-step solve taking over goes on from it (restarted
    from x alone, with p = r, a 2-D Poisson solve took 30 % more iterations than SciPy's and
    failed a ``maxiter`` SciPy met); the Lanczos coefficients seed its spectral estimate."""

    r: np.ndarray
    p: np.ndarray
    rr: float
    alphas: list[float]
    betas: list[float]


def _first_solve(A: Any, b: np.ndarray, x: np.ndarray, tol: float, maxiter: int,
                 callback: Any, stats: CGStats) -> tuple[int, int, CGState]:
    """Classical CG over A's own (checked) arrays in the native passes, every core, x updated
    in place: ``(iterations, info, state)``, info -1 when :data:`FIRST_SOLVE_SECONDS` ran out
    first (the caller goes on from ``state`` with the analysed matrix)."""
    passes = _interim_passes(A, leave_a_core=False)
    s = choose_s(A.shape[0], A.nnz)
    r = b - A @ x if x.any() else b.copy()
    p = r.copy()
    q = np.zeros_like(r)
    rr = float(r @ r)
    pq: float | None = None
    it = 0
    state = CGState(r, p, rr, [], [])
    start = time.perf_counter()
    while True:
        stats.iterations = it
        if it >= maxiter:
            return it, maxiter, state
        if np.sqrt(rr) < tol:
            replaced = _confirm(b - A @ x, r, p, tol, stats)
            if replaced is None:
                return it, 0, state
            rr, pq = replaced, None
        if time.perf_counter() - start > FIRST_SOLVE_SECONDS:
            return it, -1, state._replace(rr=rr)
        done, rr, al, be, broke, pq = _classical_steps(passes, x, p, r, q, rr,
                                                       min(s, maxiter - it), tol, callback, pq)
        state.alphas.extend(al)
        state.betas.extend(be)
        it += done
        stats.steps_by_mode["scipy"] = stats.steps_by_mode.get("scipy", 0) + done
        if broke:
            stats.iterations = it
            return it, max(it, 1), state


def _preconditioner(M: Any, n: int) -> Any:
    """``M`` as a checked ``LinearOperator`` of shape (n, n)."""
    from scipy.sparse.linalg import aslinearoperator

    if isinstance(M, np.ndarray) and M.ndim == 1:
        raise TypeError("M must be a matrix or LinearOperator (use scipy.sparse.diags(m) for a "
                        "diagonal preconditioner)")
    Mop = aslinearoperator(M)
    if Mop.shape != (n, n):
        raise ValueError(f"shape mismatch: M has shape {Mop.shape} but A is {n}x{n}")
    if Mop.dtype is not None and np.dtype(Mop.dtype).kind == "c":
        raise TypeError(f"M has complex dtype {Mop.dtype}; asp_mpk supports real float64 and "
                        "float32 only")
    return Mop


def _precondition(Mop: Any, v: np.ndarray) -> np.ndarray:
    """``M v`` as a float64 vector; ``TypeError`` where it is complex (an operator declared
    real): its imaginary part was dropped with a NumPy ComplexWarning, and the solve reported
    success for the real part's preconditioner."""
    z = Mop.matvec(v)
    if np.iscomplexobj(z):
        raise TypeError(f"M returned complex values (dtype {np.asarray(z).dtype}); asp_mpk "
                        "supports real float64 and float32 only")
    return np.asarray(z, dtype=np.float64).ravel()


def _pcg(m: Any, b: np.ndarray, x: np.ndarray, tol: float, maxiter: int, M: Any,
         callback: Any, stats: CGStats) -> tuple[np.ndarray, int]:
    """Classical preconditioned CG (SciPy's loop) with the generated SpMV."""
    n = m.n
    Mop = _preconditioner(M, n)
    mp = m.powers(1)
    xs = np.empty((1, n))
    out = np.empty((1, 2, n))
    coefs = np.zeros((3, 1))
    coefs[0, 0] = 1.0

    def matvec(v: np.ndarray) -> np.ndarray:
        xs[0] = v
        mp.run(xs, out, coefs, None, "monomial")
        return out[0, 1].copy()

    r = b - matvec(x) if x.any() else b.copy()
    rho_prev, p = 0.0, np.empty(n)
    for it in range(maxiter):
        if np.linalg.norm(r) < tol:
            stats.iterations = it
            return x, 0
        z = _precondition(Mop, r)
        rho = float(r @ z)
        if rho == 0.0:   # M r orthogonal to r (a singular or indefinite M): no step can
            stats.iterations = it      # follow (SciPy divides 0 / 0 at the next one)
            return x, max(it, 1)
        if it > 0:
            p *= rho / rho_prev
            p += z
        else:
            p[:] = z
        q = matvec(p)
        pq = float(p @ q)
        if not np.isfinite(pq) or pq == 0.0 or not np.isfinite(rho):   # SciPy: 0 / 0
            stats.iterations = it
            return x, max(it, 1)
        alpha = rho / pq
        x += alpha * p
        r -= alpha * q
        rho_prev = rho
        stats.iterations = it + 1
        if callback is not None:
            callback(x)
    return x, maxiter


def _classical_steps(kern: Any, x: np.ndarray, p: np.ndarray, r: np.ndarray, q: np.ndarray,
                     rr: float, steps: int, tol: float, callback: Any, pq: float | None = None
                     ) -> tuple[int, float, list[float], list[float], bool, float | None]:
    """Up to ``steps`` classical CG iterations with the kernel's fused passes (in place;
    ``kern`` may also be :func:`_interim_passes`).  ``pq``: ``p . q`` when q already holds
    ``A p`` (left so by the previous call), else None (the first iteration computes it).

    A compiled kernel runs an iteration in two passes instead of three: r and r.r, then x,
    the direction and its product together (:meth:`~asp_mpk.kernels.CKernel.cg_direction_apply`).
    Returns (iterations done, new r.r, alphas, betas, broke down, ``p . q`` of the new p with
    q = A p or None)."""
    if callback is None and hasattr(kern, "cg_steps"):
        return kern.cg_steps(x, p, r, q, rr, steps, tol, pq)   # the same loop, in C
    fused = getattr(kern, "cg_direction_apply", None)
    alphas: list[float] = []
    betas: list[float] = []
    for _ in range(steps):
        if pq is None:
            pq = kern.cg_apply_dot(p, q)
        if not np.isfinite(pq) or pq == 0.0:   # a negative p.q goes on, as in SciPy
            return len(alphas), rr, alphas, betas, True, None
        alpha = rr / pq
        # with the fused pass, x += alpha p happens there (it reads p anyway)
        rr_new = kern.cg_update(alpha, None if fused is not None else x, p, r, q)
        if not np.isfinite(rr_new):
            if fused is not None:
                x += alpha * p
            return len(alphas), rr, alphas, betas, True, None
        beta = rr_new / rr if rr > 0 else 0.0
        alphas.append(alpha)
        betas.append(beta)
        rr = rr_new
        if fused is not None:
            pq = fused(beta, r, p, q, x, alpha)
        else:
            kern.cg_direction(beta, r, p)
            pq = None
        if callback is not None:
            callback(x)
        if np.sqrt(rr) < tol:
            break
    return len(alphas), rr, alphas, betas, False, pq


def _interim_passes(csr: Any, *, leave_a_core: bool = True) -> Any:
    """What runs classical CG steps while the kernel compiles: the native extension's threaded
    passes over the CSR arrays (one pass each; a core left to the compile), else SciPy's
    product and numpy."""
    from asp_mpk import native

    return native.cg_passes(csr, leave_a_core=leave_a_core) or _ScipyPasses(csr)


class _ScipyPasses:
    """The three passes of a classical CG step with SciPy's product and numpy (without the
    native extension); same calls as the generated kernel's ``cg_*`` functions."""

    def __init__(self, csr: Any) -> None:
        self.csr = csr

    def cg_apply_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        q[:] = self.csr @ p
        return float(p @ q)

    @staticmethod
    def cg_update(alpha: float, x: np.ndarray, p: np.ndarray, r: np.ndarray, q: np.ndarray
                  ) -> float:
        x += alpha * p
        r -= alpha * q
        return float(r @ r)

    @staticmethod
    def cg_direction(beta: float, r: np.ndarray, p: np.ndarray) -> None:
        p *= beta
        p += r


def _true_residual(mp: Any, csr: Any, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``b - A x``, with the threaded product of a compiled whole-matrix kernel when one is
    built (SciPy's one-thread product cost 1-2 % of a steady 3-D Poisson 100³ solve)."""
    kern = mp.bound_kernel()
    if kern is None or not kern.has_spmv:
        return b - csr @ x
    ax = kern.spmv(x, np.empty_like(x))
    return np.subtract(b, ax, out=ax)


def _confirm(rt: np.ndarray, r: np.ndarray, p: np.ndarray, tol: float, stats: CGStats
             ) -> float | None:
    """After the recursive residual r said converged: None when the true residual ``rt``
    confirms it, else the new ``r.r`` once r is replaced by it (:func:`_replace`)."""
    if np.sqrt(float(rt @ rt)) < tol:
        return None
    stats.replacements += 1
    return _replace(r, p, rt)


def _replace(r: np.ndarray, p: np.ndarray, rt: np.ndarray) -> float:
    """Residual replacement in place: r becomes the true residual ``rt``, and p restarts from
    it when the recursive r had drifted away from it (:func:`asp_mpk.sstep.restart_direction`);
    returns the new ``r.r``.  The caller drops its ``p . q``: the kernel's passes keep dots of
    the old r next to it (:meth:`~asp_mpk.kernels.CKernel.cg_steps`), and a restarted p has
    no ``A p`` yet."""
    from asp_mpk.sstep import restart_direction

    rrt = float(rt @ rt)
    d = rt - r
    restart = restart_direction(float(d @ d), rrt)
    r[:] = rt
    if restart:
        p[:] = r
    return rrt


def _sstep(m: Any, b: np.ndarray, x: np.ndarray, tol: float, maxiter: int, callback: Any,
           s: int, basis: str, stats: CGStats, *, allow_classical: bool = False,
           start: CGState | None = None) -> tuple[np.ndarray, int]:
    """s-step CG from x (``start``: going on from classical CG's state, same x)."""
    from asp_mpk import background
    from asp_mpk.bases import chebyshev_coefs, newton_coefs
    from asp_mpk.sstep import (Interval, coefficient_steps, newton_shifts, replace_residual,
                               stacked_change_of_basis)

    csr = m.csr
    n = csr.shape[0]
    s = max(1, min(s, n))
    stats.s, stats.basis = s, basis
    mp = m.powers(s)
    modes = mp.cg_modes                # timed per matrix, kept for later solves
    modes.begin_solve()
    stats.modes = modes.best
    m = 2 * (s + 1)
    V = mp.cg_workspace.empty((2, s + 1, n), np.dtype(np.float64))
    interim = None   # the passes run while the kernel compiles, made on first use
    whole = None     # classical passes for a kernel without its own, made on first use
    Vf = V.reshape(m, n)
    G = np.empty((m, m))
    xs = np.empty((2, n))
    xs_alt = np.empty((2, n))
    kern = None
    # written now so that page faults do not count against the classical mode's timing
    q = np.full(n, 0.0) if allow_classical else np.empty(0)
    streaming = False
    p, r = xs[0], xs[1]          # the kernel's inputs live where CG keeps p and r: no copies
    alphas: list[float] = []
    betas: list[float] = []
    if start is None:
        r[:] = b - csr @ x if x.any() else b
        p[:] = r
        rr = float(r @ r)
    else:
        r[:], p[:], rr = start.r, start.p, start.rr
        alphas, betas = list(start.alphas), list(start.betas)
    clock = time.perf_counter
    interval = Interval(*mp.gershgorin())
    it = 0
    since_replace = float(np.sqrt(rr))
    shifts: np.ndarray | None = None
    pq: float | None = None      # p . q while q holds A p (kept between classical runs)
    while True:
        # SciPy checks the residual before each iteration only: one reaching the tolerance on
        # the last allowed iteration still returns info = maxiter
        if it >= maxiter:
            stats.iterations = it
            return x, maxiter
        if np.sqrt(rr) < tol:
            replaced = _confirm(_true_residual(mp, csr, b, x), r, p, tol, stats)
            if replaced is None:
                stats.iterations = it
                return x, 0
            rr, pq = replaced, None
            since_replace = float(np.sqrt(rr))
        # -- basis coefficients (refresh the spectral estimate as Lanczos information grows) --
        if interval.refresh(alphas, betas) and basis == "newton":
            shifts = newton_shifts(alphas, betas, s)
        if basis == "newton" and shifts is not None:
            coefs = newton_coefs(shifts, s, scale=0.25 * (interval.hi - interval.lo))
        else:
            coefs = chebyshev_coefs(interval.lo, interval.hi, s)
        B = stacked_change_of_basis(coefs, s)
        t0 = clock()
        if kern is None and not mp.prepare(nvec=2, gram=True, basis="recurrence"):
            # the kernel is being compiled in the background: meanwhile, s steps of classical
            # CG on the CSR arrays, so the first solve never runs slower than scipy's cg
            if q.size != n:
                q = np.zeros(n)
            interim = interim or _interim_passes(csr)
            done, rr, al, be, broke, pq = _classical_steps(interim, x, p, r, q, rr,
                                                           min(s, maxiter - it), tol, callback)
            alphas += al
            betas += be
            it += done
            stats.seconds["classical"] += clock() - t0
            stats.steps_by_mode["scipy"] = stats.steps_by_mode.get("scipy", 0) + done
            if broke:
                stats.iterations = it
                return x, max(it, 1)
            continue
        if kern is None:
            kern = mp.tuned_kernel(nvec=2, gram=True, basis="recurrence")
        # stored basis vs recomputed ("streaming") basis vs s classical iterations, chosen by
        # timing them (streaming wins when a block's levels fit in cache; classical when the
        # Gram flops cost more than the matrix reads they save).  The CG state (x, r, p, r.r)
        # is the same in every mode.  While the variants are still being tuned (each "stored"
        # step times one), any compiled variant already offers the fused classical passes:
        # stored steps then only count as provisional samples, so the solver runs the faster
        # mode and tunes on every RETRY_AFTER-th outer step instead of on the caller's path;
        # while the other variants still compile in the background, it runs classical steps
        # only.  Streaming needs no tuning: any compiled variant's will do (a stored basis
        # given up on as too slow leaves the tuning unfinished, not the streaming untried),
        # but it must be one compiled for the recurrence basis (a monomial one, bound by
        # matrix_powers calls, streams A^j p: CG then never converged).
        passes = kern if kern is not None else mp.bound_kernel()
        streamer = kern if kern is not None else mp.bound_kernel(basis="recurrence")
        available = ["stored"]
        if streamer is not None and streamer.can_stream and callback is None:
            available.append("stream")
        if allow_classical and passes is not None and not passes.has_cg:
            # formats without the fused passes (a PA1 plan of a matrix without locality)
            # still race classical CG, over the CSR arrays: without it, s-step CG of a
            # permuted 2-D Poisson matrix ran 0.3x SciPy's cg, slower per iteration and in
            # more iterations
            whole = whole or _interim_passes(csr, leave_a_core=False)
            passes = whole
        if allow_classical and passes is not None:
            available.insert(0, "classical")   # timed first: it needs no tuning
            if kern is None and background.busy():
                available = ["classical"]   # the other modes' steps would wait for or time
                                            # variants still compiling, next to gcc
        mode = modes.choose(available)
        if mode == "classical":
            done, rr, al, be, broke, pq = _classical_steps(passes, x, p, r, q, rr,
                                                           min(s, maxiter - it), tol, callback,
                                                           pq)
            alphas += al
            betas += be
            it += done
            elapsed = clock() - t0
            stats.seconds["classical"] += elapsed
            stats.steps_by_mode["classical"] = stats.steps_by_mode.get("classical", 0) + done
            if done == s:
                modes.record("classical", elapsed, trusted=not background.busy(waiting=False))
            if broke:
                stats.iterations = it
                return x, max(it, 1)
            continue
        pq = None   # the s-step modes write p: q no longer holds A p
        streaming = mode == "stream"
        if streaming:
            assert streamer is not None   # "stream" is offered with a compiled kernel only
            streamer.stream(xs, coefs, gram=G)          # basis never stored: Gram only
        else:
            mp.run(xs, V, coefs, G, "recurrence")
        t1 = clock()
        stats.seconds["powers"] += t1 - t0
        stats.outer += 1
        # -- s CG steps on coefficient vectors ------------------------------------------------
        on_step = None if callback is None else (lambda xc: callback(x + xc @ Vf))
        st = coefficient_steps(G, B, rr, s, tol, maxiter - it, alphas, betas, on_step)
        steps, rr, broke = st.done, st.rr, st.broke
        it += steps
        t2 = clock()
        stats.seconds["inner"] += t2 - t1
        stats.steps_by_mode[mode] = stats.steps_by_mode.get(mode, 0) + steps
        if steps:
            C = np.stack([st.xc, st.rc, st.pc])
            if streaming:
                assert streamer is not None
                # recompute the basis block by block and combine it in cache; the new p, r go
                # to the other buffer because neighbouring blocks still read the old ones
                streamer.stream(xs, coefs, C=C, xo=x, ro=xs_alt[1], po=xs_alt[0])
                xs, xs_alt = xs_alt, xs
                p, r = xs[0], xs[1]
            elif (kb := mp.bound_kernel()) is not None:
                kb.combine(Vf, C, [x, r, p], [True, False, False])
            else:
                upd = C @ Vf
                x += upd[0]
                r[:] = upd[1]
                p[:] = upd[2]
            rr = float(r @ r)
        t3 = clock()
        stats.seconds["combine"] += t3 - t2
        if steps == s:
            modes.record(mode, (t1 - t0) + (t3 - t2), trusted=not background.busy(waiting=False),
                          final=kern is not None or streaming)
        if broke:
            stats.iterations = it
            return x, max(it, 1)
        # residual replacement when the recursive residual fell far below the last true one
        if replace_residual(rr, since_replace, tol):
            rt = _true_residual(mp, csr, b, x)
            rr, pq = _replace(r, p, rt), None
            stats.replacements += 1
            since_replace = float(np.sqrt(rr))
