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

from asp_core import DomainOptimizer, PassManager, SpecializationContext, asp_pass
from asp_core.ir import Transformer

from {{ cookiecutter.package_name }}.dast import Bin, Fn, Map, Neg, Node, Num

__all__ = ["fold_constants", "domain_passes", "ElementwiseOptimizer"]


class _Fold(Transformer):
    """Evaluates operations whose operands are literals, with Python's own arithmetic, so the
    folded value is exactly what the pure-Python kernel computes."""

    def visit_Bin(self, node: Bin) -> Node:
        node = self.generic_visit(node)
        if isinstance(node.left, Num) and isinstance(node.right, Num):
            a, b = node.left.value, node.right.value
            if node.op == "/" and b == 0:
                return node  # Python raises here; leave it to run time
            return Num({"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[node.op])
        return node

    def visit_Neg(self, node: Neg) -> Node:
        node = self.generic_visit(node)
        return Num(-node.operand.value) if isinstance(node.operand, Num) else node

    def visit_Fn(self, node: Fn) -> Node:
        node = self.generic_visit(node)
        if not all(isinstance(a, Num) for a in node.args):
            return node
        values = [a.value for a in node.args]
        if node.name == "sqrt":
            return Num(math.sqrt(values[0])) if values[0] >= 0 else node
        return Num({"abs": abs, "min": min, "max": max}[node.name](*values))


@asp_pass("constant-folding")
def fold_constants(dast: Map, ctx: SpecializationContext) -> tuple[Map, bool]:
    """Evaluate operations on literals at specialisation time."""
    new = _Fold().visit(dast)
    return new, new is not dast  # a Transformer returns the same node when nothing changed


def domain_passes() -> PassManager:
    """A fresh pass manager with this specializer's domain passes, in order."""
    return PassManager("{{ cookiecutter.specializer_name }}-domain", [fold_constants])


class ElementwiseOptimizer(DomainOptimizer):
    name = "domain-passes"

    def optimize(self, dast: Map, ctx: SpecializationContext) -> Map:
        return domain_passes().run(dast, ctx)
