"""Each matrix-powers domain pass reports whether it changed the operation."""

from __future__ import annotations

import numpy as np
from asp_core import SpecializationContext

from asp_mpk import gallery
from asp_mpk.components import MatrixFrontend, signature
from asp_mpk.passes import choose_formats, order_rows, size_blocks
from asp_mpk.powers import MatrixPowers


def _op(A, k=4):
    mp = MatrixPowers(A, k, tune=False)
    args = (np.zeros((1, mp.n)), np.zeros((1, k + 1, mp.n)), np.zeros((3, k)), None, "monomial")
    ctx = SpecializationContext("mpk", mp._reference, args, {}, mp, {}, signature(args, {}, mp),
                                "test")
    return MatrixFrontend().parse(ctx), ctx


def test_order_rows_reports_a_reordering_only_when_it_makes_one():
    op, ctx = _op(gallery.poisson2d(60))  # banded: natural order stays
    assert order_rows.apply(op, ctx) == (op, False)
    op, ctx = _op(gallery.unstructured_spd(2000, seed=1))
    rcm, changed = order_rows.apply(op, ctx)
    assert changed and rcm.ordering == "rcm"
    assert order_rows.apply(rcm, ctx) == (rcm, False)


def test_formats_and_blocks_report_their_candidates():
    op, ctx = _op(gallery.poisson2d(60))
    op, changed = choose_formats.apply(op, ctx)
    assert changed and op.candidates
    assert choose_formats.apply(op, ctx) == (op, False)  # same candidates again
    sized, changed = size_blocks.apply(op, ctx)
    assert changed and all(c.threads >= 1 for c in sized.candidates)
