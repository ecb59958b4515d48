"""Distributed stencils over MPI: the same user ``StencilKernel`` on a decomposed grid.

A :class:`DistributedStencilGrid` stands for one global ``StencilGrid`` (same ``shape``,
``ghost_depth``, ``neighbor_definition``) cut into blocks over a Cartesian process grid
(``MPI.Compute_dims``). Each rank stores its block plus a halo of ``halo_depth`` points on the
sides it shares with other ranks, as an ordinary local :class:`~asp_stencil.grid.StencilGrid`
whose ``ghost_depth`` is the global one. The user's kernel runs unchanged on those local grids:
its ``interior_points()`` on a local grid are exactly the points this rank must compute (its own
global-interior points, plus ``halo_depth - ghost_depth`` points of redundant work into the
halo), so the specialised code, the autotuner and the fallback are the single-process ones.

Why results are bitwise equal to a single process: every global-interior point is computed by
the same generated expression from the same neighbour values, and the decomposition only
changes which process evaluates it. Physical borders stay with the ranks that own them and are
never written (kernels that loop over ``border_points()`` are refused: the border of a block is
not the border of the grid).

Communication:

* :func:`exchange` refreshes the halos with non-blocking point-to-point messages, one packed
  message per neighbouring rank however many grids travel (faces, edges and corners alike: the
  data to send is the intersection of the neighbour's halo box with this rank's block, so
  neighbours of neighbours are reached when a block is thinner than the halo).
* ``overlap=True`` (:func:`sweep`, :func:`iterate`) posts the messages, computes the points that
  need no halo first, then waits and computes the shell (the "interior-first" variant).
* :func:`iterate` with ``halo_depth = s * ghost_depth`` exchanges once every ``s`` steps instead
  of every step (communication avoidance, at the price of redundant halo computation).

Tuning: a step is as slow as its slowest rank, and each rank tuning alone could pick a
different variant (their blocks differ in shape, and a shared machine's noise differs per rank).
So the local calls of a kernel on one decomposition are tuned collectively: every rank proposes
the variants of its own block (:meth:`asp_core.Dispatcher.variants`), they time the variants
all ranks share in the same order, each time agreed as the slowest rank's
(:class:`asp_core.collective.AgreedVariants`; rank 0's stored winner, if any, is used
everywhere), and every rank then runs the same variant (:func:`tuned_variant`). When a rank
cannot specialise, every rank runs the kernel's Python (ASP_MODE=strict: raises). The sub-block
calls of ``overlap=True`` differ in number and shape between ranks, so they keep the kernel's
own (per-rank) tuning.

Agreement: every :func:`sweep` and :func:`iterate` call is checked across ranks with one small
``Allreduce`` (:func:`asp_core.mpi.agree_call`): each rank's local argument checks, and a digest
of what must be the same everywhere (the kernel's class and the attributes it reads, the grids'
collective numbers, neighbour definitions and dtypes, the call's options). A difference or a
failure on any rank raises the same error on every rank, naming it and the ranks, before any
message is posted: neither results that silently differ from one process (a constant set per
rank) nor a hang (a rank whose key changed entering a new variant agreement while the others
exchange halos, or raising alone while they wait for its halo). A check carried on the halo
messages instead would add no latency, but reaches only neighbouring ranks and arrives after
messages whose sizes may already disagree; the reduction costs a few microseconds a call.

Gather/scatter helpers move whole grids between one rank and the decomposition.
mpi4py is imported only when a distributed object is created (never by ``import asp_stencil``).
"""

from __future__ import annotations

import ast
import inspect
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np

from asp_core.errors import Unspecializable
from asp_core.mpi import HaloExchange, agree_call, call_digest, check_root, check_same
from asp_core.pyast import kernel_source
from asp_stencil import dast as D
from asp_stencil.grid import DSL_METHODS, StencilGrid
from asp_stencil.signature import (callee_meanings, keep_constant, kernel_attribute_names,
                                   stencil_signature, stored_grids, written_inputs)
from asp_stencil.kernel import STATE_PREFIX, kernel_function, object_memo

if TYPE_CHECKING:
    from asp_core.collective import AgreedVariants

__all__ = ["Decomposition", "DistributedStencilGrid", "DistributedKernel", "distribute",
           "exchange", "sweep", "iterate", "check_kernel", "tuned_variant"]

Box = tuple[tuple[int, int], ...]
_TAG = 7301


def _box_empty(b: Box) -> bool:
    return any(hi <= lo for lo, hi in b)


def _intersect(a: Box, b: Box) -> Box:
    return tuple((max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(a, b))


def _slices(b: Box, origin: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(lo - o, hi - o) for (lo, hi), o in zip(b, origin))


@dataclass(frozen=True)
class Decomposition:
    """Who owns which block of a global grid, and each rank's stored box.

    ``owned[r]``: rank r's block in global coordinates; its global-interior points are split
    evenly along each axis and ranks on the grid's edge also own the border layers.
    ``stored[r]``: ``owned[r]`` widened by ``halo`` on every side shared with another rank
    (clipped to the grid): what rank r keeps in memory.
    """

    shape: tuple[int, ...]
    ghost_depth: int
    halo: int
    dims: tuple[int, ...]
    owned: tuple[Box, ...]
    stored: tuple[Box, ...]
    coords: tuple[tuple[int, ...], ...]

    @staticmethod
    def build(shape: Sequence[int], ghost_depth: int, halo: int, dims: Sequence[int]
              ) -> Decomposition:
        from asp_core.mpi import block_range

        shape = tuple(int(s) for s in shape)
        dims = tuple(int(d) for d in dims)
        g = int(ghost_depth)
        nranks = int(np.prod(dims))
        owned, stored, coords = [], [], []
        for r in range(nranks):
            c = tuple(int(v) for v in np.unravel_index(r, dims))  # row-major, as MPI_Cart
            ob, sb = [], []
            for n, d, ci in zip(shape, dims, c):
                lo, hi = block_range(n - 2 * g, d, ci)
                lo, hi = lo + g, hi + g
                if ci == 0:
                    lo = 0
                if ci == d - 1:
                    hi = n
                ob.append((lo, hi))
                sb.append((lo if ci == 0 else max(0, lo - halo),
                           hi if ci == d - 1 else min(n, hi + halo)))
            owned.append(tuple(ob))
            stored.append(tuple(sb))
            coords.append(c)
        return Decomposition(shape, g, int(halo), dims, tuple(owned), tuple(stored),
                             tuple(coords))

    def compute_box(self, rank: int) -> Box:
        """Points rank ``rank``'s local kernel call computes: its stored box less the border."""
        g = self.ghost_depth
        return tuple((lo + g, hi - g) for lo, hi in self.stored[rank])

    def halo_free_box(self, rank: int) -> Box:
        """Points of the compute box whose stencil needs no halo value (overlap variant)."""
        g = self.ghost_depth
        cb = self.compute_box(rank)
        inner = []
        for (olo, ohi), (slo, shi) in zip(self.owned[rank], self.stored[rank]):
            inner.append((olo + g if slo < olo else olo, ohi - g if shi > ohi else ohi))
        # a block no wider than 2 * ghost_depth has no such point: an empty box INSIDE the
        # compute box (an inverted one, lo > hi, made the shell run points twice or outside)
        box = []
        for (ilo, ihi), (clo, chi) in zip(_intersect(cb, tuple(inner)), cb):
            lo = min(max(ilo, clo), chi)
            box.append((lo, min(max(ihi, lo), chi)))
        return tuple(box)


@dataclass
class _Plan:
    """The geometry of one rank's halo exchange: (peer, global box) to receive and to send
    (the grid turns it into its :class:`~asp_core.mpi.HaloExchange`)."""

    recv: list[tuple[int, Box]] = field(default_factory=list)
    send: list[tuple[int, Box]] = field(default_factory=list)


#: the next grid number this process may give (see :func:`_agreed_serial`)
_NEXT_SERIAL = [0]


def _agreed_serial(comm: Any) -> int:
    """Collective (at grid creation only): a number for the new grid that is the same on every
    rank of ``comm`` and that no other grid of this process has: the largest next number of the
    ranks (a rank may have made grids on other communicators meanwhile)."""
    from asp_core.mpi import import_mpi

    serial = int(comm.allreduce(_NEXT_SERIAL[0], op=import_mpi().MAX))
    _NEXT_SERIAL[0] = serial + 1
    return serial


#: (dims, group, Cartesian communicator) made for grids so far, reused by later grids
_CARTS: list[tuple[tuple[int, ...], Any, Any]] = []


def _cart(comm: Any, dims: tuple[int, ...]) -> Any:
    """Collective: the Cartesian communicator of ``dims`` over ``comm``'s processes.

    Made once per process group and ``dims`` and shared by every later grid (one per grid
    was never freed: MPICH ran out of communicators after about 2000 grids, "Too many
    communicators"). Every member of the group made the same carts over it, in the same
    order, so every rank finds the same one (or none, and all of them make it); a cart over
    the same processes in the same order behaves as one made from ``comm`` (``reorder=False``:
    the same ranks)."""
    from asp_core.mpi import import_mpi

    MPI = import_mpi()
    group = comm.Get_group()
    try:
        for d, g, cart in _CARTS:
            if d == dims and MPI.Group.Compare(g, group) == MPI.IDENT:
                return cart
    finally:
        group.Free()
    cart = comm.Create_cart(dims, periods=[False] * len(dims), reorder=False)
    _CARTS.append((dims, cart.Get_group(), cart))
    return cart


def _exchange_plan(dec: Decomposition, rank: int) -> _Plan:
    plan = _Plan()
    me_stored, me_owned = dec.stored[rank], dec.owned[rank]
    for q in range(len(dec.owned)):
        if q == rank:
            continue
        rb = _intersect(me_stored, dec.owned[q])
        if not _box_empty(rb):
            plan.recv.append((q, rb))
        sb = _intersect(dec.stored[q], me_owned)
        if not _box_empty(sb):
            plan.send.append((q, sb))
    return plan


def _agree_creation(comm: Any, with_like: bool, error: Exception | None) -> None:
    """Collective, a grid creation's first agreement (one small ``Allreduce``): raise the same
    error on every rank when a rank's arguments were refused (the first failing rank's type:
    ``TypeError`` for a ``like=`` that is no distributed grid) or when some ranks passed
    ``like=`` and others did not. Both forms must meet here, in the same collective over the
    same communicator (``like``'s is the one its grid was made from), or a rank whose ``like=``
    differs waits forever in a collective the others never enter."""
    agree_call(comm, {"like= (given or not)": "given" if with_like else "not given"}, error,
               what="DistributedStencilGrid")


class DistributedStencilGrid:
    """A global stencil grid decomposed over the ranks of ``comm``.

    :param shape: the global shape, ghost layers included (as :class:`StencilGrid`).
    :param comm: an MPI communicator (default ``MPI.COMM_WORLD``); a Cartesian communicator
        with ``dims`` is derived from it.
    :param ghost_depth: the global grid's border depth (the kernel's reach).
    :param halo_depth: depth of the halos between ranks (default ``ghost_depth``); a multiple
        ``s * ghost_depth`` lets :func:`iterate` exchange once every ``s`` steps.
    :param dims: process-grid shape (default ``MPI.Compute_dims(size, dim)``).
    :param dtype: float64 (default) or float32; with ``like=``, default: that grid's dtype.
    :param like: another distributed grid whose decomposition (and communicator) to share
        (anything else raises the same ``TypeError`` on every rank).

    Collective: every rank must create its grids in the same order with the same arguments;
    mismatches raise the same ``ValueError`` on all ranks.
    """

    cart: Any   # the Cartesian communicator (an mpi4py Cartcomm)
    comm: Any   # the communicator the grid was made from (the cart's parent)

    def __init__(self, shape: Sequence[int] | None = None, comm: Any = None,
                 dtype: Any = None, ghost_depth: int = 1, halo_depth: int | None = None,
                 dims: Sequence[int] | None = None, *, like: DistributedStencilGrid | None = None
                 ) -> None:
        from asp_core.mpi import abort_on_uncaught, agree, import_mpi, world

        if like is not None:
            refused: Exception | None = None
            if isinstance(like, DistributedStencilGrid):
                over = like.comm
                dtype = like.dtype if dtype is None else dtype
                # collective like the other form: a rank with another dtype would send messages
                # of another size in every exchange (MPI aborts with a truncation/unpack error)
                try:
                    dtype = np.dtype(dtype)
                except TypeError as exc:
                    refused = ValueError(f"dtype: {exc}")
            else:
                # raised on this rank alone, it left the others waiting in this agreement
                # forever: take part in it over the communicator they most likely use
                over = world() if comm is None else comm
                refused = TypeError(f"like= must be a DistributedStencilGrid, got "
                                    f"{type(like).__name__}")
            _agree_creation(over, True, refused)
            assert isinstance(like, DistributedStencilGrid)
            check_same(like.cart, str(dtype), "dtype of a grid created with like=")
            self._init_like(like, dtype, _agreed_serial(like.cart))
            return
        dtype = np.float64 if dtype is None else dtype
        MPI = import_mpi()
        comm = MPI.COMM_WORLD if comm is None else comm
        abort_on_uncaught(comm)
        error = None
        try:
            template = StencilGrid(shape if shape is not None else (), dtype=dtype,
                                   ghost_depth=ghost_depth)
        except (TypeError, ValueError) as exc:
            template, error = None, str(exc)
        _agree_creation(comm, False, None if error is None else ValueError(error))
        assert template is not None
        g = template.ghost_depth
        halo = g if halo_depth is None else halo_depth
        if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < g:
            error = f"halo_depth must be an int >= ghost_depth ({g}), got {halo_depth!r}"
        elif g == 0 and halo != 0:
            error = "halo_depth must be 0 for a grid with ghost_depth 0"
        agree(comm, error)
        size = comm.Get_size()
        # checked on every rank (a dims that int() refused raised on its rank alone and the
        # others waited in check_same; int() also truncated dims=(2.7, 1) to (2, 1))
        given, dims = dims, (MPI.Compute_dims(size, template.dim) if dims is None else dims)
        try:
            dims = tuple(dims)
        except TypeError:
            pass
        if not isinstance(dims, tuple) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_))
                for d in dims):
            error = f"dims must be a sequence of ints (one per axis), got {given!r}"
        agree(comm, error)
        dims = tuple(int(d) for d in dims)
        check_same(comm, (template.shape, str(template.data.dtype), g, int(halo), dims),
                   "grid (shape, dtype, ghost_depth, halo_depth, dims)")
        if len(dims) != template.dim or int(np.prod(dims)) != size or min(dims) < 1:
            raise ValueError(f"dims {dims} do not match a {template.dim}-D grid on {size} ranks "
                             f"(their product must be the number of ranks)")
        inner = tuple(n - 2 * g for n in template.shape)
        if any(i < d for i, d in zip(inner, dims)):
            raise ValueError(f"the grid's interior {inner} (shape {template.shape} less "
                             f"ghost_depth {g} on each side) is smaller than the process grid "
                             f"{dims}: every rank needs at least one interior point along each "
                             f"axis; use fewer ranks or pass dims=")
        serial = _agreed_serial(comm)
        self.cart = _cart(comm, dims)
        self.comm = comm
        self.dec = Decomposition.build(template.shape, g, int(halo), dims)
        self._setup(template.data.dtype, template.neighbor_definition, serial)

    def _init_like(self, other: DistributedStencilGrid, dtype: Any, serial: int) -> None:
        self.cart, self.comm, self.dec = other.cart, other.comm, other.dec
        self._setup(np.dtype(dtype), [list(ids) for ids in other.neighbor_definition], serial)

    def _setup(self, dtype: Any, neighbor_definition: list, serial: int) -> None:
        #: this grid's number, the same on every rank (grids are created collectively), so
        #: ranks passing other grids (or the same ones in another order) are told apart
        self.serial = serial
        self.rank = self.cart.Get_rank()
        self.size = self.cart.Get_size()
        self.shape: tuple[int, ...] = self.dec.shape
        self.dim = len(self.shape)
        self.ghost_depth = self.dec.ghost_depth
        self.halo_depth = self.dec.halo
        self.dims = self.dec.dims
        self.owned_box: Box = self.dec.owned[self.rank]
        self.stored_box: Box = self.dec.stored[self.rank]
        self.origin = tuple(lo for lo, _ in self.stored_box)
        self.local = StencilGrid(tuple(hi - lo for lo, hi in self.stored_box), dtype=dtype,
                                 ghost_depth=self.ghost_depth)
        self.neighbor_definition = neighbor_definition
        self._plan = _exchange_plan(self.dec, self.rank)
        self._halo = HaloExchange(
            self.cart, {q: _slices(box, self.origin) for q, box in self._plan.send},
            {q: _slices(box, self.origin) for q, box in self._plan.recv}, tag=_TAG)

    # -- views ----------------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        return self.local.data.dtype

    @property
    def owned_slices(self) -> tuple[slice, ...]:
        """This rank's block as slices of the global array."""
        return tuple(slice(lo, hi) for lo, hi in self.owned_box)

    @property
    def owned(self) -> np.ndarray:
        """This rank's block of the global grid (a view into the local array)."""
        return self.local.data[_slices(self.owned_box, self.origin)]

    def neighbor_ranks(self) -> list[int]:
        """Ranks this rank receives halo data from."""
        return [q for q, _ in self._plan.recv]

    def load_global(self, array: Any) -> None:
        """Fill the local array (block and halo) from a global array every rank holds."""
        arr = np.asarray(array.data if isinstance(array, StencilGrid) else array)
        if arr.shape != self.shape:
            raise ValueError(f"global array has shape {arr.shape}, the grid is {self.shape}")
        self.local.data[...] = arr[tuple(slice(lo, hi) for lo, hi in self.stored_box)]

    @classmethod
    def from_global(cls, grid: StencilGrid | np.ndarray, comm: Any = None, *,
                    halo_depth: int | None = None, dims: Sequence[int] | None = None,
                    ghost_depth: int | None = None) -> DistributedStencilGrid:
        """The decomposition of a grid that every rank holds in full (no communication but
        the grid's collective creation). A periodic ``StencilGrid`` is refused (``ValueError``
        on every rank): the halos between ranks do not wrap around."""
        from asp_core.mpi import import_mpi

        # a periodic grid ran as a non-periodic one: results silently differed from one process
        periodic = bool(isinstance(grid, StencilGrid) and grid.periodic)
        # converted before the agreement: a grid that does not convert (a ragged list) raised
        # on its rank alone, the others waiting in the creation's agreement forever
        error = None
        try:
            arr = grid.data if isinstance(grid, StencilGrid) else np.asarray(grid)
        except (TypeError, ValueError) as exc:
            error = f"from_global: the grid does not convert to an array: {exc}"
        seen = (import_mpi().COMM_WORLD if comm is None else comm).allgather((periodic, error))
        failed = [f"rank {r}: {e}" for r, (_, e) in enumerate(seen) if e is not None]
        if failed:
            raise ValueError("; ".join(failed))
        ranks = [r for r, (p, _) in enumerate(seen) if p]
        if ranks:
            raise ValueError("from_global: a periodic StencilGrid (periodic=True) cannot be "
                             "distributed: the halos between ranks do not wrap around, so the "
                             "results would differ from one process (periodic on rank"
                             f"{'s' * (len(ranks) > 1)} {', '.join(map(str, ranks))})")
        g = grid.ghost_depth if isinstance(grid, StencilGrid) else (
            1 if ghost_depth is None else ghost_depth)
        out = cls(arr.shape, comm, dtype=arr.dtype, ghost_depth=g, halo_depth=halo_depth,
                  dims=dims)
        if isinstance(grid, StencilGrid):
            out.neighbor_definition = [list(ids) for ids in grid.neighbor_definition]
        out.load_global(arr)
        return out

    def _root(self, root: Any) -> int:
        """``root`` checked on every rank (:func:`asp_core.mpi.check_root`)."""
        return check_root(self.cart, root)

    def scatter(self, array: np.ndarray | None, root: int = 0) -> None:
        """Collective: distribute ``array`` (significant on ``root`` only) over the ranks."""
        from asp_core.mpi import agree

        root = self._root(root)
        error, src = None, None
        if self.rank == root:
            # converted before the agreement: an array that does not convert (or a
            # StencilGrid, which load_global takes) raised on the root alone, the others
            # waiting for their blocks forever
            try:
                src = np.asarray(array.data if isinstance(array, StencilGrid) else array,
                                 dtype=self.dtype)
            except (TypeError, ValueError) as exc:
                error = f"scatter: root's array does not convert to {self.dtype}: {exc}"
            else:
                if array is None or src.shape != self.shape:
                    error = (f"scatter: root must pass an array of the grid's shape "
                             f"{self.shape}, got {None if array is None else src.shape}")
        agree(self.cart, error)
        if self.rank == root:
            assert src is not None
            reqs, bufs = [], []  # the buffers must live until their sends complete
            for q in range(self.size):
                sl = tuple(slice(lo, hi) for lo, hi in self.dec.stored[q])
                if q == root:
                    self.local.data[...] = src[sl]
                else:
                    bufs.append(np.ascontiguousarray(src[sl]))
                    reqs.append(self.cart.Isend(bufs[-1], dest=q, tag=_TAG + 1))
            for r in reqs:
                r.Wait()
        else:
            self.cart.Recv(self.local.data, source=root, tag=_TAG + 1)

    def gather(self, root: int = 0) -> np.ndarray | None:
        """Collective: the global array on ``root`` (``None`` elsewhere)."""
        root = self._root(root)
        mine = np.ascontiguousarray(self.owned)
        if self.rank != root:
            self.cart.Send(mine, dest=root, tag=_TAG + 2)
            return None
        out = np.empty(self.shape, dtype=self.dtype)
        for q in range(self.size):
            sl = tuple(slice(lo, hi) for lo, hi in self.dec.owned[q])
            if q == root:
                out[sl] = mine
            else:
                buf = np.empty(tuple(hi - lo for lo, hi in self.dec.owned[q]), self.dtype)
                self.cart.Recv(buf, source=q, tag=_TAG + 2)
                out[sl] = buf
        return out

    def allgather(self) -> np.ndarray:
        """Collective: the global array on every rank."""
        out = self.gather(0)
        if out is None:  # every rank but 0
            out = np.empty(self.shape, dtype=self.dtype)
        self.cart.Bcast(out, root=0)
        return out

    def to_stencil_grid(self, root: int = 0) -> StencilGrid | None:
        """Collective: a global :class:`StencilGrid` on ``root`` (``None`` elsewhere)."""
        data = self.gather(root)
        if data is None:
            return None
        g = StencilGrid(self.shape, dtype=self.dtype, ghost_depth=self.ghost_depth)
        g.data = data
        g.neighbor_definition = [list(ids) for ids in self.neighbor_definition]
        return g

    def __repr__(self) -> str:
        return (f"DistributedStencilGrid(shape={list(self.shape)}, dtype={self.dtype}, "
                f"ghost_depth={self.ghost_depth}, halo_depth={self.halo_depth}, "
                f"dims={list(self.dims)}, rank={self.rank}, owned={self.owned_box})")


# -- kernels -------------------------------------------------------------------------------------

# weakly keyed: a dict kept every kernel class a factory or a re-run notebook cell made
_CHECKED: weakref.WeakKeyDictionary[type, tuple[str | None, bool, str | None]] = \
    weakref.WeakKeyDictionary()
#: per kernel class and local key: whether a loop of the kernel is a Gauss-Seidel sweep
_SEQUENTIAL: weakref.WeakKeyDictionary[type, dict[Hashable, bool]] = weakref.WeakKeyDictionary()


def check_kernel(kernel: Any, grids: Sequence[Any] | None = None, key: Hashable = None
                 ) -> bool:
    """Refuse kernels a decomposition cannot run; return whether the kernel reads its output.

    A kernel that loops over ``border_points()`` would write the block edges of every rank
    instead of the grid's border, so it raises ``ValueError``; so does a Gauss-Seidel sweep
    (a grid the kernel writes read at another point), whose result depends on the order of
    the points, which blocks change (it ran, and differed from one process). Its source only
    makes a kernel a suspect (``out[y]`` of ``out.neighbors(x, 0)`` is the point itself): the
    domain IR for the local ``grids`` (of key ``key``) decides, when they are given. Reading the
    output grid at the point itself (``out[x] = out[x] + ...``) is allowed; the output's halo
    then travels with the inputs.
    """
    cls = type(kernel)
    if cls not in _CHECKED:
        func = kernel_function(kernel)
        try:
            # the frontend's reading (a docstring at column 0, a lambda, an edited file) of
            # the function a decorator wraps: what a Python run on each rank executes too
            fn = kernel_source(inspect.unwrap(getattr(func, "__func__", func))).function
        except Unspecializable:
            # no source: assume the worst about reading the output
            _CHECKED[cls] = (None, True, None)
        else:
            params = [a.arg for a in fn.args.args]
            out_name = params[-1] if len(params) >= 2 else None
            problem = suspect = None
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr == "border_points":
                    problem = (f"{cls.__name__}.kernel loops over border_points() (line "
                               f"{func.__code__.co_firstlineno + node.lineno - 1}); a "
                               "distributed grid runs kernels that update interior points only, "
                               "because the border of a rank's block is not the grid's border")
            before: set[str] = set()   # the grids earlier point loops wrote
            for loop, x in _point_loops(fn):
                line = func.__code__.co_firstlineno - 1
                if (read := _read_elsewhere(loop, x, stored_grids(loop))) is not None:
                    suspect = (f"{cls.__name__}.kernel reads grid '{read[0]}', which it "
                               f"writes, at another point than {x} (line {line + read[1]}): a "
                               "Gauss-Seidel sweep, whose result depends on the order of the "
                               "points, which a decomposition into blocks changes")
                elif (read := _read_elsewhere(loop, x, before)) is not None:
                    suspect = (f"{cls.__name__}.kernel reads grid '{read[0]}' at another "
                               f"point than {x} (line {line + read[1]}) after an earlier "
                               "point loop wrote it: the halo of a rank's block would still "
                               "hold the values from before that loop (halos travel once a "
                               "sweep, before it)")
                local = _local_use(loop, x, set(params[1:]))   # the grids
                if local is not None and problem is None:
                    problem = (f"{cls.__name__}.kernel {local[0]} (line {line + local[1]}): "
                               "each rank runs it on its own block, whose positions, shape "
                               "and edges are not the grid's")
                before |= stored_grids(loop)
            reads_out = _reads_output(fn, out_name) if out_name else True
            _CHECKED[cls] = (problem, reads_out, suspect)
    problem, reads_out, suspect = _CHECKED[cls]
    if problem:
        raise ValueError(problem)
    if suspect and grids is not None and _sequential(kernel, grids, key):
        raise ValueError(suspect)
    return reads_out


def _sequential(kernel: Any, grids: Sequence[Any], key: Hashable) -> bool:
    """Whether a point loop of ``kernel`` on these local grids reads, at another point, a grid
    it writes (:attr:`~asp_stencil.dast.PointLoop.sequential` of its domain IR, offsets
    known) or one an earlier loop wrote (its halo is stale); a kernel outside the DSL counts
    as one (nothing tells its reads apart)."""
    from asp_core.ir import walk

    memo = _SEQUENTIAL.setdefault(type(kernel), {})
    if key not in memo:
        try:
            _, dast = kernel.kernel.analyse(*grids)
        except Exception:  # noqa: BLE001 - not specialisable: the source's suspicion stands
            memo[key] = True
        else:
            before: set[str] = set()   # the grids earlier loops stored to
            found = False
            for loop in (n for n in walk(dast) if isinstance(n, D.PointLoop)):
                found = found or loop.reads_elsewhere(D.written_grids(loop) | before)
                before |= D.written_grids(loop)
            memo[key] = found
    return memo[key]


def _output_reads(node: ast.AST, out_name: str) -> list[ast.AST]:
    """Nodes under ``node`` that read values of the output grid (``out[...]`` loads, ``out[...]
    op=`` targets, ``out`` passed to a call)."""
    reads: list[ast.AST] = []
    for n in ast.walk(node):
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Subscript):
            base = n.target.value
            if isinstance(base, ast.Name) and base.id == out_name:
                reads.append(n.target)
        elif isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load):
            if isinstance(n.value, ast.Name) and n.value.id == out_name:
                reads.append(n)
        elif isinstance(n, ast.Call):
            reads.extend(a for a in n.args if isinstance(a, ast.Name) and a.id == out_name)
    return reads


def _point_loops(fn: ast.AST, grid: str | None = None) -> list[tuple[ast.For, str]]:
    """The ``for x in g.interior_points()`` loops (of grid ``grid``, or any) and their ``x``."""
    return [(loop, loop.target.id) for loop in ast.walk(fn)
            if isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)
            and isinstance(loop.iter, ast.Call) and isinstance(loop.iter.func, ast.Attribute)
            and loop.iter.func.attr == "interior_points"
            and isinstance(loop.iter.func.value, ast.Name)
            and (grid is None or loop.iter.func.value.id == grid)]


def _read_elsewhere(loop: ast.For, x: str, written: set[str]) -> tuple[str, int] | None:
    """``(grid, line)`` of a read, in point loop ``loop``, of one of the grids ``written`` at
    another point than ``x``; None if there is none."""
    for n in ast.walk(loop):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and \
                isinstance(n.value, ast.Name) and n.value.id in written and \
                not (isinstance(n.slice, ast.Name) and n.slice.id == x):
            return n.value.id, n.lineno
    return None


def _local_use(loop: ast.For, x: str, grids: set[str]) -> tuple[str, int] | None:
    """``(what, line)`` of a use, in point loop ``loop``, of what differs between a rank's
    block and the whole grid: a point's coordinates (``x[0]``, ``x`` passed to a function
    other than ``neighbors``, ``nearest_interior`` and ``distance``), a grid's other
    attributes (``shape``, ``data``), or a write at another point than ``x`` (a kernel doing
    so runs in Python, on the block). None if there is none."""
    points = {x} | {n.target.id for n in ast.walk(loop) if isinstance(n, ast.For)
                    and isinstance(n.target, ast.Name) and isinstance(n.iter, ast.Call)
                    and isinstance(n.iter.func, ast.Attribute)
                    and n.iter.func.attr == "neighbors"}
    allowed: set[int] = set()   # the Name nodes of points used as the DSL uses them
    for n in ast.walk(loop):
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and \
                n.value.id in grids:
            allowed.add(id(n.slice))
            if isinstance(n.ctx, ast.Store) and not (isinstance(n.slice, ast.Name)
                                                     and n.slice.id == x):
                return f"writes grid '{n.value.id}' at another point than {x}", n.lineno
        elif isinstance(n, ast.Call) and (
                isinstance(n.func, ast.Attribute) and n.func.attr in ("neighbors",
                                                                       "nearest_interior")
                or isinstance(n.func, ast.Name) and n.func.id == "distance"):
            allowed.update(id(a) for a in n.args)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and \
                n.value.id in grids and n.attr not in DSL_METHODS:
            return f"reads {n.value.id}.{n.attr}", n.lineno
    for n in ast.walk(loop):
        if isinstance(n, ast.Name) and n.id in points and isinstance(n.ctx, ast.Load) and \
                id(n) not in allowed:
            return f"uses the position of point {n.id} ({ast.unparse(_parent(loop, n))})", \
                n.lineno
    return None


def _parent(root: ast.AST, node: ast.AST) -> ast.AST:
    """The node under ``root`` holding ``node`` (``node`` itself at the root)."""
    return next((p for p in ast.walk(root) for c in ast.iter_child_nodes(p) if c is node), node)


def _reads_output(fn: ast.AST, out_name: str) -> bool:
    """Whether the kernel reads output values it did not write in the same point update.

    ``out[x] = ...`` followed by ``out[x] += ...`` in the body of ``for x in
    out.interior_points()`` reads only the value just written, so the output's old values (and
    its halo) are not needed; any other read of the output is (Figure 2's ``out[x] = out[x] +
    ...``), and so is a write only some points get (under an ``if``): the others keep their old
    values (with a deep halo, stale ones fed the steps between exchanges).
    """
    safe: set[int] = set()
    for loop, x in _point_loops(fn, out_name):
        written = False
        for stmt in loop.body:
            if (not written and isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Subscript)
                    and isinstance(stmt.targets[0].value, ast.Name)
                    and stmt.targets[0].value.id == out_name
                    and isinstance(stmt.targets[0].slice, ast.Name)
                    and stmt.targets[0].slice.id == x
                    and not _output_reads(stmt.value, out_name)):
                written = True
                continue
            if written:
                safe.update(id(r) for r in _output_reads(stmt, out_name)
                            if isinstance(r, ast.Subscript) and isinstance(r.slice, ast.Name)
                            and r.slice.id == x)
        if not written and out_name in stored_grids(loop):
            return True   # written under a condition only
    return any(id(r) not in safe for r in _output_reads(fn, out_name))


def _check_grids(grids: Sequence[DistributedStencilGrid]) -> None:
    if len(grids) < 1:
        raise TypeError("a stencil kernel takes its grids as arguments (inputs first, output "
                        "last)")
    first = grids[0]
    for i, g in enumerate(grids):
        if not isinstance(g, DistributedStencilGrid):
            raise TypeError(f"argument {i + 1} is a {type(g).__name__}; pass only "
                            "DistributedStencilGrid objects to a distributed kernel")
        if g.dec != first.dec or g.comm != first.comm:
            raise ValueError(f"grid {i + 1} has a different decomposition ({g.dec.shape}, halo "
                             f"{g.halo_depth}, dims {g.dims}) from grid 1 ({first.dec.shape}, "
                             f"halo {first.halo_depth}, dims {first.dims}); create grids with "
                             "the same arguments or with like=")
        if g.dtype != first.dtype:
            raise TypeError(f"grid {i + 1} has dtype {g.dtype}, grid 1 {first.dtype}; a "
                            "stencil kernel needs grids of one dtype")
    for i, g in enumerate(grids[:-1]):
        if g is grids[-1]:
            raise ValueError(f"the output grid is also input grid {i + 1}; pass a separate "
                             "output grid")


def _sync_neighbors(grids: Sequence[DistributedStencilGrid]) -> None:
    for g in grids:
        g.local.neighbor_definition = g.neighbor_definition


def _agree_call(kernel: Any, grids: Sequence[Any], options: dict[str, Any], what: str,
                stats: Any, min_grids: int = 1) -> tuple[bool, Hashable]:
    """Collective, one small ``Allreduce`` per call (:func:`asp_core.mpi.agree_call`): check
    the arguments on this rank and that every rank makes the same call; return whether the
    kernel reads its output, and the local specialisation key (which validates the local
    arrays, so it is computed here, and :func:`_local_call` reuses it for the first step).

    Why every call: a rank whose arguments its own checks refuse (an aliased or read-only
    output, a grid of another decomposition) must not raise alone, or the others wait forever
    in the next halo exchange; and the ranks must run the same code on the same grids, or the
    result silently differs from one process (a kernel constant or a ``neighbor_definition``
    set on one rank only, grids passed in another order), or the job hangs (a rank whose
    specialisation key changed enters a new variant agreement while the others exchange
    halos). The arguments can change between any two calls, so once per decomposition is not
    enough; within one :func:`iterate` call they cannot, so it checks once for all its steps.
    The same error is then raised on every rank, naming what differs and on which rank.
    The kernel's attributes stay constants of its code (:func:`~asp_stencil.signature.
    keep_constant`): as parameters the key would hold their types only, and a value set on
    one rank only would go unseen.
    """
    keep_constant(kernel)
    error: Exception | None = None
    digest: int | None = None
    reads_out, key = True, None
    try:
        if len(grids) < min_grids:
            raise TypeError(f"{what}() needs at least one input grid and the output grid")
        _check_grids(grids)
        check_kernel(kernel)   # what the source alone refuses, before any local work
        _sync_neighbors(grids)
        key = stencil_signature(tuple(g.local for g in grids), {}, kernel)
        reads_out = check_kernel(kernel, [g.local for g in grids], key)
        memo = _digest_key(kernel, grids, key, options)
        digest = _DIGESTS.get(memo) if memo is not None else None
        if digest is None:
            digest = call_digest(_call_items(kernel, grids, options))
            if memo is not None:
                if len(_DIGESTS) >= 1024:
                    _DIGESTS.clear()
                _DIGESTS[memo] = digest
    except Exception as exc:  # noqa: BLE001 - raised on every rank by agree_call
        error = exc
    comm = next((g.comm for g in grids if isinstance(g, DistributedStencilGrid)), None)
    if comm is None:   # no distributed grid here: the communicator the others most likely use
        from asp_core.mpi import world

        comm = world()
    if comm.Get_size() == 1:
        if error is not None:
            raise error
        return reads_out, key
    agree_call(comm, lambda: _call_items(kernel, grids, options), error, stats=stats,
               what=f"{what}() of stencil kernel {type(kernel).__name__}", digest=digest)
    return reads_out, key


#: digests of :func:`_call_items` by :func:`_digest_key` (a few µs saved on every call)
_DIGESTS: dict[Hashable, int] = {}
_SCALARS = (int, float, bool, str, type(None), np.generic)


def _digest_key(kernel: Any, grids: Sequence[DistributedStencilGrid], key: Hashable,
                options: dict[str, Any]) -> Hashable | None:
    """What determines :func:`_call_items` exactly: the local specialisation key (neighbour
    definitions, dtypes, scalar kernel attributes by type and bits, what called names mean),
    the kernel's class, the grids' numbers and the options by type and value. None (no memo)
    when a kernel attribute is not a scalar: the key holds only its id, and its contents may
    change under the same id."""
    for name in kernel_attribute_names(kernel):
        if not isinstance(getattr(kernel, name, None), _SCALARS):
            return None
    memo = (type(kernel), key, tuple(g.serial for g in grids),
            tuple((k, type(v), v) for k, v in options.items()))
    try:
        hash(memo)
    except TypeError:  # an unhashable option value: digest it every time
        return None
    return memo


def _call_items(kernel: Any, grids: Sequence[DistributedStencilGrid], options: dict[str, Any]
                ) -> dict[str, Any]:
    """What must be the same on every rank for the ranks to compute one global sweep: the
    kernel's class, the grids (by their collective numbers), their neighbour definitions and
    dtypes, the kernel attributes the kernel reads, what the names it calls are bound to, and
    the call's ``options``. The neighbour definitions travel as their repr (exact, as they are
    normalised to tuples of ints when set), the cheapest form to digest on every call."""
    cls = type(kernel)
    n = len(grids)
    items: dict[str, Any] = {
        "kernel class": f"{cls.__module__}.{cls.__qualname__}",
        "grid arguments (grids numbered in creation order)": tuple(g.serial for g in grids),
        **options}
    for i, g in enumerate(grids):
        which = f"grid {i + 1}" + (" (the output)" if i == n - 1 else "")
        items[f"neighbor_definition of {which}"] = repr(g.local.neighbor_definition)
        items[f"dtype of {which}"] = g.local.data.dtype.str
    for name in kernel_attribute_names(kernel):
        items[f"kernel attribute self.{name}"] = getattr(kernel, name, None)
    items["names the kernel calls"] = callee_meanings(kernel)
    return items


def exchange(*grids: DistributedStencilGrid, stats: Any = None) -> None:
    """Collective: refresh the halos of ``grids`` (one packed message per neighbour rank).

    The grids must share one decomposition (``like=``): the first grid's exchange moves them
    all (a grid with another halo depth got wrong halo values, or MPI failed on the message
    sizes). Checked locally, and the grids (their numbers, given at their collective creation)
    across the ranks: ``exchange(a, b)`` on one rank and ``exchange(b, a)`` on another filled
    ``a``'s halo with ``b``'s values, and a grid more on one rank was a raw MPI error."""
    _check_grids_and_exchange(grids, stats, check=True)


def _check_grids_and_exchange(grids: Sequence[Any], stats: Any, check: bool) -> None:
    """:func:`exchange`; ``check``: agree on the grids across the ranks first (the sweeps
    agreed on their call already): first, so that an argument one rank alone refuses (not a
    grid) is refused on every rank, not there only while the others wait in the exchange."""
    mine = [g for g in grids if isinstance(g, DistributedStencilGrid)]
    if check and mine:
        check_same(mine[0].cart, [g.serial if isinstance(g, DistributedStencilGrid)
                                  else type(g).__name__ for g in grids],
                   "grids of exchange (by number)")
    for i, g in enumerate(grids):
        if not isinstance(g, DistributedStencilGrid):
            raise TypeError(f"exchange: argument {i + 1} is a {type(g).__name__}, not a "
                            "DistributedStencilGrid")
        if g.dec != grids[0].dec or g.comm != grids[0].comm:
            raise ValueError(f"exchange: grid {i + 1} has a different decomposition "
                             f"({g.dec.shape}, halo {g.halo_depth}, dims {g.dims}) from grid 1 "
                             f"({grids[0].dec.shape}, halo {grids[0].halo_depth}, dims "
                             f"{grids[0].dims}); exchange grids of one decomposition together "
                             "(create them with like=)")
    _finish_exchange(_start_exchange(list(grids), stats))


def _start_exchange(grids: list[DistributedStencilGrid], stats: Any) -> HaloExchange | None:
    """Post the halo messages of ``grids`` (all of one decomposition) on the first grid's
    exchange; returns it for :func:`_finish_exchange`."""
    if not grids:
        return None
    halo = grids[0]._halo
    halo.start(*(g.local.data for g in grids), stats=stats)
    return halo


def _finish_exchange(pending: HaloExchange | None) -> None:
    if pending is not None:
        pending.finish()


def _subgrid(g: StencilGrid, box: Box, origin: Sequence[int], ghost: int, neighbor_def: list
             ) -> tuple[StencilGrid, bool]:
    """A StencilGrid over ``box`` widened by ``ghost``: a view when contiguous, else a copy."""
    wide = tuple((lo - ghost, hi + ghost) for lo, hi in box)
    view = g.data[_slices(wide, origin)]
    sub = StencilGrid(view.shape, dtype=view.dtype, ghost_depth=ghost)  # zeros: lazily mapped
    sub.neighbor_definition = neighbor_def
    if view.flags.c_contiguous:
        sub.data = view
        return sub, True
    sub.data = np.ascontiguousarray(view)
    return sub, False


def _shell_boxes(outer: Box, inner: Box) -> list[Box]:
    """Disjoint boxes covering ``outer`` minus ``inner`` (inner inside outer)."""
    if _box_empty(inner):
        return [] if _box_empty(outer) else [outer]
    boxes = []
    cur = list(outer)
    for a in range(len(outer)):
        (olo, ohi), (ilo, ihi) = cur[a], inner[a]
        if ilo > olo:
            b = list(cur)
            b[a] = (olo, ilo)
            boxes.append(tuple(b))
        if ohi > ihi:
            b = list(cur)
            b[a] = (ihi, ohi)
            boxes.append(tuple(b))
        cur[a] = (ilo, ihi)
    return [b for b in boxes if not _box_empty(b)]


def _run_region(kernel: Any, grids: Sequence[DistributedStencilGrid], box: Box) -> None:
    """Run the kernel on the points of ``box`` only (sub-grids with the kernel's border)."""
    if _box_empty(box):
        return
    g0 = grids[0]
    subs = []
    for g in grids:
        # contiguous views stay valid as long as the local array does: keep them
        cache = g.__dict__.setdefault("_views", {})
        hit = cache.get(box)
        if hit is not None and hit.data.base is g.local.data:
            hit.neighbor_definition = g.neighbor_definition
            subs.append((hit, True))
            continue
        sub = _subgrid(g.local, box, g0.origin, g0.ghost_depth, g.neighbor_definition)
        if sub[1]:
            cache[box] = sub[0]
        subs.append(sub)
    kernel.kernel(*[s for s, _ in subs])
    out_sub, is_view = subs[-1]
    if not is_view:
        gg = g0.ghost_depth
        inner = tuple(slice(gg, n - gg) for n in out_sub.shape)
        grids[-1].local.data[_slices(box, g0.origin)] = out_sub.data[inner]


#: where a kernel object keeps its agreed variants, per (decomposition, specialisation key of
#: the local grids) (:func:`~asp_stencil.kernel.object_memo`)
_AGREED = f"{STATE_PREFIX}agreed"


def _site(kernel: Any, grids: Sequence[DistributedStencilGrid], local: list[StencilGrid],
          key: Hashable = None) -> Hashable:
    """What the agreed variant is kept under: the decomposition and the local specialisation
    key (``key``, when the caller has it). Aligned across ranks: for one decomposition each
    rank's block shapes are fixed, and :func:`sweep` and :func:`iterate` check that the rest of
    the key (dtype, neighbour definitions, kernel attributes) is the same on every rank, so it
    changes on every rank at once. The communicator is part of it: a rank in two process
    groups (overlapping communicators) with decompositions of the same shapes reused one
    group's agreement for the other, skipping the other's collective creation (a hang); its
    cart is one per group and dims in a process (:func:`_cart`), kept alive, so its id is a
    stable name."""
    dec = grids[0].dec
    return ((id(grids[0].cart), dec.shape, dec.ghost_depth, dec.halo, dec.dims),
            stencil_signature(tuple(local), {}, kernel) if key is None else key)


def tuned_variant(kernel: Any, *grids: DistributedStencilGrid) -> str | None:
    """The variant every rank runs for ``kernel`` (the user's kernel, or what
    :func:`distribute` made of it) on these grids once the collective tuning has decided; None
    before the first call, while tuning, or when the kernel is not specialised.  Local (no
    communication)."""
    if isinstance(kernel, DistributedKernel):   # its decisions are its inner kernel's
        kernel = kernel.inner
    local = [g.local for g in grids]
    sites: dict[Hashable, AgreedVariants] = object_memo(kernel, _AGREED, dict)
    agreed = sites.get(_site(kernel, grids, local))
    return agreed.winner if agreed is not None else None


def _local_call(kernel: Any, grids: Sequence[DistributedStencilGrid], key: Hashable = None
                ) -> None:
    """The kernel on every rank's whole block, with the variant the ranks agreed on (created
    collectively on a new decomposition or key; ``key``: the local key, if just computed)."""
    local = [g.local for g in grids]
    sites: dict[Hashable, AgreedVariants] = object_memo(kernel, _AGREED, dict)
    site = _site(kernel, grids, local, key)
    agreed = sites.get(site)
    if agreed is None:  # a pure-Python kernel on every rank when any rank cannot specialise
        from asp_core.collective import AgreedVariants

        agreed = sites[site] = AgreedVariants(kernel.kernel, tuple(local), grids[0].cart,
                                              what=f"stencil kernel {kernel.kernel.name!r}")
    agreed(*local)


def sweep(kernel: Any, *grids: DistributedStencilGrid, overlap: bool = False,
          stats: Any = None) -> DistributedStencilGrid:
    """Collective: one kernel call on distributed grids (halo exchange, then the local call).

    ``overlap=True`` computes the halo-independent points while the messages travel.
    Returns the output grid. Arguments refused on any rank, or differing across ranks, raise
    the same error on every rank first (:func:`_agree_call`).
    """
    reads_out, key = _agree_call(kernel, grids, {"overlap": overlap}, "sweep", stats)
    travel = list(grids) if reads_out else list(grids[:-1])
    _step(kernel, grids, travel, overlap, stats, key)
    return grids[-1]


def _step(kernel: Any, grids: Sequence[DistributedStencilGrid],
          travel: list[DistributedStencilGrid], overlap: bool, stats: Any,
          key: Hashable = None) -> None:
    g0 = grids[0]
    if not overlap:
        _check_grids_and_exchange(travel, stats, check=False)
        _local_call(kernel, grids, key)
        return
    pending = _start_exchange(travel, stats)
    inner = g0.dec.halo_free_box(g0.rank)
    _run_region(kernel, grids, inner)
    _finish_exchange(pending)
    for box in _shell_boxes(g0.dec.compute_box(g0.rank), inner):
        _run_region(kernel, grids, box)


def iterate(kernel: Any, *grids: DistributedStencilGrid, steps: int,
            exchange_every: int | None = None, overlap: bool = False, stats: Any = None
            ) -> DistributedStencilGrid:
    """Collective: ``steps`` sweeps with Jacobi ping-pong, as ``StencilKernel.iterate``.

    Halos are exchanged once every ``exchange_every`` steps (default: as many as the halo allows,
    ``halo_depth // ghost_depth``); between exchanges each rank recomputes the part of its halo
    that later steps need. Returns the grid holding the last result.
    """
    # one agreement for all the steps (a rank with other steps would wait in an exchange the
    # others never start); the values are then checked alike on every rank
    reads_out, key = _agree_call(kernel, grids, {"steps": steps, "exchange_every": exchange_every,
                                                 "overlap": overlap}, "iterate", stats,
                                 min_grids=2)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    g0 = grids[0]
    g = max(g0.ghost_depth, 1)
    most = max(1, g0.halo_depth // g)
    s = most if exchange_every is None else exchange_every
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= most:
        raise ValueError(f"exchange_every must be an int in 1..{most} (halo_depth "
                         f"{g0.halo_depth} // ghost_depth {g0.ghost_depth}), got "
                         f"{exchange_every!r}; create the grids with a deeper halo_depth")
    gs = list(grids)
    # the inputs before the state that the kernel writes are no constants: their halos travel
    # every step (their values change in every step, and no halo deep enough for several
    # steps is recomputed for them)
    changing = {i for i in written_inputs(kernel) if i < len(gs) - 2}
    if changing:
        s = 1
    constants_fresh = False
    done = 0
    while done < steps:
        block = min(s, steps - done)
        # what must travel: the grids read in this block: the inputs (the constant ones only
        # once), and the output if the kernel reads it, or once when a block has several steps
        # (the output is read from step 2 on, and the grid border inside its halo must be right)
        first = not constants_fresh
        travel = [gr for i, gr in enumerate(gs[:-2]) if first or i in changing] + [gs[-2]]
        if reads_out or (block > 1 and first):
            travel.append(gs[-1])
        constants_fresh = True
        for j in range(block):
            if j == 0:   # the key of the grids in their order at the start
                _step(kernel, gs, travel, overlap, stats, key if done == 0 else None)
            else:
                _local_call(kernel, gs)
            gs[-1], gs[-2] = gs[-2], gs[-1]
        done += block
    return gs[-2]   # with no step, the state: the first grid


class DistributedKernel:
    """A user's ``StencilKernel`` instance driven over distributed grids.

    ``DistributedKernel(k).kernel(a, b)`` and ``.iterate(a, b, steps=T)`` mirror the
    single-process API; the specialisation, tuning and caching are ``k``'s own.
    """

    def __init__(self, kernel: Any, *, overlap: bool = False) -> None:
        check_kernel(kernel)
        self.inner = kernel
        self.overlap = overlap
        from asp_core.mpi import CommStats

        self.stats = CommStats()

    def kernel(self, *grids: DistributedStencilGrid) -> DistributedStencilGrid:
        return sweep(self.inner, *grids, overlap=self.overlap, stats=self.stats)

    __call__ = kernel

    def iterate(self, *grids: DistributedStencilGrid, steps: int,
                exchange_every: int | None = None) -> DistributedStencilGrid:
        return iterate(self.inner, *grids, steps=steps, exchange_every=exchange_every,
                       overlap=self.overlap, stats=self.stats)


def distribute(kernel: Any, *, overlap: bool = False) -> DistributedKernel:
    """``distribute(MyKernel())``: the kernel, for :class:`DistributedStencilGrid` arguments."""
    return DistributedKernel(kernel, overlap=overlap)
