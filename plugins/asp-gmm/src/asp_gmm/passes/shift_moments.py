"""``shift-moments``: accumulate moments of x - c (c: the component's incoming mean for full, one
global point for diag) so second moments do not cancel when the data sit far from the origin."""

from __future__ import annotations

from typing import Any

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, Moments

__all__ = ["shift_moments"]


@asp_pass("shift-moments")
def shift_moments(problem: EMProblem, ctx: Any) -> EMProblem:
    """Accumulate moments about the incoming means (full) or one global point (diag)."""
    center = "component" if problem.covariance == "full" else "global"
    return problem.replace(steps=[s.replace(center=center) if isinstance(s, Moments) else s
                                  for s in problem.steps])
