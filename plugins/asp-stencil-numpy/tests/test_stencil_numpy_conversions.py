"""Forwarded output values (``as_dtype`` locals): converted only where the dtype differs."""

from __future__ import annotations

import numpy as np
from asp_stencil import dast as D
from asp_stencil_numpy.conversions import settle_conversions, value_dtype

U = D.Read("u", D.PointExpr(None, (0,)))


def _body(value, as_dtype):
    return (D.Assign("_out_1", value, as_dtype=as_dtype),
            D.Assign("_out_2", D.BinOp("*", D.Var("_out_1"), D.Const(2.0)), as_dtype=as_dtype))


def test_dtypes_follow_numpy_promotion():
    grids = {"u": "<f4"}
    assert value_dtype(D.BinOp("*", U, D.Const(0.5)), grids, {}) == np.float32
    assert value_dtype(D.BinOp("*", U, D.const(np.float64(0.5))), grids, {}) == np.float64
    assert value_dtype(D.Call("max", (U, D.const(np.int8(1)))), grids, {}) == np.float32
    assert value_dtype(D.Const(0.5), grids, {}) is None   # a Python number: weak
    assert value_dtype(D.BinOp("+", D.Var("t"), U), grids, {}) is None   # t not known


def test_the_mark_stays_only_where_the_dtype_differs():
    same = settle_conversions(_body(D.UnaryOp("-", U), "<f4"), {"u": "<f4"})
    assert [s.as_dtype for s in same] == ["", ""]
    widened = settle_conversions(_body(U, "<f8"), {"u": "<f4"})
    assert [s.as_dtype for s in widened] == ["<f8", ""]   # _out_1 is float64 from then on
    constant = settle_conversions(_body(D.Const(1), "<f8"), {"u": "<f8"})
    assert [s.as_dtype for s in constant] == ["<f8", ""]
