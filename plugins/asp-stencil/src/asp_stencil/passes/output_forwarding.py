"""Pass ``output-forwarding``: keep the output point in a register within one iteration.

``out[x] = out[x] + u[y]`` repeated over neighbours becomes one load (only if the output is read
before it is first written), a chain of local values and **one store at the end**: the stored
values and their order are unchanged, other points never see the intermediate values (they read
the output only at ``x``), and a kernel that writes before reading never loads the output at all,
which lets the platform use streaming stores.

The pass also marks a loop ``sequential`` when an iteration reads the output at a non-zero offset
(Gauss–Seidel style): then points depend on earlier points and the loop must run in Python's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import map_expr, point_body

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


def forward_loop(loop: D.PointLoop, out: str) -> D.PointLoop:
    stmts = point_body(loop)
    sequential = loop.sequential or any(
        r.grid == out and any(r.at.offset) for s in stmts for r in D.reads(s.value))
    stores = [s for s in stmts if isinstance(s, D.Store)]
    if not stores:
        return loop.replace(sequential=sequential)
    dim = len(stores[0].at.offset)
    centre = D.Read(out, D.PointExpr(None, (0,) * dim))
    cur: str | None = None
    n = 0
    last_line = stores[-1].line
    body: list[D.Stmt] = []

    def fwd(e: D.Expr) -> D.Expr | None:
        if cur is not None and e == centre:
            return D.Var(cur)
        return None

    for s in stmts:
        value = map_expr(s.value, fwd)
        if isinstance(s, D.Store):
            n += 1
            cur = f"_{out}_{n}"
            body.append(D.Assign(cur, value, line=s.line))
            last_line = s.line
        else:
            body.append(s.replace(value=value))
    assert cur is not None
    body.append(D.Store(out, D.PointExpr(None, (0,) * dim), D.Var(cur), line=last_line))
    return loop.replace(body=tuple(body), sequential=sequential)


@asp_pass("output-forwarding")
def output_forwarding(prog: D.StencilProgram, ctx: SpecializationContext) -> tuple[D.StencilProgram, bool]:
    """One store per point: forward the output value through locals; mark sequential loops."""
    out = prog.output.name
    body = tuple(forward_loop(s, out) if isinstance(s, D.PointLoop) else s for s in prog.body)
    # every loop that stores is rewritten (its stores become locals); others may only be marked
    changed = any(isinstance(new, D.PointLoop) and (new.sequential != old.sequential or any(
        isinstance(s, D.Store) for s in old.body))
        for old, new in zip(prog.body, body) if isinstance(old, D.PointLoop))
    return D.StencilProgram(prog.name, prog.grids, body, dict(prog.info)), changed
