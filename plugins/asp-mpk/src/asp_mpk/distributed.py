"""Matrix powers and CA-CG over MPI: a row-partitioned A, ghost zones of depth k.

Each rank owns a contiguous block of rows (uneven, tiny and empty blocks are allowed). For k
powers it keeps the rows of its *k-level closure* (PA1, the Asp paper's algorithm): the rows at
graph distance 1..k from its block. One exchange of x on those ghost rows then suffices for all k
products; each rank computes them on its extended local matrix with the single-process
specializer's kernel (the dispatcher of an :class:`asp_mpk.MatrixPowers`), redundantly on the
ghost rows, and keeps its own rows. Level j is exact on the rows at distance <= k - j, so the
owned rows are exact at every level. The naive scheme needs k exchanges of depth 1.

Tuning: a call is as slow as its slowest rank, and ranks tuning alone could pick different
variants of the local kernel (their extended matrices differ, and so does the noise of a shared
machine). So each call kind (vector count, basis kind) is tuned collectively
(:class:`asp_core.collective.AgreedVariants`): every rank proposes the variants of its own
extended matrix, they time those all ranks share, in the same order, each time agreed as the
slowest rank's (rank 0's stored winner, kept per rank count and global size class, is used
everywhere), and every rank then runs the same variant; :attr:`DistributedMatrixPowers.variant`
names it (local, no communication) and :class:`CGResult` ``.variant`` the one a solve ran. A
rank that owns no rows and has no ghost rows joins the agreement without narrowing it. Ranks
whose blocks propose different variants (very uneven blocks: a small block's are one-thread
ones, and what all share may be only the naive products) each tune their own kernel instead
(``per_rank=True``): every rank computes only its own rows, so they need not run the same
code. When a rank cannot specialise, every rank runs the SciPy reference together, each
warning once per call kind (``ASP_MODE=strict``: raises on every rank). ``asp explain`` shows
the run as ``MatrixPowers(n=<local rows>, k=<k>)[<N> ranks]``. Unlike the single-process object, the
distributed one specialises on the call (not on a background thread), as every rank must
take part in each step of the agreement.

:func:`cg` is s-step (communication-avoiding) CG over that kernel: per outer iteration ONE
exchange of depth s (p and r travel in the same message) and ONE global reduction (the Gram
matrix of the local basis blocks, summed with ``Allreduce``); the s CG steps then run on short
coefficient vectors, identically on every rank. :func:`plain_cg` is classical CG with the same
partitioning (one depth-1 exchange and two reductions per iteration), the baseline whose
messages and reductions :class:`asp_core.mpi.CommStats` counts alongside.

Set-up (closures, exchange lists) uses a few ``alltoall`` rounds, counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from asp_core.mpi import HaloExchange
from asp_mpk.validate import check_finite

if TYPE_CHECKING:
    from asp_core.collective import AgreedVariants

    from asp_mpk.powers import MatrixPowers

__all__ = ["DistributedMatrix", "DistributedMatrixPowers", "cg", "plain_cg", "partition_rows"]

_TAG = 7401


def partition_rows(n: int, size: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """``size + 1`` row boundaries: balanced blocks, or proportional to ``weights``."""
    from asp_core.mpi import block_range

    if weights is None:
        return np.array([block_range(n, size, r)[0] for r in range(size)] + [n], dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (size,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {size} non-negative numbers with a positive sum")
    cuts = np.round(np.cumsum(w) / w.sum() * n).astype(np.int64)
    return np.concatenate([[0], cuts])


class DistributedMatrix:
    """A square sparse matrix partitioned by rows over ``comm``.

    :param A: the whole matrix on every rank (each keeps its rows), or with ``rows=(lo, hi)``
        only this rank's rows as an ``(hi - lo) x n`` sparse matrix with global column indices.
    :param bounds: row boundaries (``size + 1`` increasing ints from 0 to n) when A is whole;
        default: balanced blocks.
    :param depth: ghost depth of the closure (the k of the matrix-powers kernel; >= 1).
    """

    def __init__(self, A: Any, comm: Any = None, *, rows: tuple[int, int] | None = None,
                 bounds: Sequence[int] | None = None, depth: int = 1) -> None:
        import scipy.sparse as sp

        from asp_core.mpi import CommStats, abort_on_uncaught, agree, check_same, import_mpi

        MPI = import_mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        abort_on_uncaught(self.comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.stats = CommStats()
        error = None
        local = None
        n = -1
        try:
            if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
                raise ValueError(f"depth must be an int >= 1, got {depth!r}")
            if not sp.issparse(A):
                raise TypeError(f"A must be a scipy.sparse matrix, got {type(A).__name__}")
            if rows is None:
                from asp_mpk.validate import as_csr

                csr = as_csr(A)
                n = csr.shape[0]
                b = (partition_rows(n, self.size) if bounds is None
                     else np.asarray(bounds, dtype=np.int64))
                if b.shape != (self.size + 1,) or b[0] != 0 or b[-1] != n or np.any(np.diff(b) < 0):
                    raise ValueError(f"bounds must be {self.size + 1} non-decreasing ints from 0 "
                                     f"to {n}, got {list(b)}")
                lo, hi = int(b[self.rank]), int(b[self.rank + 1])
                local = csr[lo:hi]
            else:
                from asp_mpk import native
                from asp_mpk.validate import (check_before_conversion, float_dtype,
                                              without_outside_diagonals)

                if isinstance(rows, (str, bytes)) or np.shape(rows) != (2,):
                    raise ValueError(f"rows must be (lo, hi), got {rows!r}")
                lo, hi = int(rows[0]), int(rows[1])
                if getattr(A, "format", None) != "csr":
                    check_before_conversion(A, "A")
                # the dtypes the whole-matrix path (as_csr) accepts: the float64 conversion
                # below dropped a complex block's imaginary parts with only a ComplexWarning
                float_dtype(A.dtype, "A")
                local = sp.csr_matrix(without_outside_diagonals(A), dtype=np.float64)
                native.check_csr(local.indptr, local.indices, local.shape[1])
                n = local.shape[1]
                if local.shape[0] != hi - lo or not 0 <= lo <= hi <= n:
                    raise ValueError(f"rows=({lo}, {hi}) does not match the local block of "
                                     f"shape {local.shape}")
                local.sum_duplicates()
                local.sort_indices()
                if not np.all(np.isfinite(local.data)):
                    raise ValueError("A has non-finite stored values (inf or nan)")
        except (TypeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        agree(self.comm, error)
        assert local is not None, "agree() raised on every rank if any rank failed"
        check_same(self.comm, n, "matrix size n")
        check_same(self.comm, int(depth), "depth (k, or cg's s)")   # sets the exchange rounds
        ranges = self.comm.allgather((lo, hi))
        starts = [r[0] for r in ranges]
        if starts[0] != 0 or ranges[-1][1] != n or any(ranges[i][1] != ranges[i + 1][0]
                                                      for i in range(self.size - 1)):
            raise ValueError(f"the ranks' row blocks {ranges} do not tile 0..{n} in rank order")
        if local.dtype != np.float64:
            local = local.astype(np.float64)
        self.n = n
        self.lo, self.hi = lo, hi
        self.n_own = hi - lo
        self.bounds = np.array(starts + [n], dtype=np.int64)
        self.local = local
        self.depth = int(depth)
        self._build(self.depth)

    # -- set-up -----------------------------------------------------------------------------------
    def _owner(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bounds, rows, side="right") - 1

    def _alltoall(self, per_peer: list[Any]) -> list[Any]:
        self.stats.setup_messages += sum(1 for q, v in enumerate(per_peer)
                                         if q != self.rank and v is not None and len(v))
        return self.comm.alltoall(per_peer)

    def _fetch_rows(self, want: np.ndarray) -> tuple[np.ndarray, Any]:
        """Collective: the rows ``want`` (global ids, none owned here) from their owners, as
        ``(ids, csr)`` with one CSR row (global column ids) per id."""
        import scipy.sparse as sp

        owners = self._owner(want)
        req = [want[owners == q] for q in range(self.size)]
        asked = self._alltoall(req)
        reply: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        for ids in asked:
            if ids is None or len(ids) == 0:
                reply.append(None)
                continue
            sub = self.local[np.asarray(ids) - self.lo]
            reply.append((np.diff(sub.indptr), sub.indices.astype(np.int64), sub.data))
        got = self._alltoall(reply)
        parts = [(req[q], got[q]) for q in range(self.size) if len(req[q])]
        if not parts:
            return np.zeros(0, np.int64), sp.csr_matrix((0, self.n))
        ids = np.concatenate([p[0] for p in parts])
        lens = np.concatenate([p[1][0] for p in parts])
        cols = np.concatenate([p[1][1] for p in parts])
        vals = np.concatenate([p[1][2] for p in parts])
        indptr = np.concatenate([[0], np.cumsum(lens)])
        return ids, sp.csr_matrix((vals, cols, indptr), shape=(len(ids), self.n))

    def _build(self, k: int) -> None:
        """The k-level closure, the extended local matrix and the exchange patterns.

        Vectorised over rows (no Python loop per row): the rows known here are kept as one CSR
        "store" with global column ids, grown by the ghost rows fetched level by level.
        """
        import scipy.sparse as sp

        own = np.arange(self.lo, self.hi, dtype=np.int64)
        store = sp.csr_matrix(self.local)
        store_pos = np.full(self.n, -1, dtype=np.int64)  # O(n) per rank: fine to ~10^8 rows
        store_pos[own] = np.arange(self.n_own)
        levels = [own]
        known = np.zeros(self.n, dtype=bool)
        known[own] = True
        frontier = own
        for j in range(1, k + 1):
            cols = store[store_pos[frontier]].indices.astype(np.int64)
            new = np.unique(cols[~known[cols]])
            known[new] = True
            levels.append(new)
            if j < k:  # the rows of the outermost level are never needed
                ids, rows = self._fetch_rows(new)
                store_pos[ids] = store.shape[0] + np.arange(len(ids))
                store = sp.vstack([store, rows], format="csr")
            frontier = new
        self.levels = levels
        # local numbering in global order: a banded A stays banded (so asp_mpk can use its DIA
        # kernels on every rank), and the owned rows are one contiguous slice of it
        depth = np.concatenate([np.full(len(lv), j, dtype=np.int64)
                                for j, lv in enumerate(levels)])
        allrows = np.concatenate(levels)
        order = np.argsort(allrows, kind="stable")
        glob, depth = allrows[order], depth[order]
        self.glob = glob
        self.n_ext = len(glob)
        first = int(np.searchsorted(glob, self.lo))
        self.own = slice(first, first + self.n_own)
        loc = np.full(self.n, -1, dtype=np.int64)
        loc[glob] = np.arange(self.n_ext)
        inner = depth < k  # the rows of the outermost level are only values of x
        sel = store[store_pos[glob[inner]]]
        counts = np.zeros(self.n_ext, dtype=np.int64)
        counts[inner] = np.diff(sel.indptr)
        cols = loc[sel.indices]
        if np.any(cols < 0):  # pragma: no cover - closure construction bug
            raise AssertionError("closure misses a column")
        indptr = np.concatenate([[0], np.cumsum(counts)])
        self.A_ext = sp.csr_matrix((sel.data, cols, indptr), shape=(self.n_ext, self.n_ext))
        self.A_ext.sort_indices()
        self.A_own = self.A_ext[self.own]  # one product needs only the depth-1 ghosts
        ghost = depth > 0
        pos = np.arange(self.n_ext)
        self.halo_k = self._halo(glob[ghost], pos[ghost])
        self.halo_1 = self._halo(glob[depth == 1], pos[depth == 1])

    def _halo(self, ghosts: np.ndarray, positions: np.ndarray) -> HaloExchange:
        """Collective: receive ``ghosts`` (global rows) into ``positions``; learn what to send."""
        owners = self._owner(ghosts)
        recv = {}
        req = []
        for q in range(self.size):
            sel = np.nonzero(owners == q)[0]
            req.append(ghosts[sel])
            if len(sel):
                recv[q] = positions[sel]
        asked = self._alltoall(req)
        send = {q: np.asarray(ids, dtype=np.int64) - self.lo + self.own.start
                for q, ids in enumerate(asked) if ids is not None and len(ids)}
        return HaloExchange(self.comm, send, recv, tag=_TAG)

    # -- communication ----------------------------------------------------------------------------
    def exchange(self, vecs: np.ndarray, halo: HaloExchange) -> None:
        """Collective: fill the ghost entries of ``vecs`` (nvec, n_ext) from their owners."""
        halo.exchange(vecs, stats=self.stats)

    def allreduce(self, a: np.ndarray) -> np.ndarray:
        """Collective: the element-wise sum over ranks (one counted reduction)."""
        from mpi4py import MPI

        a = np.ascontiguousarray(a, dtype=np.float64)
        out = np.empty_like(a)
        self.comm.Allreduce(a, out, op=MPI.SUM)
        self.stats.reduction()
        return out

    def matvec(self, x_own: np.ndarray) -> np.ndarray:
        """Collective: this rank's rows of ``A @ x`` (one depth-1 exchange)."""
        v = np.zeros((1, self.n_ext))
        v[0, self.own] = x_own
        self.exchange(v, self.halo_1)
        return self.A_own @ v[0]

    def local_vector(self, x: Any, name: str = "x") -> tuple[np.ndarray | None, str | None]:
        """This rank's block of a vector as float64, or the reason it is bad (no collective)."""
        try:
            arr = np.asarray(x)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
            if arr.shape != (self.n_own,):
                raise ValueError(f"{name} on rank {self.rank} has shape {arr.shape}; this "
                                 f"rank owns rows {self.lo}..{self.hi} (shape ({self.n_own},))")
            arr = np.array(arr, dtype=np.float64)
            check_finite(arr, name)
        except (TypeError, ValueError) as exc:
            return None, str(exc)
        return arr, None

    def check_local_vector(self, x: Any, name: str = "x") -> np.ndarray:
        """Collective: this rank's block of a vector; the same error on all ranks if bad."""
        from asp_core.mpi import agree

        arr, error = self.local_vector(x, name)
        agree(self.comm, error)
        return arr  # type: ignore[return-value]

    def gather(self, x_own: np.ndarray, root: int | None = None) -> np.ndarray | None:
        """Collective: the whole vector (on every rank, or on ``root`` only: the same on
        every rank, else a ``ValueError`` on all of them)."""
        from asp_core.mpi import check_root

        root = check_root(self.comm, root, optional=True)
        if root is None:
            return np.concatenate(self.comm.allgather(np.asarray(x_own)))
        parts = self.comm.gather(np.asarray(x_own), root=root)
        return np.concatenate(parts) if parts is not None else None


class DistributedMatrixPowers:
    """``[x, P_1(A)x, ..., P_k(A)x]`` on this rank's rows with one exchange (PA1).

    ``basis`` is "monomial", or "newton"/"chebyshev" with explicit ``shifts`` (every rank must
    use the same polynomials, so they are not estimated locally). ``options`` are the local
    kernel's ``asp_core.Dispatcher`` options (e.g. ``{"platform_selection": "scipy"}``).
    """

    def __init__(self, A: Any, k: int, comm: Any = None, *, rows: tuple[int, int] | None = None,
                 bounds: Sequence[int] | None = None, options: dict | None = None) -> None:
        from asp_core.mpi import check_same, import_mpi

        from asp_mpk.validate import check_k

        # k first agreed on: k = 0 and k = 1 both make depth 1, and a bad k on one rank only
        # raised there while the others waited in the matrix's set-up
        k = check_k(check_same(import_mpi().COMM_WORLD if comm is None else comm, k,
                               "k (the ghost depth)"))
        self._attach(DistributedMatrix(A, comm, rows=rows, bounds=bounds, depth=max(k, 1)), k,
                     options)

    @classmethod
    def on_matrix(cls, matrix: DistributedMatrix, k: int, options: dict | None = None
                  ) -> DistributedMatrixPowers:
        """Collective: powers over an already distributed matrix (its ghost depth must be at
        least k)."""
        from asp_core.mpi import check_same

        from asp_mpk.validate import check_k

        # the same k on every rank (it sets the exchange and the kernel), so that these checks
        # fail on every rank alike
        k = check_k(check_same(matrix.comm, k, "k (the ghost depth)"))
        if matrix.depth < k:
            raise ValueError(f"the DistributedMatrix has ghost depth {matrix.depth} < k = {k}")
        self = cls.__new__(cls)
        self._attach(matrix, k, options)
        return self

    def _attach(self, matrix: DistributedMatrix, k: int, options: dict | None) -> None:
        self.k = k
        self.matrix = matrix
        self.stats = matrix.stats
        self._mp: MatrixPowers | None = None
        self._scratch: np.ndarray | None = None
        self._options = options
        self._agreed: dict[tuple[int, str], AgreedVariants] = {}
        self._last: AgreedVariants | None = None

    @property
    def variant(self) -> str | None:
        """The local kernel's variant every rank runs for the last call's kind (vector count,
        basis kind) once the ranks have agreed on it; None before the first call, while they
        tune, when they fall back, or for k = 0. Where the ranks' blocks proposed different
        variants (very uneven blocks), each rank tunes its own: this rank's. Local (no
        communication)."""
        if self._last is not None and self._last.per_rank:
            return self._local().variant
        return self._last.winner if self._last is not None else None

    def _local(self) -> MatrixPowers:
        """The single-process object on this rank's extended matrix (0 x 0 on a rank with no
        rows and no ghosts): owner of the kernel's dispatcher."""
        if self._mp is None:
            from asp_mpk.powers import MatrixPowers

            self._mp = MatrixPowers(self.matrix.A_ext, self.k, options=self._options)
        return self._mp

    def _kernel(self, args: tuple) -> AgreedVariants:
        """The agreed variants of the local kernel for this call kind; created by all ranks
        together on the kind's first call (every rank makes the same calls)."""
        kind = (args[0].shape[0], args[4])
        agreed = self._agreed.get(kind)
        if agreed is None:
            from asp_core.collective import AgreedVariants

            from asp_mpk.components import half_octave

            m = self.matrix
            agreed = self._agreed[kind] = AgreedVariants(
                self._local().dispatcher, args if m.n_ext else None, m.comm,
                tuning=("global rows", half_octave(m.n)),
                what=f"distributed matrix powers (n={m.n}, k={self.k})", per_rank=True)
        self._last = agreed
        return agreed

    def powers(self, x: Any, *, basis: str = "monomial", shifts: Any = None) -> np.ndarray:
        """Collective: array (k+1, n_own) (or (nvec, k+1, n_own) for 2-D x) of basis rows.

        Arguments are validated with one collective agreement, then ONE exchange.
        """
        from asp_core.mpi import agree, check_same

        from asp_mpk.bases import basis_coefs

        m = self.matrix
        error = None
        xs = coefs = None
        if basis not in ("monomial", "newton", "chebyshev"):
            error = f"unknown basis {basis!r}; expected 'monomial', 'newton' or 'chebyshev'"
        elif basis != "monomial" and shifts is None:
            error = (f"basis={basis!r} needs explicit shifts in a distributed run (locally "
                     "estimated Ritz values would differ between ranks)")
        else:
            arr = np.asarray(x)
            if arr.ndim not in (1, 2):
                error = f"x must be 1-D or 2-D, got shape {arr.shape}"
            else:
                checked = [m.local_vector(r) for r in (arr if arr.ndim == 2 else arr[None, :])]
                error = next((e for _, e in checked if e is not None), None)
                if error is None and not checked:
                    error = "x has no vectors"
                if error is None:
                    xs = np.stack([v for v, _ in checked if v is not None])
            if error is None:
                try:
                    coefs = basis_coefs(basis, self.k, shifts=shifts)
                except ValueError as exc:
                    error = str(exc)
        agree(m.comm, error)
        assert xs is not None and coefs is not None, "agree() raised on every rank if any failed"
        # the same polynomials and number of vectors everywhere: they shape every message
        given = None if basis == "monomial" else tuple(np.ravel(shifts).tolist())
        check_same(m.comm, (xs.shape[0], basis, given), "(number of vectors, basis, shifts)")
        res = self._run(xs, coefs, "monomial" if basis == "monomial" else "recurrence")
        return res if np.ndim(x) == 2 else res[0]

    def _run(self, xs: np.ndarray, coefs: np.ndarray, kind: str) -> np.ndarray:
        """Collective, no validation: (nvec, k+1, n_own) for validated rows ``xs``, with the
        recurrence ``coefs`` (3, k) of a "monomial" or "recurrence" basis ``kind``."""
        m = self.matrix
        ext = np.zeros((xs.shape[0], m.n_ext))
        ext[:, m.own] = xs
        m.exchange(ext, m.halo_k)
        if self.k == 0:
            return np.ascontiguousarray(ext[:, None, m.own])
        # the extended basis is scratch (only the owned rows are returned): reuse its buffer,
        # a fresh one costs a page fault per 4 KiB on every call
        shape = (xs.shape[0], self.k + 1, m.n_ext)
        if self._scratch is None or self._scratch.shape != shape:
            self._scratch = np.empty(shape)
        args = (ext, self._scratch, coefs, None, kind)
        self._kernel(args)(*args)
        return np.ascontiguousarray(self._scratch[:, :, m.own])

    __call__ = powers

    def naive_powers(self, x: Any) -> np.ndarray:
        """Collective: the monomial basis by k products, each with its own depth-1 exchange."""
        m = self.matrix
        xv = m.check_local_vector(x)
        out = np.empty((self.k + 1, m.n_own))
        out[0] = xv
        for j in range(self.k):
            out[j + 1] = m.matvec(out[j])
        return out


# -- CG -------------------------------------------------------------------------------------------

@dataclass
class CGResult:
    """Counters of one distributed solve (also in ``matrix.stats``)."""

    iterations: int = 0
    outer: int = 0
    replacements: int = 0
    s: int = 0
    exchanges: int = 0
    messages: int = 0
    reductions: int = 0
    #: the local kernel's variant every rank ran once agreed (None: still tuning, or SciPy)
    variant: str | None = None


def _prepare(A: Any, b: Any, x0: Any, comm: Any, rows: Any, bounds: Any, depth: int,
             rtol: float, atol: float, maxiter: Any) -> tuple[Any, np.ndarray, np.ndarray, float,
                                                          int, bool]:
    """(matrix, b, x, tolerance, maxiter, whether b is zero on every rank)."""
    from asp_core.mpi import check_same

    from asp_mpk.cacg import _check_tols

    mat = A if isinstance(A, DistributedMatrix) else DistributedMatrix(
        A, comm, rows=rows, bounds=bounds, depth=depth)
    # a rank with another tolerance or maxiter would stop while the others wait in a reduction;
    # x0 given on some ranks only: they would check it collectively while the others, with
    # None, went on to the next collective (a hang)
    check_same(mat.comm, (rtol, atol, maxiter, None if x0 is None else "given"),
               "rtol, atol, maxiter and x0 (given or None)")
    bv = mat.check_local_vector(b, "b")
    x = np.zeros(mat.n_own) if x0 is None else mat.check_local_vector(x0, "x0")
    rtol, atol = _check_tols(rtol, atol)
    if maxiter is None:
        maxiter = 10 * mat.n
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    bnrm2 = float(np.sqrt(mat.allreduce(np.array([bv @ bv]))[0]))
    return mat, bv, x, max(atol, rtol * bnrm2), int(maxiter), bnrm2 == 0.0


def plain_cg(A: Any, b: Any, x0: Any = None, *, comm: Any = None, rtol: float = 1e-5,
             atol: float = 0.0, maxiter: int | None = None, rows: Any = None, bounds: Any = None
             ) -> tuple[np.ndarray, int, CGResult]:
    """Collective: classical CG on this rank's rows of b; returns (x_own, info, counters).

    Per iteration: one depth-1 exchange (the product) and two reductions (r.r and p.Ap).
    """
    mat, b, x, tol, maxiter, zero_b = _prepare(A, b, x0, comm, rows, bounds, 1, rtol, atol,
                                               maxiter)
    if zero_b:   # as SciPy: x = 0, converged
        return np.zeros(mat.n_own), 0, CGResult()
    st = mat.stats
    base = (st.exchanges, st.messages, st.reductions)
    res = CGResult()
    r = b - mat.matvec(x) if mat.allreduce(np.array([float(np.any(x))]))[0] else b.copy()
    p = r.copy()
    rho_prev = 0.0
    info = maxiter
    for it in range(maxiter):
        rho = float(mat.allreduce(np.array([r @ r]))[0])
        if np.sqrt(rho) < tol:
            res.iterations, info = it, 0
            break
        if it > 0:
            p = r + (rho / rho_prev) * p
        q = mat.matvec(p)
        pq = float(mat.allreduce(np.array([p @ q]))[0])
        if not np.isfinite(pq) or pq == 0.0:   # negative goes on, as in SciPy
            res.iterations, info = it, max(it, 1)
            break
        alpha = rho / pq
        x += alpha * p
        r -= alpha * q
        rho_prev = rho
        res.iterations = it + 1
    res.exchanges, res.messages, res.reductions = (st.exchanges - base[0],
                                                   st.messages - base[1],
                                                   st.reductions - base[2])
    return x, info, res


def cg(A: Any, b: Any, x0: Any = None, *, comm: Any = None, rtol: float = 1e-5,
       atol: float = 0.0, maxiter: int | None = None, s: int = 4, rows: Any = None,
       bounds: Any = None, options: dict | None = None) -> tuple[np.ndarray, int, CGResult]:
    """Collective: s-step CG (Chebyshev basis) on this rank's rows; ``(x_own, info, counters)``.

    Follows ``scipy.sparse.linalg.cg``'s stopping rule ``||r|| < max(atol, rtol ||b||)``,
    confirmed on the true residual (residual replacement, as :func:`asp_mpk.cg`).
    Per outer iteration of s steps: one depth-s exchange and one reduction (the Gram matrix).
    """
    from asp_core.mpi import check_same, import_mpi

    from asp_mpk.bases import chebyshev_coefs
    from asp_mpk.sstep import (Interval, coefficient_steps, replace_residual,
                               stacked_change_of_basis)

    # s shapes the exchange and the Gram matrix's reduction: agreed first, so that a bad or
    # different s raises on every rank (a DistributedMatrix deep enough for both hid it)
    s = check_same(A.comm if isinstance(A, DistributedMatrix) else
                   import_mpi().COMM_WORLD if comm is None else comm, s,
                   "s (the ghost depth)")
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= 32:
        raise ValueError(f"s must be an integer in 1..32, got {s!r}")
    mat, b, x, tol, maxiter, zero_b = _prepare(A, b, x0, comm, rows, bounds, s, rtol, atol,
                                               maxiter)
    if zero_b:   # as SciPy: x = 0, converged
        return np.zeros(mat.n_own), 0, CGResult()
    if mat.depth < s:
        raise ValueError(f"the DistributedMatrix has ghost depth {mat.depth} < s = {s}")
    st = mat.stats
    base = (st.exchanges, st.messages, st.reductions)
    res = CGResult(s=s)
    mp = DistributedMatrixPowers.on_matrix(mat, s, options)
    # spectral interval: Gershgorin over all rows (one reduction), refined by Ritz values
    if mat.n_own:
        d = _own_diagonal(mat)
        rad = np.asarray(abs(mat.local).sum(axis=1)).ravel() - np.abs(d)
        gl = np.array([-(np.min(d - rad)), np.max(d + rad)])
    else:
        gl = np.array([-np.inf, -np.inf])
    from mpi4py import MPI

    g = np.empty(2)
    mat.comm.Allreduce(gl, g, op=MPI.MAX)
    st.reduction()
    interval = Interval(-g[0], g[1])
    nz = mat.allreduce(np.array([float(np.any(x))]))[0]
    r = b - mat.matvec(x) if nz else b.copy()
    p = r.copy()
    rr = float(mat.allreduce(np.array([r @ r]))[0])
    m = 2 * (s + 1)
    alphas: list[float] = []
    betas: list[float] = []
    it = 0
    since_replace = float(np.sqrt(rr))
    info = maxiter
    while True:
        if it >= maxiter:   # checked first, as SciPy: no convergence check after the last step
            info = maxiter
            break
        if np.sqrt(rr) < tol:
            rt, rrt, restart = _true_residual(mat, b, x, r)
            if np.sqrt(rrt) < tol:
                info = 0
                break
            if restart:   # r drifted: p no longer fits it
                p = rt.copy()
            r, rr = rt, rrt
            res.replacements += 1
            since_replace = float(np.sqrt(rr))
        interval.refresh(alphas, betas)
        coefs = chebyshev_coefs(interval.lo, interval.hi, s)
        B = stacked_change_of_basis(coefs, s)
        failure: BaseException | None = None
        try:
            V = mp._run(np.stack([p, r]), coefs, "recurrence").reshape(m, -1)
        except Exception as exc:  # e.g. the local kernel failed on this rank only
            failure, V = exc, np.zeros((m, mat.n_own))
        # THE reduction of this outer iteration: the Gram matrix, plus a failure count so that
        # a rank that failed locally stops every rank instead of leaving them waiting
        Gf = np.zeros(m * m + 1)
        Gf[:m * m] = (V @ V.T).ravel()
        Gf[-1] = failure is not None
        Gf = mat.allreduce(Gf)
        if Gf[-1]:
            if failure is not None:
                raise failure
            raise RuntimeError(f"CA-CG failed on {int(Gf[-1])} other rank(s); their error "
                               "output says why")
        G = Gf[:m * m].reshape(m, m)
        res.outer += 1
        steps = coefficient_steps(G, B, rr, s, tol, maxiter - it, alphas, betas)
        it += steps.done
        rr = steps.rr
        if steps.done:
            upd = np.stack([steps.xc, steps.rc, steps.pc]) @ V
            x += upd[0]
            r, p = upd[1], upd[2]
        if steps.broke:
            info = max(it, 1)
            break
        if replace_residual(rr, since_replace, tol):
            r, rr, restart = _true_residual(mat, b, x, r)
            if restart:
                p = r.copy()
            res.replacements += 1
            since_replace = float(np.sqrt(rr))
    res.iterations = it
    res.variant = mp.variant
    res.exchanges, res.messages, res.reductions = (st.exchanges - base[0],
                                                   st.messages - base[1],
                                                   st.reductions - base[2])
    return x, info, res


def _true_residual(mat: DistributedMatrix, b: np.ndarray, x: np.ndarray, r: np.ndarray
                   ) -> tuple[np.ndarray, float, bool]:
    """Collective, one reduction: the true residual ``b - A x``, its squared norm, and whether
    the direction must restart from it (the recursive ``r`` drifted away from it:
    :func:`~asp_mpk.sstep.restart_direction`)."""
    from asp_mpk.sstep import restart_direction

    rt = b - mat.matvec(x)
    rrt, dd = mat.allreduce(np.array([rt @ rt, (rt - r) @ (rt - r)]))
    return rt, float(rrt), restart_direction(float(dd), float(rrt))


def _own_diagonal(mat: DistributedMatrix) -> np.ndarray:
    """Diagonal entries of this rank's rows (A[lo + i, lo + i])."""
    loc = mat.local.tocoo()
    d = np.zeros(mat.n_own)
    on = loc.col == loc.row + mat.lo
    np.add.at(d, loc.row[on], loc.data[on])
    return d
