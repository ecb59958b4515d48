"""``shift-moments``: accumulate moments of x - c (c: the component's incoming mean for full, one
global point for diag) so second moments do not cancel when the data sit far from the origin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, Moments

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["shift_moments"]


@asp_pass("shift-moments")
def shift_moments(problem: EMProblem, ctx: SpecializationContext) -> tuple[EMProblem, bool]:
    """Accumulate moments about the incoming means (full) or one global point (diag)."""
    center = "component" if problem.covariance == "full" else "global"
    todo = [isinstance(s, Moments) and s.center != center for s in problem.steps]
    if not any(todo):
        return problem, False
    return problem.replace(steps=[s.replace(center=center) if t else s
                                  for s, t in zip(problem.steps, todo)]), True
