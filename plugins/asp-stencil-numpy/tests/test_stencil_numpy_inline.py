"""Inlining single-use locals keeps every operation and the value each one sees."""

from __future__ import annotations

from asp_stencil import dast as D
from asp_stencil_numpy.inline import inline_single_use

P0 = D.PointExpr(None, (0, 0))


def r(grid: str, off=(0, 0)) -> D.Read:
    return D.Read(grid, D.PointExpr(None, off))


def test_chain_becomes_one_expression():
    body = (D.Assign("t1", D.BinOp("+", r("out"), r("u", (1, 0)))),
            D.Assign("t2", D.BinOp("+", D.Var("t1"), r("u", (-1, 0)))),
            D.Store("out", P0, D.Var("t2")))
    (store,) = inline_single_use(body)
    assert store == D.Store("out", P0, D.BinOp("+", D.BinOp("+", r("out"), r("u", (1, 0))),
                                               r("u", (-1, 0))))


def test_locals_used_twice_stay():
    body = (D.Assign("t", D.BinOp("*", r("u"), D.Const(2.0))),
            D.Store("out", P0, D.BinOp("+", D.Var("t"), D.Var("t"))))
    assert inline_single_use(body) == body


def test_no_inlining_across_a_store_to_a_grid_it_reads():
    body = (D.Assign("old", r("out")),
            D.Store("out", P0, D.BinOp("*", r("u"), D.Const(3.0))),
            D.Store("out", P0, D.BinOp("+", D.Var("old"), r("out"))))
    assert inline_single_use(body) == body


def test_redefinition_uses_the_old_value_once():
    body = (D.Assign("s", r("u")),
            D.Assign("s", D.BinOp("+", D.Var("s"), r("u", (0, 1)))),
            D.Store("out", P0, D.Var("s")))
    (store,) = inline_single_use(body)
    assert store.value == D.BinOp("+", r("u"), r("u", (0, 1)))


def test_a_local_still_to_be_converted_stays():
    """``as_dtype`` left on a local: the lowering converts the value where it is assigned, so
    folding it into its use would skip the conversion."""
    body = (D.Assign("_out_1", r("u"), as_dtype="<f4"),
            D.Store("out", P0, D.BinOp("*", D.Var("_out_1"), D.Const(2.0))))
    assert inline_single_use(body) == body
