"""``shift-moments``: accumulate moments of x - c_k (c_k: component k's incoming mean) so second
moments do not cancel when the data sit far from the origin.  Diagonal kernels also take one
point shared by all components, which :func:`asp_gmm.packing.pack` gives them where every
component is well conditioned about it (their cheaper loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, Moments

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["shift_moments"]


@asp_pass("shift-moments")
def shift_moments(problem: EMProblem, ctx: SpecializationContext) -> tuple[EMProblem, bool]:
    """Accumulate moments about the components' incoming means."""
    center = "component"
    todo = [isinstance(s, Moments) and s.center != center for s in problem.steps]
    if not any(todo):
        return problem, False
    return problem.replace(steps=[s.replace(center=center) if t else s
                                  for s, t in zip(problem.steps, todo)]), True
