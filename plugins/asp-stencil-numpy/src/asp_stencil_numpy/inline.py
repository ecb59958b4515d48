"""Inlining of single-use locals, so each stored value is one NumPy expression.

The domain passes leave chains of locals (``_out_1 = out[x] + a[x+e0]; _out_2 = _out_1 + ...``).
On NumPy each local is a whole temporary array that stays alive while its name is bound, so a
7-point stencil on 256³ holds seven 128 MiB temporaries at once. Folding a local that is used
exactly once into its use gives one expression, in which NumPy reuses its temporaries in place
(temporary elision). The operations, their operands and their order are unchanged, so the results
are the same bits.

A definition is inlined only when its single use comes before the name is redefined, no store
in between writes a grid the definition reads and no assignment in between rebinds a local it
reads (either would change the value it sees; locals are rebound where the ``cse`` pass, which
renames them, is disabled), and not when its value is still to be converted to a grid's dtype
(``as_dtype``, see :mod:`asp_stencil_numpy.conversions`): the conversion belongs to the local.
"""

from __future__ import annotations

from typing import Any

from asp_stencil import dast as D

from asp_core.ir import Transformer

__all__ = ["inline_single_use"]


class _Substitute(Transformer):
    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env
        self.used: set[str] = set()

    def visit_Var(self, node: D.Var) -> Any:
        if node.name in self.env:
            self.used.add(node.name)
            return self.env[node.name]
        return node


def _uses(e: Any, name: str) -> int:
    return sum(1 for n in D.expr_nodes(e) if isinstance(n, D.Var) and n.name == name)


def _single_use(body: tuple, i: int) -> int | None:
    """Index of the only statement reading ``body[i]``'s local before it is redefined."""
    name = body[i].target
    where = None
    count = 0
    for j in range(i + 1, len(body)):
        k = _uses(body[j].value, name)
        if k:
            count += k
            where = j
        if isinstance(body[j], D.Assign) and body[j].target == name:
            break
    return where if count == 1 else None


def inline_single_use(body: tuple) -> tuple:
    """``body`` (a point loop's statements) with single-use locals folded into their use.

    Locals are never read after their loop on this platform (:mod:`asp_stencil_numpy.support`
    declines such kernels), so a local's last use inside the loop is its last use."""
    env: dict[str, Any] = {}
    out: list[Any] = []
    for i, s in enumerate(body):
        sub = _Substitute(env)
        value = sub.visit(s.value)
        for name in sub.used:
            del env[name]
        if isinstance(s, D.Assign) and not s.as_dtype:
            j = _single_use(body, i)
            grids = {r.grid for r in D.reads(value)}
            names = {n.name for n in D.expr_nodes(value) if isinstance(n, D.Var)}
            if j is not None and not any(
                    body[k].grid in grids if isinstance(body[k], D.Store) else
                    body[k].target in names for k in range(i + 1, j)):
                env[s.target] = value
                continue
        out.append(s if value is s.value else s.replace(value=value))
    assert not env, f"unused inlined definitions {sorted(env)}"
    return tuple(out)
