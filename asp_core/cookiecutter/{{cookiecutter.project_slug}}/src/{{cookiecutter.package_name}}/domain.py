"""Phase 2, domain optimisation: platform-independent rewrites of the DAST, as named passes.

Each pass is a function decorated with :func:`asp_core.asp_pass` that returns ``(new_ir,
changed)``; the :class:`asp_core.PassManager` runs them in order, records for ``asp explain``
whether each changed the IR (``asp explain --after constant-folding`` prints the IR after it),
and skips the ones a user disabled (``ASP_DISABLE_PASSES=constant-folding``: every
specializer's pass of that name; ``{{ cookiecutter.specializer_name }}:constant-folding``: this
one's only). Add a pass by writing one more function and listing it in :func:`domain_passes`.
"""

from __future__ import annotations

import math
import operator
from typing import Callable

from asp_core import DomainOptimizer, PassManager, SpecializationContext, asp_pass
from asp_core.ir import Transformer

from {{ cookiecutter.package_name }}.dast import Bin, Fn, Map, Neg, Node, Num

__all__ = ["fold_constants", "domain_passes", "ElementwiseOptimizer"]


class _Fold(Transformer):
    """Evaluates operations whose operands are literals, with Python's own arithmetic (ints
    exactly: ``(2**53 + 1) - 2**53`` is 1, in doubles 0), so the folded value is exactly what
    the pure-Python kernel computes; where Python raises (``1 / 0``, ``math.sqrt(-1)``, an int
    too large for a float) the kernel runs in Python, which raises it."""

    def __init__(self, ctx: SpecializationContext) -> None:
        self.ctx = ctx

    def _num(self, compute: Callable[[], int | float], what: str) -> Num:
        try:
            value = compute()
            float(value)   # the C literal; Python converts the int where an array meets it
        except (ArithmeticError, ValueError) as exc:
            raise self.ctx.unsupported(None, f"{what} of literals, which raises "
                                             f"{type(exc).__name__} in Python") from None
        return Num(value)

    def visit_Bin(self, node: Bin) -> Node:
        node = self.generic_visit(node)
        if isinstance(node.left, Num) and isinstance(node.right, Num):
            a, b = node.left.value, node.right.value
            operation = {"+": operator.add, "-": operator.sub, "*": operator.mul,
                         "/": operator.truediv}[node.op]
            return self._num(lambda: operation(a, b), f"'{node.op}'")
        return node

    def visit_Neg(self, node: Neg) -> Node:
        node = self.generic_visit(node)
        return Num(-node.operand.value) if isinstance(node.operand, Num) else node

    def visit_Fn(self, node: Fn) -> Node:
        node = self.generic_visit(node)
        if not all(isinstance(a, Num) for a in node.args):
            return node
        values = [a.value for a in node.args]
        function = {"abs": abs, "min": min, "max": max, "sqrt": math.sqrt}[node.name]
        return self._num(lambda: function(*values), f"{node.name}()")


@asp_pass("constant-folding")
def fold_constants(dast: Map, ctx: SpecializationContext) -> tuple[Map, bool]:
    """Evaluate operations on literals at specialisation time."""
    new = _Fold(ctx).visit(dast)
    return new, new is not dast  # a Transformer returns the same node when nothing changed


def domain_passes() -> PassManager:
    """A fresh pass manager with this specializer's domain passes, in order."""
    return PassManager("{{ cookiecutter.specializer_name }}-domain", [fold_constants])


class ElementwiseOptimizer(DomainOptimizer):
    name = "domain-passes"

    def optimize(self, dast: Map, ctx: SpecializationContext) -> Map:
        return domain_passes().run(dast, ctx)
