"""``triangular-precision``: the precision Cholesky factors are upper-triangular: skip their zeros."""

from __future__ import annotations

from typing import Any

from asp_core import asp_pass
from asp_gmm.dast import EMProblem, LogDensity

__all__ = ["triangular_precision"]


@asp_pass("triangular-precision")
def triangular_precision(problem: EMProblem, ctx: Any) -> EMProblem:
    """Mark the full-covariance densities as triangular products (diag has no triangle)."""
    if problem.covariance != "full":
        return problem
    return problem.replace(steps=[s.replace(triangular=True) if isinstance(s, LogDensity) else s
                                  for s in problem.steps])
