"""``fold-constants``: log det L_k, log w_k and -D/2 log 2 pi become one number per component."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_gmm.dast import AddLogWeights, EMProblem, LogDensity

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["fold_constants"]


@asp_pass("fold-constants")
def fold_constants(problem: EMProblem, ctx: SpecializationContext) -> tuple[EMProblem, bool]:
    """Fold the per-component constant terms of the weighted log-density into one number."""
    steps = []
    changed = False
    for step in problem.steps:
        if isinstance(step, LogDensity) and not step.constants_folded:
            step = step.replace(constants_folded=True)
            changed = True
        elif isinstance(step, AddLogWeights):
            changed = True
            continue
        steps.append(step)
    return problem.replace(steps=steps), changed
