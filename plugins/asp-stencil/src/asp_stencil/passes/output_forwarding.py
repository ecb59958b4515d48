"""Pass ``output-forwarding``: keep the output point in a register within one iteration.

``out[x] = out[x] + u[y]`` repeated over neighbours becomes one load (only if the output is read
before it is first written), a chain of local values and **one store at the end**: the stored
values and their order are unchanged, other points never see the intermediate values (they read
the output only at ``x``), and a kernel that writes before reading never loads the output at all,
which lets the platform use streaming stores.

A grid read through ``nearest_interior`` after a store in the same point is not forwarded: that
point may be the loop point itself (a grid of smaller ghost depth than the loop's), whose value
must then be the one just stored; its stores stay where they are, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core.passes import asp_pass

from .. import dast as D
from ._util import map_expr, point_body

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


def forward_loop(loop: D.PointLoop, out: str, written: tuple[str, ...] = (),
                 dtypes: dict[str, str] | None = None) -> D.PointLoop:
    """Forward the stores to each written grid (``out`` and ``written``) through locals."""
    grids = [out] + [g for g in written if g != out]
    dtypes = dtypes or {}
    for grid in grids:
        loop = _forward(loop, grid, dtypes.get(grid, "<f8"))
    return loop


def _forward(loop: D.PointLoop, out: str, dtype: str) -> D.PointLoop:
    stores = [s for s in loop.body if isinstance(s, D.Store) and s.grid == out]
    if not stores:
        return loop
    stmts = point_body(loop)
    after_store = stmts[stmts.index(stores[0]) + 1:]
    if any(r.grid == out and r.at.clamp >= 0 for s in after_store for r in D.reads(s.value)):
        return loop   # a nearest_interior read may be of the point just stored (see above)
    dim = len(stores[0].at.offset)
    centre = D.Read(out, D.PointExpr(None, (0,) * dim))
    cur: str | None = None
    taken = D.local_names(loop) | {out}
    last_line = stores[-1].line
    body: list[D.Stmt] = []

    def fwd(e: D.Expr) -> D.Expr | None:
        if cur is not None and e == centre:
            return D.Var(cur)
        return None

    for s in stmts:
        value = map_expr(s.value, fwd)
        if isinstance(s, D.Store) and s.grid == out:
            cur = D.fresh_name(f"_{out}", taken)
            body.append(D.Assign(cur, value, line=s.line, as_dtype=dtype, as_grid=out))
            last_line = s.line
        else:
            body.append(s.replace(value=value))
    assert cur is not None
    body.append(D.Store(out, D.PointExpr(None, (0,) * dim), D.Var(cur), line=last_line))
    return loop.replace(body=tuple(body))


@asp_pass("output-forwarding")
def output_forwarding(prog: D.StencilProgram, ctx: SpecializationContext
                      ) -> tuple[D.StencilProgram, bool]:
    """One store per point and grid: forward each written grid's value through locals."""
    out = prog.output.name
    written = tuple(g.name for g in prog.outputs)
    dtypes = {g.name: g.dtype for g in prog.grids}
    body = tuple(forward_loop(s, out, written, dtypes) if isinstance(s, D.PointLoop) else s
                 for s in prog.body)
    changed = any(new != old for old, new in zip(prog.body, body))
    return D.StencilProgram(prog.name, prog.grids, body, dict(prog.info)), changed
