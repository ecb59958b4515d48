"""Pass ``unroll-neighbors``: replace each ``NeighborLoop`` by one copy of its body per offset.

Neighbour definitions are part of the specialisation key, so the loop's trip count and offsets are
known; after this pass every ``PointExpr`` is relative to the loop point (``var=None``). It also
checks what the unrolled kernel needs: the neighbour id exists, every offset stays within the
grids' ghost depth (a ``ValueError`` for the caller's data, not a fallback), and no local is read
before it is assigned (which only an empty neighbour list can cause).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import unsupported_at

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


def _shift(p: D.PointExpr, env: dict[str, tuple[int, ...]]) -> D.PointExpr:
    if p.var is None:
        return p
    base = env[p.var]
    return D.PointExpr(None, tuple(a + b for a, b in zip(base, p.offset)))


def _subst(e: Any, env: dict[str, tuple[int, ...]]) -> Any:
    if isinstance(e, D.Read):
        return D.Read(e.grid, _shift(e.at, env))
    if isinstance(e, D.Distance):
        return D.Distance(_shift(e.a, env), _shift(e.b, env))
    if isinstance(e, D.BinOp):
        return D.BinOp(e.op, _subst(e.left, env), _subst(e.right, env))
    if isinstance(e, D.UnaryOp):
        return D.UnaryOp(e.op, _subst(e.operand, env))
    if isinstance(e, D.Call):
        return D.Call(e.func, tuple(_subst(a, env) for a in e.args))
    if isinstance(e, D.Compare):
        return D.Compare(_subst(e.left, env), e.ops, tuple(_subst(c, env) for c in e.comparators))
    if isinstance(e, D.BoolOp):
        return D.BoolOp(e.op, tuple(_subst(v, env) for v in e.values))
    if isinstance(e, D.IfExp):
        return D.IfExp(_subst(e.test, env), _subst(e.body, env), _subst(e.orelse, env))
    return e


class _Unroller:
    def __init__(self, prog: D.StencilProgram, ctx: SpecializationContext) -> None:
        self.prog, self.ctx = prog, ctx
        self.unrolled = 0  # neighbour loops replaced

    def body(self, stmts: tuple[D.Stmt, ...], env: dict[str, tuple[int, ...]]
             ) -> list[D.Assign | D.Store]:
        out: list[D.Assign | D.Store] = []
        for s in stmts:
            if isinstance(s, D.NeighborLoop):
                g = self.prog.grid(s.grid)
                if not 0 <= s.nid < len(g.neighbors):
                    raise ValueError(f"neighbour id {s.nid} is not defined for grid '{g.name}' "
                                     f"(its neighbor_definition has ids 0..{len(g.neighbors) - 1})")
                self.unrolled += 1
                center = _shift(s.center, env)
                for off in g.neighbors[s.nid]:
                    if len(off) != len(g.shape):
                        raise ValueError(f"neighbour offset {off} of grid '{g.name}' has "
                                         f"{len(off)} components; the grid has {len(g.shape)} "
                                         "dimensions")
                    inner = dict(env)
                    inner[s.var] = tuple(a + b for a, b in zip(center.offset, off))
                    out.extend(self.body(s.body, inner))
            elif isinstance(s, (D.Assign, D.Store)):
                out.append(s.replace(value=_subst(s.value, env)))
            else:  # pragma: no cover - the frontend admits nothing else here
                raise TypeError(f"unexpected statement {type(s).__name__} in a point loop")
        return out

    def check(self, loop: D.PointLoop, body: list[D.Assign | D.Store], toplevel: set[str]
              ) -> None:
        it = self.prog.grid(loop.grid)
        defined = set(toplevel)
        for s in body:
            for n in D.expr_nodes(s.value):
                if isinstance(n, D.Var) and n.name not in defined:
                    raise unsupported_at(self.ctx, s.line, f"local variable '{n.name}' used "
                                         "before assignment (empty neighbour list?)")
                if isinstance(n, D.Read):
                    self.check_offset(loop, it, n)
            if isinstance(s, D.Assign):
                defined.add(s.target)

    def check_offset(self, loop: D.PointLoop, it: D.GridParam, r: D.Read) -> None:
        off = r.at.offset
        if loop.region == "border":
            if any(off):
                raise unsupported_at(self.ctx, loop.line, "neighbour read in a border_points() "
                                     f"loop ({r.grid} at offset {off})")
            return
        reach = max((abs(c) for c in off), default=0)
        if reach > it.ghost_depth:  # the looped grid's depth bounds the index (equal shapes)
            raise ValueError(f"neighbour offset {off} read from grid '{r.grid}' reaches "
                             f"{reach} points beyond the loop point, more than the ghost "
                             f"depth {it.ghost_depth} of grid '{it.name}'")


def _needed(prog: D.StencilProgram) -> str | None:
    """Why the kernel cannot compile without this pass: no platform lowers a neighbour loop
    (each declined the program, and the kernel ran in Python without a word)."""
    if any(isinstance(n, D.NeighborLoop) for n in D.expr_nodes(prog)):
        return "no platform compiles its neighbour loops unless they are unrolled"
    return None


@asp_pass("unroll-neighbors", needed=_needed)
def unroll_neighbors(prog: D.StencilProgram, ctx: SpecializationContext) -> tuple[D.StencilProgram, bool]:
    """Unroll neighbour loops into straight-line code with constant offsets."""
    u = _Unroller(prog, ctx)
    out: list[D.Stmt] = []
    toplevel: set[str] = set()
    for s in prog.body:
        if isinstance(s, D.PointLoop):
            body = u.body(s.body, {})
            u.check(s, body, toplevel)
            out.append(s.replace(body=tuple(body)))
        else:
            if isinstance(s, D.Assign):
                toplevel.add(s.target)
            out.append(s)
    return D.StencilProgram(prog.name, prog.grids, tuple(out), dict(prog.info)), u.unrolled > 0
