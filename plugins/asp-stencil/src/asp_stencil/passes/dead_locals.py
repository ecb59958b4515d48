"""Pass ``dead-locals``: drop assignments to locals that no later statement of the point reads.

Within one point iteration a local nobody reads cannot influence a grid (the DAST has no other
effects; C raises no exceptions), so computing it is wasted work — and, for the type check, an
operation on a dead value must not make a kernel fall back to Python. Runs after
``output-forwarding``, whose locals carry stored values until the final store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core.passes import asp_pass

from .. import dast as D

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext


def live_body(body: tuple[D.Stmt, ...]) -> tuple[D.Stmt, ...]:
    """``body`` without the assignments whose value is never read (one backward sweep)."""
    live: set[str] = set()
    kept: list[D.Stmt] = []
    for s in reversed(body):
        if not isinstance(s, (D.Assign, D.Store)):
            raise TypeError(f"{type(s).__name__} in a point loop: unroll-neighbors must run first")
        if isinstance(s, D.Assign) and s.target not in live:
            continue
        if isinstance(s, D.Assign):
            live.discard(s.target)
        live |= {n.name for n in D.expr_nodes(s.value) if isinstance(n, D.Var)}
        kept.append(s)
    return tuple(reversed(kept))


@asp_pass("dead-locals")
def dead_locals(prog: D.StencilProgram, ctx: SpecializationContext
                ) -> tuple[D.StencilProgram, bool]:
    """Remove dead local assignments from every point loop."""
    body = tuple(s.replace(body=live_body(s.body)) if isinstance(s, D.PointLoop) else s
                 for s in prog.body)
    changed = any(len(new.body) != len(old.body) for old, new in zip(prog.body, body)
                  if isinstance(old, D.PointLoop) and isinstance(new, D.PointLoop))
    return D.StencilProgram(prog.name, prog.grids, body, dict(prog.info)), changed
