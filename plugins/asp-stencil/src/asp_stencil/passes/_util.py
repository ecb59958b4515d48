"""Helpers shared by the domain passes."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Callable

from asp_core.errors import Unspecializable

from .. import dast as D

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


def unsupported_at(ctx: SpecializationContext, line: int, construct: str) -> Unspecializable:
    """An ``Unspecializable`` pointing at the statement on ``line`` of the kernel source
    (1-based, relative): its first character, since DAST statements keep their line, not their
    column (column 0 of the dedented source was the method's indentation, left of the
    statement: ``:7:5`` for a statement at column 13)."""
    line = max(1, line)
    try:
        text = ctx.source.splitlines()[line - 1]
    except (Unspecializable, IndexError):  # no Python source, or a line beyond it
        text = ""
    node = ast.Pass(lineno=line, col_offset=len(text) - len(text.lstrip()))
    return ctx.unsupported(node, construct)


def map_expr(e: D.Expr, fn: Callable[[D.Expr], D.Expr | None], *, into_branches: bool = True
             ) -> D.Expr:
    """Rebuild ``e`` bottom-up; ``fn(node)`` returns a replacement or ``None`` to keep it.

    With ``into_branches=False`` the arms of conditional expressions are left untouched (only
    their test is visited): used by rewrites that must not move work out of a branch.
    """
    if isinstance(e, D.BinOp):
        new: D.Expr = D.BinOp(e.op, map_expr(e.left, fn, into_branches=into_branches),
                              map_expr(e.right, fn, into_branches=into_branches))
    elif isinstance(e, D.UnaryOp):
        new = D.UnaryOp(e.op, map_expr(e.operand, fn, into_branches=into_branches))
    elif isinstance(e, D.Call):
        new = D.Call(e.func, tuple(map_expr(a, fn, into_branches=into_branches) for a in e.args))
    elif isinstance(e, D.Compare):
        new = D.Compare(map_expr(e.left, fn, into_branches=into_branches), e.ops,
                        tuple(map_expr(c, fn, into_branches=into_branches) for c in e.comparators))
    elif isinstance(e, D.BoolOp):
        new = D.BoolOp(e.op, tuple(map_expr(v, fn, into_branches=into_branches) for v in e.values))
    elif isinstance(e, D.IfExp):
        test = map_expr(e.test, fn, into_branches=into_branches)
        if into_branches:
            new = D.IfExp(test, map_expr(e.body, fn), map_expr(e.orelse, fn))
        else:
            new = D.IfExp(test, e.body, e.orelse)
    else:
        new = e
    if new == e:
        new = e
    out = fn(new)
    return new if out is None else out


def point_body(loop: D.PointLoop) -> list[D.Assign | D.Store]:
    """The statements of a point loop once ``unroll-neighbors`` ran: assignments and stores only
    (a neighbour loop left here means a pass ran too early, reported as such)."""
    body: list[D.Assign | D.Store] = []
    for s in loop.body:
        if not isinstance(s, (D.Assign, D.Store)):
            raise TypeError(f"{type(s).__name__} in a point loop: unroll-neighbors must run first")
        body.append(s)
    return body


def loops(prog: D.StencilProgram) -> list[D.PointLoop]:
    return [s for s in prog.body if isinstance(s, D.PointLoop)]


def rebuild(e: D.Expr, f: Callable[[D.Expr], D.Expr]) -> D.Expr:
    """``e`` with ``f`` applied to each direct child expression (one level)."""
    if isinstance(e, D.BinOp):
        return D.BinOp(e.op, f(e.left), f(e.right))
    if isinstance(e, D.UnaryOp):
        return D.UnaryOp(e.op, f(e.operand))
    if isinstance(e, D.Call):
        return D.Call(e.func, tuple(f(a) for a in e.args))
    if isinstance(e, D.Compare):
        return D.Compare(f(e.left), e.ops, tuple(f(c) for c in e.comparators))
    if isinstance(e, D.BoolOp):
        return D.BoolOp(e.op, tuple(f(v) for v in e.values))
    if isinstance(e, D.IfExp):
        return D.IfExp(f(e.test), f(e.body), f(e.orelse))
    return e
