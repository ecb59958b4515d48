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

__all__ = ["StencilGrid", "distance", "default_neighbor_definition", "check_ghost_depth",
           "check_neighbor_definition"]

Point = tuple[int, ...]


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
    out: list[list[Point]] = []
    for i, offsets in enumerate(value):
        if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__iter__"):
            raise ValueError(f"neighbor_definition[{i}] must be a list of offsets, got "
                             f"{offsets!r}")
        row: list[Point] = []
        for j, off in enumerate(offsets):
            coords = tuple(off) if hasattr(off, "__iter__") and not isinstance(
                off, (str, bytes)) else None
            if coords is None or len(coords) != dim or not all(_is_int(c) for c in coords):
                raise ValueError(f"neighbor_definition[{i}][{j}] = {off!r}: an offset must be "
                                 f"a tuple of {dim} ints")
            row.append(tuple(int(c) for c in coords))
        out.append(row)
    return out


class StencilGrid:
    """A ``dim``-dimensional grid whose outer ``ghost_depth`` layers are the border.

    ``shape`` includes the ghost layers (as in the original Asp): ``interior_points()`` are the
    points at least ``ghost_depth`` away from every edge, ``border_points()`` all the others.
    """

    def __init__(self, shape: Sequence[int], dtype: Any = np.float64, ghost_depth: int = 1) -> None:
        try:
            dims = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"StencilGrid shape must be a sequence of ints, got {shape!r}") from None
        if not dims or any(s <= 0 for s in dims):
            raise ValueError(f"StencilGrid shape must be non-empty positive sizes, got {shape!r}")
        self.shape: tuple[int, ...] = dims
        self.dim: int = len(dims)
        self.ghost_depth = ghost_depth
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

    # -- point iterators (the DSL) --------------------------------------------------------
    def interior_points(self) -> Iterator[Point]:
        g = self.ghost_depth
        return itertools.product(*(range(g, n - g) for n in self.shape))

    def border_points(self) -> Iterator[Point]:
        g = self.ghost_depth
        for p in itertools.product(*(range(n) for n in self.shape)):
            if any(i < g or i >= n - g for i, n in zip(p, self.shape)):
                yield p

    def neighbors(self, x: Sequence[int], id: int) -> Iterator[Point]:  # noqa: A002 (paper API)
        for offset in self.neighbor_definition[id]:
            yield tuple(a + b for a, b in zip(x, offset))

    def __repr__(self) -> str:
        return (f"StencilGrid(shape={list(self.shape)}, dtype={self.data.dtype}, "
                f"ghost_depth={self.ghost_depth})")


def distance(x: Sequence[int], y: Sequence[int]) -> float:
    """Euclidean distance between two points (as in the original Asp)."""
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y)))
