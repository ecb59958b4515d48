"""The box decomposition covers exactly the points the grid's iterators visit, once each."""

from __future__ import annotations

import itertools

import pytest
from asp_stencil import StencilGrid
from asp_stencil_numpy.regions import border_boxes, boxes, interior_box


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


def test_unknown_region_is_an_error():
    with pytest.raises(ValueError, match="unknown point region"):
        boxes("edges", (4, 4), 1)
