"""The points of a point loop as disjoint boxes, so each statement becomes one slice per box.

``interior_points()`` is one box: ``[g, n - g)`` in every dimension (``g`` = the ghost depth of
the loop's grid). ``border_points()`` is the rest of the grid, split into at most ``2 * dim``
slabs: along dimension ``d``, the low and the high ``g`` layers, restricted to the interior in the
dimensions before ``d`` and spanning the whole grid after it; the slabs are disjoint and cover the
border exactly once. The order in which points are visited does not matter on this platform
(:mod:`asp_stencil_numpy.support` declines loops where it would).

A loop reading ``g[g.nearest_interior(x)]`` has its boxes cut further (:func:`clamp_boxes`), so
that in each part the nearest interior point is, along every axis, either the loop point's own
coordinate or one constant: the read is then one slice, broadcast along the constant axes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

__all__ = ["Box", "border_boxes", "boxes", "clamp_boxes", "interior_box"]

Box = tuple[tuple[int, int], ...]  # per dimension: half-open [lo, hi)


def interior_box(shape: Sequence[int], ghost: int) -> list[Box]:
    box = tuple((ghost, n - ghost) for n in shape)
    return [box] if all(hi > lo for lo, hi in box) else []


def border_boxes(shape: Sequence[int], ghost: int) -> list[Box]:
    if ghost == 0:
        return []
    out: list[Box] = []
    for d, n in enumerate(shape):
        inner = [(ghost, m - ghost) for m in shape[:d]]
        if any(hi <= lo for lo, hi in inner):
            break  # an empty interior in an earlier dimension: its slabs already hold it all
        outer = [(0, m) for m in shape[d + 1:]]
        low = (0, min(ghost, n))
        high = (max(n - ghost, low[1]), n)
        for side in (low, high):
            if side[1] > side[0]:
                out.append(tuple(inner + [side] + outer))
    return out


def boxes(region: str, shape: Sequence[int], ghost: int) -> list[Box]:
    """The boxes of ``region`` (``"interior"`` or ``"border"``) of a grid of ``shape``."""
    if region == "interior":
        return interior_box(shape, ghost)
    if region == "border":
        return border_boxes(shape, ghost)
    raise ValueError(f"unknown point region {region!r}")


def clamp_boxes(box: Box, shape: Sequence[int], clamps: Iterable[int]) -> list[Box]:
    """``box`` cut at ``c`` and ``n - c`` along each axis (of size ``n``) for each ``c`` in
    ``clamps``: in every part, ``min(max(i, c), n - 1 - c)`` (``nearest_interior`` of a grid
    of ghost depth ``c``) is ``i`` itself or the same value for all the part's ``i``."""
    cuts = set(clamps)
    axes = []
    for (lo, hi), n in zip(box, shape):
        edges = sorted({lo, hi} | {k for c in cuts for k in (c, n - c) if lo < k < hi})
        axes.append(list(zip(edges, edges[1:])))
    return list(itertools.product(*axes))
