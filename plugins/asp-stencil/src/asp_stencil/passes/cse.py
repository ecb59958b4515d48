"""Pass ``cse``: common-subexpression elimination within one point iteration.

After unrolling, a loop body is straight-line code. Locals are first renamed so each is assigned
once (SSA), which makes structurally equal expressions equal in value, up to a store: an
expression reading a grid is not reused after a store to that grid (``output-forwarding`` has
usually turned such reads into locals, but a user may disable it). Every compound subexpression
that occurs at least twice is then computed once into a temporary ``_cse``, ``_cse_1``... (names
the kernel does not use) right before its first use. Arms of conditional expressions are not
hoisted (Python evaluates only the chosen arm), and no expression is reassociated.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Sequence

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import map_expr, point_body, rebuild

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

_COMPOUND = (D.BinOp, D.UnaryOp, D.Call, D.Compare, D.BoolOp, D.IfExp)


def ssa(body: Sequence[D.Assign | D.Store]) -> list[D.Assign | D.Store]:
    """Rename locals so each is assigned exactly once (``s`` → ``s``, ``s_1``, ``s_2``...,
    skipping names the body uses)."""
    current: dict[str, str] = {}
    taken = set().union(*(D.local_names(s) for s in body))
    seen: set[str] = set()
    out: list[D.Assign | D.Store] = []

    def ren(e: D.Expr) -> D.Expr | None:
        if isinstance(e, D.Var) and e.name in current:
            return D.Var(current[e.name])
        return None

    for s in body:
        value = map_expr(s.value, ren)
        if isinstance(s, D.Assign):
            name = s.target if s.target not in seen else D.fresh_name(s.target, taken)
            seen.add(s.target)
            current[s.target] = name
            out.append(s.replace(target=name, value=value))
        else:
            out.append(s.replace(value=value))
    return out


def _count(e: D.Expr, c: Counter) -> None:
    if isinstance(e, _COMPOUND):
        c[e] += 1
    if isinstance(e, D.IfExp):
        _count(e.test, c)
        return
    for k in e.children():
        if isinstance(k, _COMPOUND):
            _count(k, c)


def cse_body(body: Sequence[D.Assign | D.Store]) -> tuple[D.Assign | D.Store, ...]:
    stmts = ssa(body)
    counts: Counter = Counter()
    for s in stmts:
        _count(s.value, counts)
    shared = {e for e, n in counts.items() if n >= 2}
    if not shared:
        return tuple(stmts)
    available: dict[D.Expr, str] = {}
    taken = set().union(*(D.local_names(s) for s in stmts))
    out: list[D.Assign | D.Store] = []
    pending: list[D.Assign] = []

    def subst_only(e: D.Expr) -> D.Expr:
        if e in available:
            return D.Var(available[e])
        return rebuild(e, subst_only)

    def rw(e: D.Expr) -> D.Expr:
        if e in available:
            return D.Var(available[e])
        if isinstance(e, D.IfExp):
            new: D.Expr = D.IfExp(rw(e.test), subst_only(e.body), subst_only(e.orelse))
        else:
            new = rebuild(e, rw)
        if e in shared:
            name = D.fresh_name("_cse", taken)   # unique also when a store drops entries
            available[e] = name
            pending.append(D.Assign(name, new, line=line))
            return D.Var(name)
        return new

    for s in stmts:
        line = s.line
        value = rw(s.value)
        out.extend(pending)
        pending.clear()
        out.append(s.replace(value=value))
        if isinstance(s, D.Store):   # what was read from this grid is stale from here on
            for e in [e for e in available if any(r.grid == s.grid for r in D.reads(e))]:
                del available[e]
    return tuple(out)


@asp_pass("cse")
def cse(prog: D.StencilProgram, ctx: SpecializationContext) -> tuple[D.StencilProgram, bool]:
    """Compute each repeated subexpression of a point iteration once."""
    body: list[D.Stmt] = []
    changed = False
    for s in prog.body:
        if isinstance(s, D.PointLoop):
            new = cse_body(point_body(s))
            changed = changed or new != s.body  # SSA renaming or hoisted subexpressions
            s = s.replace(body=new)
        body.append(s)
    return D.StencilProgram(prog.name, prog.grids, tuple(body), dict(prog.info)), changed
