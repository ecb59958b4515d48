"""`StencilGrid`: the paper's structured grid, and `distance`.

The grid is a thin wrapper around a NumPy array (``.data``, user-assignable) with the point
iterators of the stencil DSL. Its methods are the pure-Python semantics the specializer must
reproduce exactly: the specialised code never calls them, the fallback path does.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["StencilGrid", "distance", "default_neighbor_definition", "fill_periodic_ghosts",
           "check_ghost_depth", "check_neighbor_definition", "check_neighbor_offsets",
           "DSL_METHODS", "dsl_overrides", "NeighborIdError"]

Point = tuple[int, ...]


class NeighborIdError(ValueError, IndexError):
    """A neighbour id the grid's ``neighbor_definition`` does not have: an ``IndexError`` as
    Python's list indexing raises it, and a ``ValueError`` as any bad argument of a grid (as
    NumPy's ``AxisError`` is both)."""


def default_neighbor_definition(dim: int) -> list[list[Point]]:
    """Id 0: the centre; id 1: the 2·dim face neighbours (+1 then -1 along each axis)."""
    zero = (0,) * dim
    faces: list[Point] = []
    for axis in range(dim):
        for step in (1, -1):
            p = list(zero)
            p[axis] = step
            faces.append(tuple(p))
    return [[zero], faces]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_ghost_depth(value: Any) -> int:
    """``value`` as a ghost depth, or the ``ValueError`` that both the compiled and the
    pure-Python paths raise (a float such as 1.5 would otherwise be truncated by C)."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"ghost_depth must be an int >= 0, got {value!r}")
    return int(value)


def check_neighbor_definition(value: Any, dim: int) -> list[list[Point]]:
    """``value`` as a neighbour definition: a list (one per neighbour id) of offsets, each a
    tuple of ``dim`` ints. Raises the same ``ValueError`` in every mode (an offset ``1.7`` or
    ``"1"`` would otherwise be truncated by compiled code and fail differently in Python)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"neighbor_definition must be a list of lists of offsets, got "
                         f"{type(value).__name__}")
    return [check_neighbor_offsets(i, offsets, dim) for i, offsets in enumerate(value)]


def check_neighbor_offsets(i: int, offsets: Any, dim: int) -> list[Point]:
    """``offsets``, neighbour id ``i`` of a definition, as a list of ``dim``-int tuples, or
    the ``ValueError`` of :func:`check_neighbor_definition`. Also checked alone: a row changed
    in place after the setter ran is refused only if the kernel reads that id."""
    if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__iter__"):
        raise ValueError(f"neighbor_definition[{i}] must be a list of offsets, got {offsets!r}")
    row: list[Point] = []
    for j, off in enumerate(offsets):
        coords = tuple(off) if hasattr(off, "__iter__") and not isinstance(
            off, (str, bytes)) else None
        if coords is None or len(coords) != dim or not all(_is_int(c) for c in coords):
            raise ValueError(f"neighbor_definition[{i}][{j}] = {off!r}: an offset must be "
                             f"a tuple of {dim} ints")
        row.append(tuple(int(c) for c in coords))
    return row


class StencilGrid:
    """A ``dim``-dimensional grid whose outer ``ghost_depth`` layers are the border.

    ``shape`` includes the ghost layers (as in the original Asp): ``interior_points()`` are the
    points at least ``ghost_depth`` away from every edge, ``border_points()`` all the others.

    ``dtype``: the element type (float64 by default; float32 and integer grids are compiled too,
    and a kernel's arithmetic follows NumPy's rules for scalars of these types).
    ``periodic=True``: before each sweep of a kernel (each call, each step of ``iterate``) the
    ghost cells are filled by wrap-around from the opposite side of the interior
    (:meth:`fill_ghosts`), so interior points near an edge read their periodic neighbours.
    """

    def __init__(self, shape: Sequence[int], dtype: Any = np.float64, ghost_depth: int = 1,
                 periodic: bool = False) -> None:
        try:   # ints only: int() truncated 4.7 and read the string "45" as (4, 5)
            sizes = None if isinstance(shape, (str, bytes)) else list(shape)
        except TypeError:
            sizes = None
        if sizes is None or not all(_is_int(s) for s in sizes):
            raise TypeError(f"StencilGrid shape must be a sequence of ints, got {shape!r}")
        dims = tuple(int(s) for s in sizes)
        if not dims or any(s <= 0 for s in dims):
            raise ValueError(f"StencilGrid shape must be non-empty positive sizes, got {shape!r}")
        self.shape: tuple[int, ...] = dims
        self.dim: int = len(dims)
        self.ghost_depth = ghost_depth
        if not isinstance(periodic, (bool, np.bool_)):
            raise TypeError(f"periodic must be True or False, got {periodic!r}")
        self.periodic: bool = bool(periodic)
        self.data: np.ndarray = np.zeros(dims, dtype=dtype)
        self.neighbor_definition = default_neighbor_definition(self.dim)

    # validated on assignment, so a bad value fails where it is set, in every mode
    @property
    def ghost_depth(self) -> int:
        return self._ghost_depth

    @ghost_depth.setter
    def ghost_depth(self, value: Any) -> None:
        self._ghost_depth = check_ghost_depth(value)

    @property
    def neighbor_definition(self) -> list[list[Point]]:
        return self._neighbor_definition

    @neighbor_definition.setter
    def neighbor_definition(self, value: Any) -> None:
        self._neighbor_definition = check_neighbor_definition(value, self.dim)

    # -- element access -------------------------------------------------------------------
    def __getitem__(self, x: Any) -> Any:
        return self.data[x]

    def __setitem__(self, x: Any, value: Any) -> None:
        self.data[x] = value

    def fill_ghosts(self) -> None:
        """Fill the ghost cells by wrap-around: ghost index ``i`` along an axis of size ``n``
        takes the value at ``g + (i - g) mod (n - 2g)``; axes are filled in order over their
        whole extent, so edges and corners come from the diagonally opposite interior."""
        g = self.ghost_depth
        if g == 0:
            return
        for axis, n in enumerate(self.shape):
            m = n - 2 * g
            if m <= 0:
                continue
            for i in [*range(g), *range(n - g, n)]:
                src = g + (i - g) % m
                dst_idx = (slice(None),) * axis + (i,)
                self.data[dst_idx] = self.data[(slice(None),) * axis + (src,)]

    # -- point iterators (the DSL) --------------------------------------------------------
    def interior_points(self) -> Iterator[Point]:
        g = self.ghost_depth
        return itertools.product(*(range(g, n - g) for n in self.shape))

    def border_points(self) -> Iterator[Point]:
        g = self.ghost_depth
        for p in itertools.product(*(range(n) for n in self.shape)):
            if any(i < g or i >= n - g for i, n in zip(p, self.shape)):
                yield p

    def nearest_interior(self, x: Sequence[int]) -> Point:
        """The interior point nearest to ``x`` (each coordinate clamped into the interior):
        ``out[x] = u[u.nearest_interior(x)]`` in a border loop copies the adjacent interior
        value outwards (a zero-gradient, Neumann, boundary)."""
        g = self.ghost_depth
        return tuple(min(max(int(c), g), n - g - 1) for c, n in zip(x, self.shape))

    def neighbors(self, x: Sequence[int], id: int) -> Iterator[Point]:  # noqa: A002 (paper API)
        """The points at ``x`` plus each offset of neighbour id ``id``.  A point outside the
        array is the ``ValueError`` compiled code gives such an offset (below index 0 NumPy
        read the far side of the array: pure Python and fallbacks returned garbage)."""
        shape = self.data.shape
        try:
            offsets = self.neighbor_definition[id]
        except IndexError:
            raise NeighborIdError(undefined_neighbor_id(
                id, "this grid", len(self.neighbor_definition))) from None
        for offset in offsets:
            y = tuple(a + b for a, b in zip(x, offset))
            if not all(0 <= c < n for c, n in zip(y, shape)):
                raise ValueError(f"neighbour offset {tuple(offset)} of point {tuple(x)} "
                                 f"reaches {y}, outside the grid of shape {shape} (its ghost "
                                 f"depth is {self.ghost_depth}: raise ghost_depth or shrink "
                                 "the neighbourhood)")
            yield y

    def __repr__(self) -> str:
        return (f"StencilGrid(shape={list(self.shape)}, dtype={self.data.dtype}, "
                f"ghost_depth={self.ghost_depth}" + (", periodic=True)" if self.periodic else ")"))


def undefined_neighbor_id(nid: int, grid: str, count: int) -> str:
    """The message for neighbour id ``nid`` that ``grid`` (with ``count`` ids) lacks."""
    return (f"neighbour id {nid} is not defined for {grid} (its neighbor_definition has ids "
            f"0..{count - 1})")


def distance(x: Sequence[int], y: Sequence[int]) -> float:
    """Euclidean distance between two points (as in the original Asp)."""
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y)))


def fill_periodic_ghosts(grids: Sequence[Any]) -> None:
    """Before a sweep: fill the ghosts of every periodic grid among ``grids`` by wrap-around.

    Every way a kernel runs calls this first (the compiled callables, the Python platform, the
    dispatcher's fallback and ``StencilKernel.pure_python``), so all of them see the same data.
    """
    for g in grids:
        if getattr(g, "periodic", False):
            g.fill_ghosts()


#: the :class:`StencilGrid` methods whose meaning compiled code builds in (the DSL's point
#: loops, neighbours, Neumann clamp, reads and writes): it never calls them
DSL_METHODS = ("interior_points", "border_points", "neighbors", "nearest_interior",
               "__getitem__", "__setitem__")
#: those Python looks up on the instance first (not the dunders)
_INSTANCE_METHODS = frozenset(DSL_METHODS[:4])


#: ndarray subclasses whose indexing replaces NumPy's without changing an element's value at
#: a point (``memmap.__getitem__`` only turns slices into plain arrays; ``matrix`` keeps 2-D
#: shapes for slices and rows, while a grid reads and writes whole points, as plain arrays do)
_VALUE_PRESERVING_ARRAYS = (np.memmap, np.matrix)


def _array_overrides(cls: type) -> tuple[str, ...]:
    """``__getitem__``/``__setitem__`` where the ndarray subclass ``cls`` of a grid's ``.data``
    replaces NumPy's: a grid's reads and writes go through them in Python (``u[x]`` is
    ``u.data[x]``) but compiled code reads the memory (a clipping ``__setitem__`` was
    ignored), so they count as the grid's own DSL methods. Looked up at each call, as for
    a grid's class (:func:`dsl_overrides`)."""
    return tuple(n for n in ("__getitem__", "__setitem__")
                 if all(getattr(cls, n) is not getattr(base, n)
                        for base in (np.ndarray, *_VALUE_PRESERVING_ARRAYS)))


def dsl_overrides(grid: Any) -> tuple[str, ...]:
    """The :data:`DSL_METHODS` that ``grid`` does not take from :class:`StencilGrid` (a subclass
    or the instance replaced them, or a grid-like object of another class, or the ndarray
    subclass of its ``.data`` replaced NumPy's indexing): kernels using them must run in
    Python, where they are called. Part of the specialisation key (hot path)."""
    cls = type(grid)
    if cls is StencilGrid:
        found: tuple[str, ...] = ()
    else:
        # looked up at each call (six attributes, a grid subclass's only): kept per class, a
        # method patched on the class after its first call (``G.__getitem__ = ...``) was
        # never seen, and compiled code ran where the kernel had to run in Python
        found = tuple(n for n in DSL_METHODS
                      if getattr(cls, n, None) is not getattr(StencilGrid, n))
    data = getattr(grid, "data", None)
    if type(data) is not np.ndarray and isinstance(data, np.ndarray):
        found = tuple(sorted({*found, *_array_overrides(type(data))}, key=DSL_METHODS.index))
    own = getattr(grid, "__dict__", None)
    if own and not _INSTANCE_METHODS.isdisjoint(own):
        # methods assigned on the instance (Python looks them up there first)
        return tuple(n for n in DSL_METHODS
                     if n in found or (n in own and n in _INSTANCE_METHODS))
    return found
