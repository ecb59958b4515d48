"""``triangular-precision``: the precision Cholesky factors are upper-triangular: skip their
zeros (and accumulate only the upper triangle of the symmetric second moments)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, LogDensity, Moments

if TYPE_CHECKING:
    from asp_core.context import SpecializationContext

__all__ = ["triangular_precision"]


@asp_pass("triangular-precision")
def triangular_precision(problem: EMProblem, ctx: SpecializationContext) -> tuple[EMProblem, bool]:
    """Mark the full-covariance densities and moments as triangular (diag has no triangle)."""
    todo = [isinstance(s, (LogDensity, Moments)) and not s.triangular for s in problem.steps]
    if problem.covariance != "full" or not any(todo):
        return problem, False
    return problem.replace(steps=[s.replace(triangular=True) if t else s
                                  for s, t in zip(problem.steps, todo)]), True
