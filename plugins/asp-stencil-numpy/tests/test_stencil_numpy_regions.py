"""The box decomposition covers exactly the points the grid's iterators visit, once each."""

from __future__ import annotations

import itertools

import pytest
from asp_stencil import StencilGrid
from asp_stencil_numpy.regions import border_boxes, boxes, clamp_boxes, interior_box


def _points(box_list):
    pts = []
    for box in box_list:
        pts += itertools.product(*(range(lo, hi) for lo, hi in box))
    return pts


SHAPES = [(7,), (1,), (2,), (6, 7), (2, 9), (3, 3), (1, 1), (5, 4, 6), (2, 5, 5), (4, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ghost", [0, 1, 2])
def test_boxes_match_the_grid_iterators(shape, ghost):
    grid = StencilGrid(shape, ghost_depth=ghost)
    border = _points(border_boxes(shape, ghost))
    interior = _points(interior_box(shape, ghost))
    assert len(border) == len(set(border)), "border slabs overlap"
    assert set(border) == set(grid.border_points())
    assert interior == list(grid.interior_points())
    assert _points(boxes("border", shape, ghost)) == border


@pytest.mark.parametrize("shape", [(7,), (6, 7), (5, 4, 6), (9, 8)])
@pytest.mark.parametrize("ghost,clamps", [(1, {1}), (2, {1}), (1, {2}), (2, {1, 2}), (1, {0, 1})])
def test_clamp_boxes_make_each_nearest_interior_read_one_slice(shape, ghost, clamps):
    """The parts cover each border box once, and in each part every clamp maps an axis either
    to itself or to one index (so the lowering reads a slice, broadcast where constant)."""
    for box in border_boxes(shape, ghost):
        parts = clamp_boxes(box, shape, clamps)
        assert sorted(_points(parts)) == sorted(_points([box]))
        for part in parts:
            for (lo, hi), n in zip(part, shape):
                for c in clamps:
                    near = {min(max(i, c), n - 1 - c) for i in range(lo, hi)}
                    assert near == set(range(lo, hi)) or len(near) == 1, (part, c)


def test_unknown_region_is_an_error():
    with pytest.raises(ValueError, match="unknown point region"):
        boxes("edges", (4, 4), 1)
